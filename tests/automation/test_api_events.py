"""POST /api/v1/events and GET /api/v1/events/status, per the contract."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from automation.models import EventReceipt
from contacts.models import Contact, Event, Suppression, email_hash
from segments.dirty import segments_dirty_refresh
from tests.automation.factories import event, make_rule, process_all, tags_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue") as enqueue:
        yield enqueue


def test_accepts_a_batch_and_creates_unknown_contacts(ingest_api, no_enqueue, django_capture_on_commit_callbacks):
    # given two events of an unknown email (mixed case)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = ingest_api.post("/api/v1/events", json={"events": [
            event("x1", email="  Nowa@Example.COM ", category="kurtki"), event("x2", email="nowa@example.com"),
        ]})
    # then
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "suppressed": 0}
    contact = Contact.objects.get(email="nowa@example.com")
    assert Event.objects.filter(contact=contact).count() == 2
    assert no_enqueue.call_count == 1  # one processing task per request, after commit


def test_duplicates_within_and_across_requests(ingest_api):
    # given a rule, and a request repeating an event_id
    make_rule()
    first = ingest_api.post("/api/v1/events", json={"events": [
        event("dup-1", category="kurtki"), event("dup-1", category="kurtki"), event("dup-2", category="buty"),
    ]})
    # when the same ids are sent again with a new one
    second = ingest_api.post("/api/v1/events", json={"events": [
        event("dup-1", category="kurtki"), event("dup-3", category="kurtki"),
    ]})
    process_all()
    # then
    assert first.json() == {"accepted": 2, "duplicates": 1, "suppressed": 0}
    assert second.json() == {"accepted": 1, "duplicates": 1, "suppressed": 0}
    assert tags_of("anna@example.com") == {"kurtki": 2, "buty": 1}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"email": "not-an-email"}, "email"),
        ({"type": "teleport"}, "type"),
        ({"occurred_at": "2025-01-01T10:00:00"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": (timezone.now() + timedelta(days=1)).isoformat()}, "occurred_at"),
        ({"properties": {"value": "a lot"}}, "properties.value"),
        ({"properties": {"value": 10**15}}, "properties.value"),
        ({"properties": "nope"}, "properties"),
    ],
)
def test_an_invalid_item_stores_nothing(ingest_api, item, field):
    # given a valid event and an invalid one at index 1
    bad = {**event("bad-1"), **item}
    # when
    response = ingest_api.post("/api/v1/events", json={"events": [event("ok-1"), bad]})
    # then
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"index": 1, "field": field} == {key: errors[0][key] for key in ("index", "field")}
    assert errors[0]["message"]
    assert not EventReceipt.objects.exists()
    assert not Contact.objects.exists()


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "x"}, [], "text", {"events": [1]}])
def test_malformed_bodies_are_400(ingest_api, body):
    response = ingest_api.post("/api/v1/events", json=body)
    assert response.status_code == 400
    assert response.json()["errors"]


def test_more_than_1000_events_is_400(ingest_api):
    response = ingest_api.post("/api/v1/events", json={"events": [event(f"m{i}") for i in range(1001)]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "events"


def test_oversize_body_is_413(ingest_api, settings):
    # given a small limit
    settings.INGEST_MAX_BODY_BYTES = 2000
    # when
    response = ingest_api.post("/api/v1/events", json={"events": [event(f"o{i}", note="x" * 100) for i in range(30)]})
    # then
    assert response.status_code == 413
    assert not EventReceipt.objects.exists()


def test_rate_limit_answers_429_with_retry_after(ingest_api, settings):
    # given a limit of 2 requests per minute for the key
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 2
    from django.core.cache import cache

    cache.clear()
    # when three requests come
    codes = [ingest_api.post("/api/v1/events", json={"events": [event()]}) for _ in range(3)]
    # then
    assert [response.status_code for response in codes] == [202, 202, 429]
    assert 1 <= int(codes[2]["Retry-After"]) <= 61
    cache.clear()


def test_suppressed_email_is_not_recreated(ingest_api):
    # given an erased email
    Suppression.objects.create(email_hash=email_hash("gone@example.com"))
    # when its event arrives with another one
    response = ingest_api.post("/api/v1/events", json={"events": [event(email="gone@example.com"), event()]})
    # then
    assert response.json() == {"accepted": 1, "duplicates": 0, "suppressed": 1}
    assert not Contact.objects.filter(email="gone@example.com").exists()


def test_auth_scopes(client, ingest_api, admin_api):
    # no key → 401; an ingest key may post but not read the status; an admin key may do both
    assert client.post("/api/v1/events", data=json.dumps({"events": [event()]}),
                       content_type="application/json").status_code == 401
    assert ingest_api.get("/api/v1/events/status").status_code == 403
    assert admin_api.post("/api/v1/events", json={"events": [event()]}).status_code == 202


def test_status_reports_pending_until_processed(ingest_api, admin_api):
    # given
    make_rule()
    ingest_api.post("/api/v1/events", json={"events": [event(category="a"), event(category="b")]})
    # then the two events wait, and the new contact's memberships (it is new to every segment)
    assert admin_api.get("/api/v1/events/status").json() == {"pending": 3, "waiting": 2, "failed": 0,
                                                              "memberships_waiting": 1}
    # when the engine applies them
    process_all()
    # then the contact's saved-segment memberships still wait: not everything is current yet
    assert admin_api.get("/api/v1/events/status").json() == {"pending": 1, "waiting": 0, "failed": 0,
                                                              "memberships_waiting": 1}
    # when the memberships are re-evaluated
    segments_dirty_refresh()
    # then events/status reads 0
    assert admin_api.get("/api/v1/events/status").json() == {"pending": 0, "waiting": 0, "failed": 0,
                                                              "memberships_waiting": 0}


def test_event_value_is_copied_out_and_partition_created(ingest_api):
    # given a purchase far in the past (a month without a partition)
    long_ago = timezone.now() - timedelta(days=800)
    # when
    response = ingest_api.post("/api/v1/events", json={"events": [
        event("p1", type="purchase", occurred_at=long_ago, value="1299.90"),
    ]})
    # then
    assert response.status_code == 202
    stored = Event.objects.get(event_id="p1")
    assert str(stored.value) == "1299.90"
    from contacts.models import Contact

    process_all()
    assert Contact.objects.get(email="anna@example.com").last_activity_at == stored.occurred_at
