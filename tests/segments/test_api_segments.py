"""The Segments part of the API contract: preview, create, get, members; errors and cycles."""

from __future__ import annotations

import pytest

from segments.models import Segment
from segments.services import segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import consent

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "Kurtki", "op": "gte", "value": 3}


@pytest.fixture
def jackets_world():
    """Five contacts: three with kurtki ≥ 3 (two of them with email consent), two below."""
    contacts = {}
    for name, score in (("ala", 5), ("bartek", 3), ("cezary", 4), ("dorota", 2), ("ewa", 1)):
        contacts[name] = ContactFactory(email=f"{name}@example.com")
        give_tag(contacts[name], "kurtki", score)
    consent(contacts["ala"], "email", True)
    consent(contacts["bartek"], "email", True)
    consent(contacts["cezary"], "email", False)
    return contacts


def test_preview_counts_and_samples_sorted_emails(admin_api, jackets_world):
    # when
    response = admin_api.post("/api/v1/segments/preview", json={"definition": KURTKI_3})
    # then
    assert response.status_code == 200
    assert response.json() == {
        "count": 3,
        "sample": ["ala@example.com", "bartek@example.com", "cezary@example.com"],
    }


def test_preview_of_nested_groups(admin_api, jackets_world):
    # given (kurtki ≥ 3 AND email consent) OR kurtki = 1
    definition = {
        "any": [
            {"all": [KURTKI_3, {"type": "consent", "channel": "email", "value": True}]},
            {"type": "tag_score", "tag": "KURTKI", "op": "eq", "value": 1},
        ]
    }
    # when
    body = admin_api.post("/api/v1/segments/preview", json={"definition": definition}).json()
    # then
    assert body == {"count": 3, "sample": ["ala@example.com", "bartek@example.com", "ewa@example.com"]}


def test_preview_sample_holds_at_most_twenty(admin_api):
    # given 25 contacts with the tag
    for index in range(25):
        give_tag(ContactFactory(email=f"c{index:02}@example.com"), "kurtki", 1)
    # when
    body = admin_api.post("/api/v1/segments/preview", json={"definition": {"type": "has_tag", "tag": "kurtki"}}).json()
    # then
    assert body["count"] == 25
    assert len(body["sample"]) == 20
    assert body["sample"] == sorted(body["sample"])


def test_unknown_tag_matches_nobody(admin_api, jackets_world):
    body = admin_api.post("/api/v1/segments/preview", json={"definition": {"type": "has_tag", "tag": "nope"}}).json()
    assert body == {"count": 0, "sample": []}


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [
        ({"all": [KURTKI_3, {"any": [{"type": "score", "op": "gte", "value": "x"}]}]},
         "definition.all[1].any[0].value", "must be a number"),
        ({"type": "tag_score", "tag": "kurtki", "op": "bigger", "value": 3}, "definition.op", "must be one of"),
        ({"not": {"type": "wat"}}, "definition.not.type", "must be one of"),
        ({"all": [{"type": "age", "op": "between", "value": [40, 30]}]}, "definition.all[0].value", "low end"),
        ({"all": "nope"}, "definition.all", "must be a list"),
        ([1, 2], "definition", "must be a group"),
        ({"type": "event_count", "event_type": "product_view", "op": "gte", "value": 1,
          "where": [{"property": "category", "op": "gt", "value": "x"}]},
         "definition.where[0].value", "must be a number"),
        ({"type": "has_tag", "tag": "x", "score": 3}, "definition.score", "unknown field"),
        ({"type": "attribute", "name": "shoe_size", "op": "eq", "value": "x"}, "definition.name", "properties.<key>"),
        ({"type": "consent", "channel": "email", "value": "yes"}, "definition.value", "true or false"),
    ],
)
def test_invalid_definitions_are_400_naming_the_node(admin_api, definition, field, message):
    # when
    response = admin_api.post("/api/v1/segments/preview", json={"definition": definition})
    # then
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any(error["field"] == field and message in error["message"] for error in errors), errors


def test_missing_definition_is_400(admin_api):
    response = admin_api.post("/api/v1/segments/preview", json={})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "definition"


def test_create_answers_201_with_the_segment(admin_api, jackets_world):
    # when
    response = admin_api.post("/api/v1/segments", json={"name": "Kurtki fans", "definition": KURTKI_3})
    # then
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == Segment.objects.get().pk
    assert body["name"] == "Kurtki fans"
    assert body["definition"] == KURTKI_3
    assert body["count"] == 3
    assert {"refreshed_at"} <= set(body)


