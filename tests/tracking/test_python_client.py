"""Segment's own Python library (segment-analytics-python) against the live server: the contact,
its tags and points are what ``/api/v1/events`` gives for the same events; a resent batch
changes nothing."""

from __future__ import annotations

from unittest import mock

import pytest
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError

from automation.starter import install_starter_rules
from contacts.models import Contact, Event
from tests.automation.factories import process_all, score_of, tags_of
from tracking.services import source_issue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_enqueue():
    # The engine runs in the test (process_all), as the automation tests do.
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


@pytest.fixture
def starter_rules():
    return install_starter_rules()


def _segment_client(live_server, write_key: str, errors: list, *, sync_mode: bool) -> SegmentClient:
    return SegmentClient(write_key, host=live_server.url, sync_mode=sync_mode, max_retries=0,
                         on_error=lambda error, batch: errors.append(error), upload_interval=0.05)


def _shop_session(client: SegmentClient, *, user_id: str, email: str, ids: str) -> None:
    """A customer's visit as a shop's back end reports it; ``ids`` makes the messageIds stable."""
    client.identify(user_id, {"email": email, "firstName": "Anna", "address": {"city": "Gdańsk"}}, message_id=f"{ids}-1")
    client.track(user_id, "Product Viewed", {"category": "kurtki", "name": "Parka", "price": 399}, message_id=f"{ids}-2")
    client.track(user_id, "Product Viewed", {"category": "kurtki", "name": "Kurtka"}, message_id=f"{ids}-3")
    client.page(user_id, name="Ring", properties={"url": "https://shop.example/diamenty/ring"}, message_id=f"{ids}-4")
    client.track(user_id, "Order Completed", {"order_id": "o-1", "products": [{"price": 600, "quantity": 2}, {"price": 50}]},
                 message_id=f"{ids}-5")


def _same_events_through_the_events_api(ingest_api, email: str) -> None:
    """What a hand-written integration would send to /api/v1/events for that visit."""
    ingest_api.post("/api/v1/contacts", json={"email": email, "first_name": "Anna", "city": "Gdańsk"})
    events = [
        {"event_id": "api-2", "type": "product_view", "properties": {"category": "kurtki", "product_name": "Parka", "price": 399}},
        {"event_id": "api-3", "type": "product_view", "properties": {"category": "kurtki", "product_name": "Kurtka"}},
        {"event_id": "api-4", "type": "page_view", "properties": {"url": "https://shop.example/diamenty/ring", "name": "Ring"}},
        {"event_id": "api-5", "type": "purchase", "properties": {"order_id": "o-1", "value": 1250}},
    ]
    from datetime import UTC, datetime

    response = ingest_api.post("/api/v1/events", json={"events": [
        {**event, "email": email, "occurred_at": datetime.now(UTC).isoformat()} for event in events]})
    assert response.status_code == 202


def test_segment_python_library_scores_like_the_events_api(live_server, starter_rules, ingest_api):
    # given a server source and the starter rules
    _, write_key = source_issue(name="Shop back end", kind="server")
    errors: list = []
    client = _segment_client(live_server, write_key, errors, sync_mode=True)
    # when the shop reports a visit through Segment's library, and a twin visit through /api/v1/events
    _shop_session(client, user_id="cust-1", email="anna@example.com", ids="visit")
    _same_events_through_the_events_api(ingest_api, "twin@example.com")
    process_all()
    # then both contacts end up the same
    assert errors == []
    anna = Contact.objects.get(email="anna@example.com")
    assert (anna.first_name, anna.city) == ("Anna", "Gdańsk")
    assert tags_of("anna@example.com") == tags_of("twin@example.com") == {"kurtki": 2, "PURCHASE": 1}
    assert score_of("anna@example.com") == score_of("twin@example.com") == 30 + 50
    purchase = Event.objects.get(contact=anna, type="purchase")
    assert purchase.value == 1250


def test_the_same_batch_sent_twice_has_no_further_effect(live_server, starter_rules):
    # given a visit sent as one batch (queued, then flushed)
    _, write_key = source_issue(name="Shop back end", kind="server")
    errors: list = []
    first = _segment_client(live_server, write_key, errors, sync_mode=False)
    _shop_session(first, user_id="cust-2", email="ola@example.com", ids="batch")
    first.flush()
    process_all()
    tags, score, events = tags_of("ola@example.com"), score_of("ola@example.com"), Event.objects.count()
    # when a second client (a retry after a crash) sends the same messages again
    second = _segment_client(live_server, write_key, errors, sync_mode=False)
    _shop_session(second, user_id="cust-2", email="ola@example.com", ids="batch")
    second.flush()
    process_all()
    # then nothing changed
    assert errors == []
    assert (tags_of("ola@example.com"), score_of("ola@example.com"), Event.objects.count()) == (tags, score, events)
    assert tags == {"kurtki": 2, "PURCHASE": 1}


def test_library_reports_a_revoked_key(live_server):
    # given a revoked source
    from tracking.services import source_revoke

    source, write_key = source_issue(name="Old", kind="server")
    source_revoke(source)
    client = _segment_client(live_server, write_key, [], sync_mode=True)
    # when
    with pytest.raises(APIError) as refused:
        client.track("u@example.com", "Product Viewed", {"category": "kurtki"})
    # then the library got the 401 and nothing was stored
    assert refused.value.status == 401
    assert not Event.objects.exists()
