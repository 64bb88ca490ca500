"""POST /api/v1/loyalty/programs/{id}/preview: the impact of new tiers, without saving — and the
same numbers the save's recompute then produces."""

from __future__ import annotations

import pytest

from loyalty.models import ContactTier, Tier, TierChange
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import SEEDS_EXAMPLE

pytestmark = pytest.mark.django_db


@pytest.fixture
def program_with_contacts(admin_api):
    """PURCHASE scores 0 (no tag), 3, 5, 6, 8, 12 → Bronze ×3, Silver ×3."""
    contacts = {0: ContactFactory()}
    for score in (3, 5, 6, 8, 12):
        contacts[score] = ContactFactory()
        give_tag(contacts[score], "PURCHASE", score)
    program = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    return program, contacts


def test_raising_a_threshold_previews_the_drops(admin_api, program_with_contacts):
    # given
    program, _ = program_with_contacts
    # when Silver needs 9
    tiers = [{"name": "Bronze", "min": 0}, {"name": "Silver", "min": 9}]
    response = admin_api.post(f"/api/v1/loyalty/programs/{program['id']}/preview", json={"tiers": tiers})
    # then 6 and 8 drop to Bronze; nothing is written
    assert response.status_code == 200
    body = response.json()
    assert (body["up"], body["down"], body["unchanged"]) == (0, 2, 4)
    assert body["distribution"] == {"Bronze": 5, "Silver": 1}
    assert Tier.objects.get(program_id=program["id"], name="Silver").min == 6
    assert ContactTier.objects.filter(program_id=program["id"], tier__name="Silver").count() == 3


def test_boundary_exactly_at_the_threshold_reaches_the_tier(admin_api, program_with_contacts):
    # given
    program, _ = program_with_contacts
    # when Silver starts exactly at 8 and Gold exactly at 12
    tiers = [{"name": "Bronze", "min": 0}, {"name": "Silver", "min": 8}, {"name": "Gold", "min": 12}]
    body = admin_api.post(f"/api/v1/loyalty/programs/{program['id']}/preview", json={"tiers": tiers}).json()
    # then 8 is Silver, 12 is Gold, 6 drops
    assert body["distribution"] == {"Bronze": 4, "Silver": 1, "Gold": 1}
    assert (body["up"], body["down"]) == (1, 1)


def test_contacts_below_the_lowest_tier_have_none(admin_api, program_with_contacts):
    # given
    program, _ = program_with_contacts
    # when the lowest tier starts at 5
    tiers = [{"name": "Bronze", "min": 5}, {"name": "Silver", "min": 6}]
    body = admin_api.post(f"/api/v1/loyalty/programs/{program['id']}/preview", json={"tiers": tiers}).json()
    # then 0 and 3 fall out of every tier (a move down), 5 stays Bronze
    assert body["distribution"] == {"Bronze": 1, "Silver": 3}
    assert (body["up"], body["down"], body["unchanged"]) == (0, 2, 4)
    assert body["no_tier"] == 2


def test_preview_then_put_gives_the_same_numbers(admin_api, program_with_contacts):
    # given
    program, _ = program_with_contacts
    tiers = [{"name": "Starter", "min": 1}, {"name": "Bronze", "min": 4, "benefits": {"discount_percent": 5}},
             {"name": "Gold", "min": 10, "benefits": {"discount_percent": 10}}]
    # when previewing and then saving the same tiers
    preview = admin_api.post(f"/api/v1/loyalty/programs/{program['id']}/preview", json={"tiers": tiers}).json()
    saved = admin_api.put(f"/api/v1/loyalty/programs/{program['id']}", json={"tiers": tiers}).json()
    # then the recompute produced what the preview said
    result = saved["recompute"]
    for key in ("up", "down", "unchanged", "distribution", "no_tier"):
        assert result[key] == preview[key], key
    # and every real change is recorded from → to with a reason
    changes = set(TierChange.objects.filter(program_id=program["id"], reason__contains="API").values_list("from_tier", "to_tier"))
    # (0 → no tier, 3 → Starter, 6 and 8 → Bronze, 12 → Gold; 5 stays Bronze)
    assert changes == {("Bronze", ""), ("Bronze", "Starter"), ("Silver", "Bronze"), ("Silver", "Gold")}
    assert TierChange.objects.filter(program_id=program["id"], from_tier="Silver", to_tier="Bronze").count() == 2


def test_preview_validates_like_create(admin_api, program_with_contacts):
    # given
    program, _ = program_with_contacts
    url = f"/api/v1/loyalty/programs/{program['id']}/preview"
    # when
    overlapping = admin_api.post(url, json={"tiers": [{"name": "A", "min": 5}, {"name": "B", "min": 5}]})
    missing = admin_api.post(url, json={})
    unknown = admin_api.post(url, json={"tiers": [{"name": "A", "min": 0}], "metric": {"type": "score"}})
    nowhere = admin_api.post("/api/v1/loyalty/programs/999999/preview", json={"tiers": [{"name": "A", "min": 0}]})
    # then
    assert overlapping.status_code == 400 and overlapping.json()["errors"][0]["field"] == "tiers.1.min"
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "tiers"
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "metric"
    assert nowhere.status_code == 404
