"""Grace-period downgrades and pins: no surprising drops."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from contacts.models import ContactTag
from loyalty.models import ContactTier, Program, Tier, TierChange
from loyalty.services import (
    TierSpec,
    program_recompute,
    program_save,
    tier_pin,
    tier_unpin,
    tiers_apply_due,
    tiers_preview,
)
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program, tier_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def graced():
    """A Silver contact (PURCHASE 8) in a programme with a 30-day grace period."""
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 8)
    program = make_program(downgrade_policy=Program.Downgrade.GRACE, grace_days=30)
    assert tier_of(program, contact) == "Silver"
    return program, contact


def test_a_drop_waits_for_the_grace_period(graced):
    # given the metric falls below Silver
    program, contact = graced
    ContactTag.objects.filter(contact=contact).update(score=2)
    now = timezone.now()
    # when
    result = program_recompute(program, now=now)
    # then the contact keeps Silver with a pending drop to Bronze in 30 days
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.tier.name == "Silver" and row.pending_tier.name == "Bronze"
    assert row.downgrade_due_at == now + timedelta(days=30)
    assert (result["down"], result["pending_down"]) == (0, 1)


def test_the_due_drop_is_applied_by_the_scheduled_job(graced):
    # given a pending drop
    program, contact = graced
    ContactTag.objects.filter(contact=contact).update(score=2)
    program_recompute(program)
    # when the job runs before and after the due date
    early = tiers_apply_due(now=timezone.now() + timedelta(days=29))
    assert tier_of(program, contact) == "Silver"
    late = tiers_apply_due(now=timezone.now() + timedelta(days=31))
    # then
    assert (early, late) == (0, 1)
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.tier.name == "Bronze" and row.pending_tier is None and row.downgrade_due_at is None
    assert TierChange.objects.filter(program=program, contact=contact, reason="Grace period or pin ended",
                                     to_tier="Bronze").exists()


def test_a_recovery_clears_the_pending_drop(graced):
    # given a pending drop
    program, contact = graced
    ContactTag.objects.filter(contact=contact).update(score=2)
    program_recompute(program)
    # when the metric recovers
    ContactTag.objects.filter(contact=contact).update(score=9)
    program_recompute(program)
    # then
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.tier.name == "Silver" and row.downgrade_due_at is None
    assert not TierChange.objects.filter(program=program, contact=contact, to_tier="Bronze").exists()


def test_preview_with_grace_counts_pending_drops_not_moves(graced):
    # given
    program, _ = graced
    # when Silver would need 10
    result = tiers_preview(program, [TierSpec("Bronze", Decimal(0)), TierSpec("Silver", Decimal(10))])
    # then
    assert (result["down"], result["pending_down"], result["distribution"]["Silver"]) == (0, 1, 1)


def test_a_pin_holds_the_tier_until_its_date(admin):
    # given a Bronze contact pinned to Silver until tomorrow
    contact = ContactFactory()
    program = make_program()
    silver = Tier.objects.get(program=program, name="Silver")
    tomorrow = timezone.localdate() + timedelta(days=1)
    tier_pin(program, contact, silver, until=tomorrow, user=admin, note="VIP complaint")
    # then the pin wins, also over a recompute
    assert tier_of(program, contact) == "Silver"
    program_recompute(program)
    assert tier_of(program, contact) == "Silver"
    change = TierChange.objects.get(program=program, contact=contact, to_tier="Silver")
    assert "Pinned to Silver" in change.reason and change.user == admin
    # when the pin's date has passed
    tiers_apply_due(now=timezone.now() + timedelta(days=3))
    # then the metric decides again
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.tier.name == "Bronze" and row.pinned_tier is None


def test_unpinning_returns_to_the_computed_tier(admin):
    # given
    contact = ContactFactory()
    program = make_program()
    tier_pin(program, contact, Tier.objects.get(program=program, name="Silver"),
             until=timezone.localdate() + timedelta(days=10), user=admin)
    # when
    tier_unpin(program, contact, user=admin)
    # then
    assert tier_of(program, contact) == "Bronze"
    assert TierChange.objects.filter(program=program, contact=contact, reason__startswith="Pin removed").exists()


def test_switching_to_immediate_applies_pending_drops(graced):
    # given a pending drop
    program, contact = graced
    ContactTag.objects.filter(contact=contact).update(score=2)
    program_recompute(program)
    # when the policy becomes immediate
    program = program_save(program, downgrade_policy=Program.Downgrade.IMMEDIATE, grace_days=0)
    program_recompute(program)
    # then
    assert tier_of(program, contact) == "Bronze"
