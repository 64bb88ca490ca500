"""POST/GET/PUT/DELETE /api/v1/loyalty/programs: the contract's shapes and its validation."""

from __future__ import annotations

import pytest

from loyalty.models import ContactTier, Program, Tier
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import SEEDS_EXAMPLE

pytestmark = pytest.mark.django_db


def test_create_returns_the_programme_with_its_tiers(admin_api):
    # when
    response = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE)
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "PURCHASE club"
    assert body["metric"] == {"type": "tag_score", "tag": "PURCHASE"}
    assert [(tier["name"], tier["min"], tier["benefits"]) for tier in body["tiers"]] == [
        ("Bronze", 0, {"discount_percent": 5}),
        ("Silver", 6, {"discount_percent": 7}),
    ]
    assert Program.objects.get(pk=body["id"]).tiers.count() == 2


def test_create_assigns_tiers_at_once(admin_api):
    # given contacts at, around and without the PURCHASE tag
    five, six, none = ContactFactory(), ContactFactory(), ContactFactory()
    give_tag(five, "PURCHASE", 5)
    give_tag(six, "PURCHASE", 6)
    # when
    body = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    # then: 5% while PURCHASE ≤ 5 (absent = 0), 7% above
    tiers = dict(ContactTier.objects.filter(program_id=body["id"]).values_list("contact_id", "tier__name"))
    assert tiers == {five.pk: "Bronze", six.pk: "Silver", none.pk: "Bronze"}
    assert body["recompute"]["distribution"] == {"Bronze": 2, "Silver": 1}


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"type": "tag_score"}, "metric.tag"),
        ({"type": "tag_score", "tag": "  "}, "metric.tag"),
        ({"type": "tag_score", "tag": "X", "within_days": 30}, "metric.within_days"),
        ({"type": "purchase_count", "within_days": 0}, "metric.within_days"),
        ({"type": "purchase_total", "within_days": "365"}, "metric.within_days"),
        ({"type": "purchase_total", "within_days": True}, "metric.within_days"),
        ({"type": "score", "tag": "X"}, "metric.tag"),
        ({"type": "loyalty_points"}, "metric.type"),
        ({}, "metric.type"),
        ("tag_score", "metric"),
        ({"type": "score", "colour": "red"}, "metric.colour"),
    ],
)
def test_metric_shape_is_validated(admin_api, metric, field):
    # when
    response = admin_api.post("/api/v1/loyalty/programs", json={**SEEDS_EXAMPLE, "metric": metric})
    # then
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Program.objects.exists()


@pytest.mark.parametrize(
    ("tiers", "field", "words"),
    [
        ([{"name": "A", "min": 0}, {"name": "A", "min": 5}], "tiers.1.name", "unique"),
        ([{"name": "A", "min": 0}, {"name": "a", "min": 5}], "tiers.1.name", "unique"),
        ([{"name": "A", "min": 5}, {"name": "B", "min": 5}], "tiers.1.min", "equals"),
        ([{"name": "A", "min": 6}, {"name": "B", "min": 0}], "tiers.1.min", "lowest threshold to the highest"),
        ([{"name": "A", "min": "five"}], "tiers.0.min", "number"),
        ([{"name": "A", "min": True}], "tiers.0.min", "number"),
        ([{"name": "A", "min": 1.005}], "tiers.0.min", "2 decimal places"),
        ([{"name": "A", "min": 1e15}], "tiers.0.min", "too large"),
        ([{"name": "A"}], "tiers.0.min", "required"),
        ([{"min": 0}], "tiers.0.name", "required"),
        ([{"name": "A", "min": 0, "benefits": {"discount_percent": 101}}], "tiers.0.benefits.discount_percent", "0 to 100"),
        ([{"name": "A", "min": 0, "benefits": {"free_shipping": "yes"}}], "tiers.0.benefits.free_shipping", "true or false"),
        ([{"name": "A", "min": 0, "benefits": {"cashback": 3}}], "tiers.0.benefits.cashback", "not a benefit"),
        ([{"name": "A", "min": 0, "benefits": [5]}], "tiers.0.benefits", "object"),
        ([], "tiers", "at least one"),
        ("Bronze", "tiers", "list"),
        ([7], "tiers.0", "object"),
    ],
)
def test_tiers_are_validated(admin_api, tiers, field, words):
    # when
    response = admin_api.post("/api/v1/loyalty/programs", json={**SEEDS_EXAMPLE, "tiers": tiers})
    # then
    assert response.status_code == 400
    errors = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert field in errors, errors
    assert words in errors[field]
    assert not Program.objects.exists()


