"""Each metric: tag score (absent = 0), purchase count and total (all time or a window), contact score."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import ContactTier
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import add_purchase, make_program, tier_of

pytestmark = pytest.mark.django_db


def test_purchase_count_in_a_window_ignores_older_purchases():
    # given two recent purchases and one 40 days ago
    contact = ContactFactory()
    add_purchase(contact, 10)
    add_purchase(contact, 20)
    add_purchase(contact, 30, occurred_at=timezone.now() - timedelta(days=40))
    # when
    windowed = make_program("Recent buyers", metric={"type": "purchase_count", "within_days": 30},
                            tiers=[("Buyer", 1, None), ("Regular", 3, None)])
    all_time = make_program("All buyers", metric={"type": "purchase_count", "within_days": None},
                            tiers=[("Buyer", 1, None), ("Regular", 3, None)])
    # then
    assert tier_of(windowed, contact) == "Buyer"
    assert tier_of(all_time, contact) == "Regular"
    assert ContactTier.objects.get(program=all_time, contact=contact).metric_value == 3


def test_purchase_total_sums_values_and_boundary_reaches_the_tier():
    # given totals of exactly 1000, 999.99 and nothing
    exact, below, nothing = ContactFactory(), ContactFactory(), ContactFactory()
    add_purchase(exact, 400)
    add_purchase(exact, 600)
    add_purchase(below, 999.99)
    # when
    program = make_program("Spenders", metric={"type": "purchase_total", "within_days": 365},
                           tiers=[("Silver", 100, None), ("Gold", 1000, None)])
    # then
    assert tier_of(program, exact) == "Gold"
    assert tier_of(program, below) == "Silver"
    assert tier_of(program, nothing) is None  # below the lowest tier
    assert not ContactTier.objects.filter(program=program, contact=nothing).exists()


def test_contact_score_metric_including_negative_scores():
    # given
    cold, warm = ContactFactory(score=-10), ContactFactory(score=50)
    # when
    program = make_program("Engagement", metric={"type": "score"}, tiers=[("Engaged", 0, None), ("Fan", 50, None)])
    # then
    assert tier_of(program, cold) is None
    assert tier_of(program, warm) == "Fan"


def test_tag_score_matches_the_tag_case_insensitively_and_absent_is_zero():
    # given
    tagged, untagged = ContactFactory(), ContactFactory()
    give_tag(tagged, "Purchase", 7)
    # when
    program = make_program(metric={"type": "tag_score", "tag": "PURCHASE"})
    # then
    assert tier_of(program, tagged) == "Silver"
    assert tier_of(program, untagged) == "Bronze"


def test_a_tag_nobody_has_puts_everyone_at_zero():
    # given
    contact = ContactFactory()
    # when
    program = make_program(metric={"type": "tag_score", "tag": "NEVER-SEEN"}, tiers=[("Zero", 0, None), ("One", 1, None)])
    # then
    assert tier_of(program, contact) == "Zero"
