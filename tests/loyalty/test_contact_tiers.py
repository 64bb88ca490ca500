"""The contact's ``tiers`` in GET /api/v1/contacts/{email}: {programme: tier name or null}."""

from __future__ import annotations

import pytest

from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def _program(admin_api, name: str, tiers: list[dict]) -> dict:
    body = {"name": name, "metric": {"type": "tag_score", "tag": "PURCHASE"}, "tiers": tiers}
    response = admin_api.post("/api/v1/loyalty/programs", json=body)
    assert response.status_code == 201, response.content
    return response.json()


def test_contact_shows_its_tier_per_programme_and_null_below_the_lowest(admin_api):
    # given a contact with PURCHASE exactly 6, and two programmes
    contact = ContactFactory(email="anna@example.com")
    give_tag(contact, "PURCHASE", 6)
    _program(admin_api, "Club", [{"name": "Bronze", "min": 0}, {"name": "Silver", "min": 6}])
    _program(admin_api, "VIP", [{"name": "VIP", "min": 7}])
    # when
    response = admin_api.get("/api/v1/contacts/anna@example.com")
    # then exactly at the threshold: Silver; below VIP's lowest tier: null
    assert response.status_code == 200, response.content
    assert response.json()["tiers"] == {"Club": "Silver", "VIP": None}


def test_contact_tiers_follow_a_threshold_change(admin_api):
    # given
    contact = ContactFactory(email="ben@example.com")
    give_tag(contact, "PURCHASE", 5)
    program = _program(admin_api, "Club", [{"name": "Bronze", "min": 0}, {"name": "Silver", "min": 6}])
    assert admin_api.get("/api/v1/contacts/ben@example.com").json()["tiers"] == {"Club": "Bronze"}
    # when Silver starts at 5 and Bronze at 1
    admin_api.put(f"/api/v1/loyalty/programs/{program['id']}",
                  json={"tiers": [{"name": "Bronze", "min": 1}, {"name": "Silver", "min": 5}]})
    # then
    assert admin_api.get("/api/v1/contacts/ben@example.com").json()["tiers"] == {"Club": "Silver"}