def test_create_validates_name_and_definition_together(admin_api):
    response = admin_api.post("/api/v1/segments", json={"name": " ", "definition": {"type": "score"}})
    assert response.status_code == 400
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"name", "definition.op"} <= fields
    assert not Segment.objects.exists()


def test_get_returns_the_contract_fields(admin_api, jackets_world):
    # given a created, then refreshed segment
    created = admin_api.post("/api/v1/segments", json={"name": "Kurtki", "definition": KURTKI_3}).json()
    segment_refresh(created["id"])
    # when
    body = admin_api.get(f"/api/v1/segments/{created['id']}").json()
    # then
    assert {key: body[key] for key in ("id", "name", "definition", "count")} == {
        "id": created["id"], "name": "Kurtki", "definition": KURTKI_3, "count": 3,
    }
    assert body["refreshed_at"] is not None


def test_get_unknown_is_404(admin_api):
    response = admin_api.get("/api/v1/segments/999999")
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize("refreshed", [False, True], ids=["before the worker refresh", "after it"])
def test_members_are_sorted_emails_paginated(admin_api, refreshed):
    # given 150 members (so two pages of 100) and a non-member
    for index in range(150):
        give_tag(ContactFactory(email=f"m{index:03}@example.com"), "kurtki", 3)
    give_tag(ContactFactory(email="zz-not@example.com"), "kurtki", 1)
    segment_id = admin_api.post("/api/v1/segments", json={"name": "K", "definition": KURTKI_3}).json()["id"]
    if refreshed:
        segment_refresh(segment_id)
    # when
    first = admin_api.get(f"/api/v1/segments/{segment_id}/members").json()
    second = admin_api.get(f"/api/v1/segments/{segment_id}/members?page=2").json()
    # then
    assert first["count"] == 150
    assert first["results"] == [f"m{index:03}@example.com" for index in range(100)]
    assert first["next"].endswith(f"/api/v1/segments/{segment_id}/members?page=2")
    assert second["results"] == [f"m{index:03}@example.com" for index in range(100, 150)]
    assert second["next"] is None


def test_members_bad_page_is_400(admin_api):
    segment_id = admin_api.post("/api/v1/segments", json={"name": "K", "definition": KURTKI_3}).json()["id"]
    assert admin_api.get(f"/api/v1/segments/{segment_id}/members?page=0").status_code == 400
    assert admin_api.get(f"/api/v1/segments/{segment_id}/members?page=abc").status_code == 400


def test_members_of_unknown_segment_is_404(admin_api):
    assert admin_api.get("/api/v1/segments/999999/members").status_code == 404


def test_segment_reference_must_exist(admin_api):
    response = admin_api.post("/api/v1/segments/preview", json={"definition": {"type": "segment", "segment_id": 424242}})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "definition.segment_id", "message": "segment 424242 does not exist"}]


def test_nested_segment_is_evaluated_live(admin_api, jackets_world):
    # given a saved segment and a definition nesting it
    inner = admin_api.post("/api/v1/segments", json={"name": "K", "definition": KURTKI_3}).json()["id"]
    definition = {"all": [{"type": "segment", "segment_id": inner}, {"type": "consent", "channel": "email", "value": True}]}
    # when
    body = admin_api.post("/api/v1/segments/preview", json={"definition": definition}).json()
    # then
    assert body == {"count": 2, "sample": ["ala@example.com", "bartek@example.com"]}


def test_cycles_are_rejected(admin_api):
    # given A, and B nesting A
    a = admin_api.post("/api/v1/segments", json={"name": "A", "definition": KURTKI_3}).json()["id"]
    b = admin_api.post("/api/v1/segments", json={"name": "B", "definition": {
        "any": [{"type": "segment", "segment_id": a}, {"type": "score", "op": "gte", "value": 100}]}}).json()["id"]
    # when A is changed to nest B (A → B → A), or itself
    through_b = admin_api.patch(f"/api/v1/segments/{a}", json={"definition": {"not": {"type": "segment", "segment_id": b}}})
    itself = admin_api.patch(f"/api/v1/segments/{a}", json={"definition": {"type": "segment", "segment_id": a}})
    # then both are 400 naming the reference, and A is unchanged
    assert through_b.status_code == 400
    assert through_b.json()["errors"][0]["field"] == "definition.not.segment_id"
    assert "cycle" in through_b.json()["errors"][0]["message"]
    assert itself.status_code == 400
    assert Segment.objects.get(pk=a).definition == KURTKI_3


def test_ingest_key_may_not_use_segments(ingest_api):
    assert ingest_api.post("/api/v1/segments/preview", json={"definition": KURTKI_3}).status_code == 403


def test_segments_need_a_key(client, db):
    assert client.post("/api/v1/segments/preview", data={}, content_type="application/json").status_code == 401
