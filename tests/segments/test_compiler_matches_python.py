"""The property test: for random definitions over random small worlds, the compiled SQL selects
exactly the contacts the plain-Python evaluator selects — also when restricted to a few contacts
(the incremental refresh and the per-contact "why" run in that mode)."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contacts.models import Contact
from segments.compiler import compile_definition
from segments.models import Segment
from segments.services import segment_count
from segments.validation import validate_definition
from tests.segments.evaluator import World
from tests.segments.world import build_world, ensure_event_partitions, tree_strategy, world_strategy


@pytest.fixture
def event_partitions(db):
    ensure_event_partitions(timezone.now())


@settings(
    max_examples=int(os.environ.get("SEGMENT_PROPERTY_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_compiled_sql_selects_what_the_python_evaluator_selects(event_partitions, data):
    with transaction.atomic():
        # given a random small world and saved segments to nest
        now = timezone.now()
        contact_ids = build_world(data.draw(world_strategy, label="world"), now)
        segment_ids: list[int] = []
        for index in range(data.draw(st.integers(0, 2), label="nested segments")):
            nested = data.draw(tree_strategy(segment_ids, max_leaves=3), label=f"nested {index}")
            for_sending = data.draw(st.booleans(), label=f"nested {index} for sending")
            segment_ids.append(
                Segment.objects.create(name=f"nested {index}", definition=nested, for_sending=for_sending).pk
            )
        definition = data.draw(tree_strategy(segment_ids), label="definition")
        validate_definition(definition)
        expected = World(now).members(definition)
        event("selects " + ("nobody" if not expected else "everybody" if len(expected) == len(contact_ids) else "some"))

        # when the definition is compiled and run
        selected = set(Contact.objects.filter(compile_definition(definition, now=now)).values_list("pk", flat=True))

        # then SQL and Python agree, also the app's count (which may skip the contacts table)
        assert selected == expected
        assert segment_count(definition, now=now) == len(expected)

        # and restricted to some contacts, it agrees on exactly those
        subset = data.draw(st.sets(st.sampled_from(contact_ids)), label="subset")
        restricted = compile_definition(definition, now=now, contact_ids=sorted(subset))
        selected_subset = set(Contact.objects.filter(pk__in=subset).filter(restricted).values_list("pk", flat=True))
        assert selected_subset == expected & subset
        # and so it does when the contacts are many (event aggregates as one grouped set over
        # their events instead of one correlated aggregate per contact)
        with mock.patch("segments.compiler.PER_CONTACT_AGGREGATES_BELOW", 0):
            grouped = compile_definition(definition, now=now, contact_ids=sorted(subset))
        assert set(Contact.objects.filter(pk__in=subset).filter(grouped).values_list("pk", flat=True)) == expected & subset
        transaction.set_rollback(True)
