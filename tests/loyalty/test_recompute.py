"""The full recompute: versioned, writes only what changes, records every change, retires tiers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import ContactTag
from loyalty.models import ContactTier, Program, Tier, TierChange
from loyalty.services import TierSpec, program_recompute, program_recompute_sql_reference, program_save
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program, tier_of

pytestmark = pytest.mark.django_db


def test_second_recompute_writes_nothing_and_bumps_the_version():
    # given
    for score in (1, 6, 9):
        give_tag(ContactFactory(), "PURCHASE", score)
    program = make_program()
    version = Program.objects.get(pk=program.pk).version
    # when
    result = program_recompute(program)
    # then
    assert result["written"] == 0
    assert result["version"] == version + 1
    assert result["distribution"] == {"Bronze": 1, "Silver": 2}


def test_recompute_is_one_writing_statement():
    # given
    for score in (1, 6, 9):
        give_tag(ContactFactory(), "PURCHASE", score)
    program = make_program()
    ContactTag.objects.update(score=10)
    # when
    with CaptureQueriesContext(connection) as queries:
        result = program_recompute(program)
    # then one INSERT … ON CONFLICT moved the contact, and no statement loops over contacts
    writes = [query["sql"] for query in queries.captured_queries if "INSERT INTO loyalty_contacttier" in query["sql"]]
    assert len(writes) == 1
    assert len(queries.captured_queries) <= 12  # locks, version, tiers, the write, the counts
    assert result["up"] == 1 and result["written"] == 3  # one tier, three metric values


def test_changes_record_from_to_why_and_who(admin):
    # given
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 6)
    program = make_program()
    # when Silver moves to 7
    program_save(program, tiers=[TierSpec("Bronze", Decimal(0)), TierSpec("Silver", Decimal(7))], user=admin)
    program_recompute(program, user=admin, reason="Thresholds changed by admin")
    # then
    change = TierChange.objects.filter(program=program, contact=contact).first()
    assert (change.from_tier, change.to_tier, change.direction) == ("Silver", "Bronze", TierChange.DOWN)
    assert change.reason == "Thresholds changed by admin" and change.user == admin
    assert ContactTier.objects.get(program=program, contact=contact).since == change.created_at


def test_a_removed_tier_keeps_history_until_the_recompute_deletes_it():
    # given Gold from 10
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 12)
    program = make_program(tiers=[("Bronze", 0, None), ("Silver", 6, None), ("Gold", 10, None)])
    # when Gold is removed
    program_save(program, tiers=[TierSpec("Bronze", Decimal(0)), TierSpec("Silver", Decimal(6))])
    assert Tier.objects.get(program=program, name="Gold").retired
    program_recompute(program)
    # then the change reads "from Gold" and the tier is gone
    change = TierChange.objects.get(program=program, contact=contact, to_tier="Silver")
    assert change.from_tier == "Gold" and change.direction == TierChange.DOWN
    assert not Tier.objects.filter(program=program, name="Gold").exists()
    assert tier_of(program, contact) == "Silver"


def test_renamed_tiers_may_swap_names():
    # given
    program = make_program()
    bronze = Tier.objects.get(program=program, name="Bronze")
    silver = Tier.objects.get(program=program, name="Silver")
    # when the editor swaps the names (rows carry ids)
    program_save(program, tiers=[TierSpec("Silver", Decimal(0), id=bronze.pk), TierSpec("Bronze", Decimal(6), id=silver.pk)])
    # then
    assert Tier.objects.get(pk=bronze.pk).name == "Silver"
    assert Tier.objects.get(pk=silver.pk).name == "Bronze"


def test_the_hand_written_twin_produces_the_same_tiers():
    # given
    contacts = []
    for score in (0, 3, 6, 9):
        contact = ContactFactory()
        if score:
            give_tag(contact, "PURCHASE", score)
        contacts.append(contact)
    app = make_program("App")
    twin = make_program("Twin", recompute=False)
    # when
    written = program_recompute_sql_reference(twin)
    # then
    assert written == 4
    assert [tier_of(app, contact) for contact in contacts] == [tier_of(twin, contact) for contact in contacts]
    assert program_recompute_sql_reference(twin) == 0
