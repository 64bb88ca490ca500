"""The inputs that used to answer 500: NUL and control characters in every string input, huge
integers, far dates, oversized and malformed bodies. Each gets a 400 (or 413) naming the field,
and nothing is stored."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from automation.models import EventReceipt, Rule
from contacts.models import Contact
from leads.models import Funnel
from loyalty.models import Program
from segments.models import Segment
from tests.automation.factories import event, make_rule
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db

NUL = "bad\x00value"
RULE = {"name": "Jackets", "trigger": {"event_type": "product_view", "where": [
    {"property": "category", "op": "eq", "value": "kurtki"}]}, "actions": [{"type": "add_tag", "tag": "KURTKI"}]}
PROGRAM = {"name": "Club", "metric": {"type": "score"}, "tiers": [{"name": "Silver", "min": 10}]}


def _with(base: dict, path: str, value) -> dict:
    """A deep copy of ``base`` with the dotted ``path`` (list indexes as numbers) set to ``value``."""
    body = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return body


def _leaf(leaf: dict) -> dict:
    return {"definition": {"all": [leaf]}}


# (method, url, body, the field the error must name)
NUL_CASES = [
    # segment leaves (preview)
    ("post", "/api/v1/segments/preview", _leaf({"type": "has_tag", "tag": NUL}), "definition.all.0.tag"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "tag_score", "tag": NUL, "op": "gte", "value": 1}),
     "definition.all.0.tag"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "attribute", "name": "city", "op": "eq", "value": NUL}),
     "definition.all.0.value"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "stage", "funnel": NUL, "stage": "New"}),
     "definition.all.0.funnel"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "tier", "program": "Club", "tier": NUL}),
     "definition.all.0.tier"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "consent", "channel": NUL, "value": True}),
     "definition.all.0.channel"),
    ("post", "/api/v1/segments/preview", _leaf({"type": "event_count", "event_type": "purchase", "op": "gte",
                                                "value": 1, "where": [{"property": "category", "op": "eq",
                                                                       "value": NUL}]}),
     "definition.all.0.where.0.value"),
    # segment name
    ("post", "/api/v1/segments", {"name": NUL, "definition": {"all": []}}, "name"),
    # rule name, condition values and tags
    ("post", "/api/v1/rules", _with(RULE, "name", NUL), "name"),
    ("post", "/api/v1/rules", _with(RULE, "trigger.where.0.value", NUL), "trigger.where.0.value"),
    ("post", "/api/v1/rules", _with(RULE, "trigger.where.0.value", ["a", NUL]), "trigger.where.0.value.1"),
    ("post", "/api/v1/rules", _with(RULE, "actions.0.tag", NUL), "actions.0.tag"),
    # stage names
    ("post", "/api/v1/funnels", {"name": "Sales", "stages": ["New", NUL]}, "stages.1"),
    # contact properties (a value and a key) and fields
    ("post", "/api/v1/contacts", {"email": "ala@example.com", "properties": {"size": NUL}}, "properties.size"),
    ("post", "/api/v1/contacts", {"email": "ala@example.com", "properties": {NUL: 1}}, f"properties.{NUL}"),
    ("post", "/api/v1/contacts", {"email": "ala@example.com", "first_name": "Ala\x07"}, "first_name"),
    # loyalty names
    ("post", "/api/v1/loyalty/programs", _with(PROGRAM, "name", NUL), "name"),
    ("post", "/api/v1/loyalty/programs", _with(PROGRAM, "tiers.0.name", NUL), "tiers.0.name"),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), NUL_CASES, ids=[case[3] + "@" + case[1] for case in NUL_CASES])
def test_control_characters_are_refused_naming_the_field(admin_api, method, url, body, field):
    # when a string input carries a NUL (or another control character)
    response = getattr(admin_api, method)(url, json=body)
    # then 400 in the contract's shape, naming the field; nothing stored
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in [error["field"] for error in errors], errors
    assert all("control characters" in error["message"] for error in errors if error["field"] == field)
    assert not (Segment.objects.exists() or Rule.objects.exists() or Funnel.objects.exists()
                or Contact.objects.exists() or Program.objects.exists())


def test_control_characters_in_a_batch_name_the_item(ingest_api):
    # given a batch whose third event has a NUL in a property
    events = [event(f"e{index}", category="kurtki") for index in range(3)]
    events[2]["properties"]["category"] = NUL
    # when
    with mock.patch("automation.tasks.events_process_enqueue"):
        response = ingest_api.post("/api/v1/events", json={"events": events})
    # then the item's index and the field are named, and nothing is stored
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 2, "field": "properties.category", "message": "must not contain NUL or other control characters"}]
    assert not EventReceipt.objects.exists()


def test_control_characters_in_the_stage_body_and_the_path(admin_api):
    # given a contact and a funnel
    ContactFactory(email="ala@example.com")
    funnel_with_stages()
    # when the stage's name holds a NUL, or the email in the path does
    stage = admin_api.put("/api/v1/contacts/ala@example.com/stages", json={"funnel": "Sales", "stage": NUL})
    path = admin_api.get("/api/v1/contacts/ala%00@example.com")
    query = admin_api.get("/api/v1/contacts/by-email?email=ala%00@example.com")
    # then each is a 400 naming where it was
    assert stage.status_code == 400 and stage.json()["errors"][0]["field"] == "stage"
    assert path.status_code == 400 and path.json()["errors"][0]["field"] == "path"
    assert query.status_code == 400 and query.json()["errors"][0]["field"] == "email"


def test_max_points_per_contact_is_bounded(admin_api):
    # when the cap does not fit the column (2^63)
    response = admin_api.post("/api/v1/rules", json={**RULE, "max_points_per_contact": 2**63,
                                                      "actions": [{"type": "add_score", "points": 5}]})
    # then
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["max_points_per_contact"]
    assert not Rule.objects.exists()


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2024-01-01T00:00:00"])
def test_run_since_is_a_bounded_aware_datetime(admin_api, since):
    # given a rule
    rule = make_rule()
    # when it is run from a date out of range, or without a timezone
    response = admin_api.post(f"/api/v1/rules/{rule.pk}/run", json={"since": since})
    # then
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "since"


def test_a_ten_megabyte_preview_body_is_413(admin_api):
    # given a 10 MB definition
    body = json.dumps({"definition": {"any": [{"type": "has_tag", "tag": "x" * 100}] * 80_000}})
    assert len(body) > 10 * 1024 * 1024
    # when
    response = admin_api.client.post("/api/v1/segments/preview", data=body, content_type="application/json",
                                     headers=admin_api.headers)
    # then 413 in the errors shape
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("url", ["/api/v1/rules", "/api/v1/segments", "/api/v1/funnels", "/api/v1/loyalty/programs",
                                 "/api/v1/contacts", "/api/v1/segments/preview"])
def test_every_body_has_a_size_limit(admin_api, settings, url):
    # given a small limit
    settings.API_MAX_BODY_BYTES = 1024
    # when a larger body arrives
    response = admin_api.post(url, json={"name": "x" * 2000})
    # then 413 before anything is parsed
    assert response.status_code == 413
    assert response.json() == {"errors": [{"field": "body", "message": "The request body may be at most 1 KB."}]}


@pytest.mark.parametrize("url", ["/api/v1/rules", "/api/v1/segments", "/api/v1/segments/preview", "/api/v1/funnels",
                                 "/api/v1/loyalty/programs", "/api/v1/contacts", "/api/v1/contacts/batch",
                                 "/api/v1/events"])
def test_malformed_json_answers_the_errors_shape(admin_api, url):
    # when the body is not JSON
    response = admin_api.client.post(url, data="{not json", content_type="application/json", headers=admin_api.headers)
    # then the contract's errors, not {"detail"}
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "body" and error["message"].startswith("is not valid JSON")


def test_database_unavailable_is_503_with_retry_after(admin_api):
    # given a database that refuses connections
    from django.db import OperationalError

    with mock.patch("automation.api.Rule.objects.order_by", side_effect=OperationalError("connection refused")):
        response = admin_api.get("/api/v1/rules")
    # then 503, a Retry-After, and no internals
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json() == {"detail": "The database is unavailable; retry shortly."}


@pytest.mark.parametrize(("warm", "hot", "field"), [(-1, 10, "warm"), (0, 0, "hot"), (50, 20, "hot")])
def test_temperature_thresholds_are_validated(admin_api, warm, hot, field):
    # when thresholds are negative or hot is not above warm
    response = admin_api.put("/api/v1/settings/temperature", json={"warm": warm, "hot": hot})
    # then
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
