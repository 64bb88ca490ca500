"""Property: for any scores and any valid tiers, the preview's numbers are what the recompute
produces, and every contact lands in the tier a plain Python rule gives."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact, ContactTag
from loyalty.models import ContactTier
from loyalty.services import TierSpec, program_recompute, program_save, tiers_preview
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program

thresholds = st.lists(st.integers(min_value=-3, max_value=15), min_size=1, max_size=4, unique=True).map(sorted)
scores = st.lists(st.integers(min_value=-2, max_value=16), min_size=8, max_size=8)


def expected_tier(score: int, tiers: list[tuple[str, int]]) -> str | None:
    reached = [name for name, minimum in tiers if minimum <= score]
    return reached[-1] if reached else None


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=thresholds, second=thresholds, contact_scores=scores)
def test_preview_equals_recompute(first, second, contact_scores):
    # given eight contacts (score 0 = no PURCHASE tag) and a programme with the first tiers
    ContactTier.objects.all().delete()
    ContactTag.objects.all().delete()
    Contact.objects.all().delete()
    contacts = []
    for score in contact_scores:
        contact = ContactFactory()
        if score:
            give_tag(contact, "PURCHASE", score)
        contacts.append((contact, score))
    program = make_program(f"P{first}{second}{contact_scores}"[:100],
                           tiers=[(f"T{minimum}", minimum, None) for minimum in first])
    new_tiers = [TierSpec(f"T{minimum}", Decimal(minimum)) for minimum in second]
    # when previewing, then saving the second tiers
    preview = tiers_preview(program, new_tiers)
    program_save(program, tiers=new_tiers)
    result = program_recompute(program)
    # then
    for key in ("up", "down", "unchanged", "no_tier", "distribution", "pending_down"):
        assert result[key] == preview[key], key
    named = [(f"T{minimum}", minimum) for minimum in second]
    stored = dict(ContactTier.objects.filter(program=program, tier__isnull=False).values_list("contact_id", "tier__name"))
    for contact, score in contacts:
        assert stored.get(contact.pk) == expected_tier(score, named)
