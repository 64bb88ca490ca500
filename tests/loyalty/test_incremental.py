"""Tiers stay current as events are processed: the rules engine's hook refreshes touched contacts."""

from __future__ import annotations

import pytest

from automation.engine import events_process_pending
from loyalty.models import ContactTier, TierChange
from loyalty.services import tiers_refresh_for_contacts
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program, tier_of

pytestmark = pytest.mark.django_db


def test_refresh_touches_only_the_given_contacts():
    # given two contacts in Bronze whose PURCHASE scores then rise to 6
    first, second = ContactFactory(), ContactFactory()
    program = make_program()
    give_tag(first, "PURCHASE", 6)
    give_tag(second, "PURCHASE", 6)
    # when only the first is refreshed
    tiers_refresh_for_contacts([first.pk])
    # then
    assert tier_of(program, first) == "Silver"
    assert tier_of(program, second) == "Bronze"
    change = TierChange.objects.get(program=program, contact=first, reason="New events")
    assert (change.from_tier, change.to_tier, change.direction) == ("Bronze", "Silver", TierChange.UP)
    assert not TierChange.objects.filter(program=program, contact=second, reason="New events").exists()


def test_refresh_updates_the_metric_without_a_tier_change():
    # given
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 1)
    program = make_program()
    contact.contact_tags.update(score=3)
    # when
    tiers_refresh_for_contacts([contact.pk])
    # then
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.metric_value == 3 and row.tier.name == "Bronze"
    assert not TierChange.objects.filter(program=program, contact=contact).exclude(reason="Full recompute").exists()


def test_refresh_with_unknown_or_no_contacts_is_harmless():
    make_program()
    tiers_refresh_for_contacts([])
    tiers_refresh_for_contacts([987654321])
    assert not ContactTier.objects.filter(contact_id=987654321).exists()


def test_purchases_through_the_api_move_the_tier(admin_api, ingest_api):
    # given the seeds' rule: every purchase adds 1 to PURCHASE; Silver from 6
    admin_api.post("/api/v1/rules", json={
        "name": "Purchase", "active": True, "trigger": {"event_type": "purchase", "where": []},
        "actions": [{"type": "add_tag", "tag": "PURCHASE", "score": 1}],
    })
    contact = ContactFactory(email="buyer@example.com")
    give_tag(contact, "PURCHASE", 5)
    program = make_program()
    assert tier_of(program, contact) == "Bronze"
    # when a purchase is accepted and the worker's batch runs (here: its body, directly)
    response = ingest_api.post("/api/v1/events", json={"events": [
        {"event_id": "order-1", "email": "buyer@example.com", "type": "purchase",
         "occurred_at": "2026-01-01T10:00:00+00:00", "properties": {"value": 120}},
    ]})
    assert response.status_code == 202, response.content
    events_process_pending()
    # then the contact is Silver, as the contact API shows
    assert tier_of(program, contact) == "Silver"
    assert admin_api.get("/api/v1/contacts/buyer@example.com").json()["tiers"] == {"PURCHASE club": "Silver"}