def test_name_is_required_and_unique(admin_api):
    # given
    assert admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).status_code == 201
    # when
    clash = admin_api.post("/api/v1/loyalty/programs", json={**SEEDS_EXAMPLE, "name": "purchase CLUB"})
    missing = admin_api.post("/api/v1/loyalty/programs", json={k: v for k, v in SEEDS_EXAMPLE.items() if k != "name"})
    # then
    assert clash.status_code == 400 and clash.json()["errors"][0]["field"] == "name"
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "name"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"null", b"\xff\xfe"])
def test_malformed_bodies_get_400(admin_api, body):
    # when
    response = admin_api.client.post("/api/v1/loyalty/programs", data=body, content_type="application/json",
                                     headers=admin_api.headers)
    # then
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"


def test_ingest_key_and_no_key_are_refused(ingest_api, client):
    # when
    with_ingest = ingest_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE)
    without = client.post("/api/v1/loyalty/programs", data=SEEDS_EXAMPLE, content_type="application/json")
    # then
    assert with_ingest.status_code == 403
    assert without.status_code == 401
    assert not Program.objects.exists()


def test_get_list_and_404(admin_api):
    # given
    created = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    # when
    one = admin_api.get(f"/api/v1/loyalty/programs/{created['id']}")
    listing = admin_api.get("/api/v1/loyalty/programs")
    missing = admin_api.get("/api/v1/loyalty/programs/999999")
    # then
    assert one.status_code == 200 and one.json()["tiers"] == created["tiers"]
    assert [program["name"] for program in listing.json()["results"]] == ["PURCHASE club"]
    assert missing.status_code == 404 and "detail" in missing.json()


def test_put_saves_and_recomputes_before_answering(admin_api):
    # given Silver from 6
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 5)
    created = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    # when Silver starts at 5
    tiers = [{"name": "Bronze", "min": 0, "benefits": {"discount_percent": 5}},
             {"name": "Silver", "min": 5, "benefits": {"discount_percent": 7, "free_shipping": True}}]
    response = admin_api.put(f"/api/v1/loyalty/programs/{created['id']}", json={"tiers": tiers})
    # then the programme and the contact are current when the response arrives
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tiers"][1]["min"] == 5 and body["tiers"][1]["benefits"]["free_shipping"] is True
    assert body["recompute"]["up"] == 1
    assert ContactTier.objects.get(program_id=created["id"], contact=contact).tier.name == "Silver"
    # the tier kept its identity (a threshold change is not a new tier)
    assert body["tiers"][1]["id"] == created["tiers"][1]["id"]


def test_put_with_invalid_tiers_changes_nothing(admin_api):
    # given
    created = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    # when
    response = admin_api.put(f"/api/v1/loyalty/programs/{created['id']}",
                             json={"tiers": [{"name": "Bronze", "min": 6}, {"name": "Silver", "min": 0}]})
    # then
    assert response.status_code == 400
    assert list(Tier.objects.filter(program_id=created["id"]).order_by("min").values_list("name", "min")) == [
        ("Bronze", 0), ("Silver", 6)
    ]


def test_put_unknown_programme_is_404(admin_api):
    assert admin_api.put("/api/v1/loyalty/programs/999999", json={"tiers": []}).status_code == 404


def test_delete_removes_the_programme(admin_api):
    # given
    created = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE).json()
    # when
    response = admin_api.delete(f"/api/v1/loyalty/programs/{created['id']}")
    # then
    assert response.status_code == 204
    assert not Program.objects.exists()
