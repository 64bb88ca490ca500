"""The /v1/ intake against the contract: endpoints, auth modes, limits, mapping, errors, duplicates."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache

from automation.models import EventReceipt
from contacts.models import Consent, Contact, Event, ProfileMerge, Suppression, email_hash
from tests.tracking.helpers import SHOP_ORIGIN, browser_source, iso, merge_queued, message, post, server_source
from tracking.intake import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES
from tracking.models import Identity, MessageLog
from tracking.services import source_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


@pytest.fixture
def server():
    return server_source()


def _events(email: str) -> list[Event]:
    return list(Event.objects.filter(contact__email=email).order_by("occurred_at", "id"))


# --- auth -----------------------------------------------------------------------------------------
def test_batch_with_basic_auth_is_taken_in(server):
    # given a server source and a batch: identify, then a product view by the same user
    source, key = server
    batch = [message("identify", userId="u1", traits={"email": "Anna@Example.com", "firstName": "Anna"}),
             message("track", userId="u1", event="Product Viewed", properties={"category": "kurtki", "name": "Parka"})]
    # when
    response = post("/v1/batch", {"batch": batch}, key=key)
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 2, "duplicates": 0}
    contact = Contact.objects.get(email="anna@example.com")
    assert contact.first_name == "Anna"
    [event] = _events("anna@example.com")
    assert event.type == "product_view"
    assert event.properties == {"category": "kurtki", "product_name": "Parka"}
    assert event.event_id == f"trk:{source.pk}:{batch[1]['messageId']}"
    assert Identity.objects.get(kind="user", value="u1").contact == contact


def test_write_key_in_the_body_authenticates(server):
    # given the key in the body instead of a header (analytics.js sends both)
    _, key = server
    body = {"writeKey": key, **message("track", userId="anna@example.com", event="Email Opened")}
    # when
    response = post("/v1/track", body)
    # then
    assert response.status_code == 200
    assert [event.type for event in _events("anna@example.com")] == ["email_open"]


@pytest.mark.parametrize("key", ["", "mhw_wrong", None])
def test_missing_or_unknown_key_is_401(key):
    # when a batch comes without a valid key
    response = post("/v1/batch", {"batch": [message(userId="a@example.com", event="x")]}, key=key)
    # then nothing is stored
    assert response.status_code == 401
    assert not EventReceipt.objects.exists()


def test_revoked_key_is_401(server):
    # given a revoked source
    source, key = server
    source_revoke(source)
    # when
    response = post("/v1/track", message(userId="a@example.com", event="x"), key=key)
    # then
    assert response.status_code == 401


def test_only_post_is_allowed(client):
    # when
    response = client.get("/v1/track")
    # then
    assert response.status_code == 405


# --- every endpoint -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_track_endpoint(server, path):
    _, key = server
    # when
    response = post(path, message(userId="anna@example.com", event="Product Added", properties={"price": 10}), key=key)
    # then
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert [(e.type, e.properties) for e in _events("anna@example.com")] == [("add_to_cart", {"price": 10})]


@pytest.mark.parametrize("path", ["/v1/page", "/v1/p", "/v1/screen", "/v1/s"])
def test_page_and_screen_become_page_views(server, path):
    _, key = server
    kind = "screen" if "s" in path.rsplit("/", 1)[1] else "page"
    # when the url is only in the context, as analytics.js sends it
    body = message(kind, userId="anna@example.com", name="Jackets",
                   context={"page": {"url": "https://shop.example/kurtki?page=2"}}, properties={"title": "Jackets"})
    response = post(path, body, key=key)
    # then
    assert response.status_code == 200
    [event] = _events("anna@example.com")
    assert event.type == "page_view"
    assert event.properties == {"url": "https://shop.example/kurtki?page=2", "title": "Jackets", "name": "Jackets"}


@pytest.mark.parametrize("path", ["/v1/identify", "/v1/i"])
def test_identify_upserts_the_contact_from_traits(server, path):
    _, key = server
    Contact.objects.create(email="ola@example.com", first_name="Old", properties={"vip": True})
    # when
    traits = {"email": "OLA@example.com", "first_name": "Ola", "lastName": "Nowak", "phone": "+48 600 100 200",
              "birthday": "1990-05-01T00:00:00.000Z", "address": {"city": "Kraków", "country": "PL", "street": "Długa 1"},
              "plan": "gold"}
    response = post(path, message("identify", userId="42", anonymousId="anon-1", traits=traits), key=key)
    # then
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    contact = Contact.objects.get(email="ola@example.com")
    assert (contact.first_name, contact.last_name, contact.phone, contact.city, contact.country) == (
        "Ola", "Nowak", "+48 600 100 200", "Kraków", "PL")
    assert contact.birth_date.isoformat() == "1990-05-01"
    assert contact.properties == {"vip": True, "plan": "gold", "address": traits["address"]}
    assert set(Identity.objects.filter(contact=contact).values_list("kind", "value")) == {("user", "42"), ("anonymous", "anon-1")}


@pytest.mark.parametrize("path", ["/v1/alias", "/v1/a"])
def test_alias_links_the_previous_id(server, path):
    _, key = server
    post("/v1/identify", message("identify", userId="u-new", traits={"email": "ala@example.com"}), key=key)
    # when the old id is aliased to the known one, a later message under the old id reaches the contact
    response = post(path, message("alias", userId="u-new", previousId="anon-old"), key=key)
    post("/v1/track", message(anonymousId="anon-old", event="Form Submitted"), key=key)
    # then
    assert response.json()["accepted"] == 1
    assert [event.type for event in _events("ala@example.com")] == ["form_submit"]


@pytest.mark.parametrize("path", ["/v1/group", "/v1/g"])
def test_group_is_stored_on_the_contact(server, path):
    _, key = server
    post("/v1/identify", message("identify", userId="u7", traits={"email": "firm@example.com"}), key=key)
    # when
    response = post(path, message("group", userId="u7", groupId="acme", traits={"name": "Acme", "employees": 40}), key=key)
    # then
    assert response.json()["accepted"] == 1
    properties = Contact.objects.get(email="firm@example.com").properties
    assert properties["group_id"] == "acme"
    assert properties["group_traits"] == {"name": "Acme", "employees": 40}


def test_unknown_endpoint_is_404(server):
    # given
    _, key = server
    # when
    # then
    assert post("/v1/bogus", message(userId="a@example.com", event="x"), key=key).status_code == 404


# --- mapping --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("properties", "value"),
    [
        ({"revenue": 120.5, "total": 130}, Decimal("120.50")),
        ({"total": "130"}, Decimal("130.00")),
        ({"products": [{"price": 10, "quantity": 3}, {"price": 2.5}]}, Decimal("32.50")),
    ],
)
def test_order_completed_is_a_purchase_with_a_value(server, properties, value):
    _, key = server
    # when
    post("/v1/track", message(userId="buyer@example.com", event="Order Completed", properties=properties), key=key)
    # then
    [event] = _events("buyer@example.com")
    assert event.type == "purchase"
    assert event.value == value


@pytest.mark.parametrize(
    ("name", "event_type"),
    [("Product Viewed", "product_view"), ("Product Added", "add_to_cart"), ("Email Opened", "email_open"),
     ("Email Link Clicked", "email_click"), ("Form Submitted", "form_submit"),
     ("Newsletter Subscribed", "newsletter_signup"), ("Signed Up", "newsletter_signup")],
)
def test_ecommerce_names_map_to_event_types(server, name, event_type):
    # given
    _, key = server
    # when
    post("/v1/track", message(userId="m@example.com", event=name, properties={"brand": "X", "currency": "PLN"}), key=key)
    [event] = _events("m@example.com")
    # then
    assert event.type == event_type
    assert event.properties == {"brand": "X", "currency": "PLN"}


def test_other_track_names_are_custom_events_named_by_the_event(server):
    # given
    _, key = server
    # when
    post("/v1/track", message(userId="m@example.com", event="Coupon Applied", properties={"name": "SALE10"}), key=key)
    [event] = _events("m@example.com")
    # then
    assert (event.type, event.properties) == ("custom", {"name": "Coupon Applied", "product_name": "SALE10"})


def test_clock_skew_is_corrected_with_sent_at(server):
    _, key = server
    # given a client whose clock is one hour fast
    now = datetime.now(UTC)
    skew = timedelta(hours=1)
    happened = now - timedelta(minutes=10)
    body = {"batch": [message(userId="m@example.com", event="x", timestamp=iso(happened + skew))], "sentAt": iso(now + skew)}
    # when
    post("/v1/batch", body, key=key)
    # then the event is placed at the real time (within the request's own duration)
    [event] = _events("m@example.com")
    assert abs((event.occurred_at - happened).total_seconds()) < 5


def test_missing_timestamp_means_now(server):
    # given
    _, key = server
    body = message(userId="m@example.com", event="x")
    del body["timestamp"]
    # when
    post("/v1/track", body, key=key)
    [event] = _events("m@example.com")
    # then
    assert abs((event.occurred_at - datetime.now(UTC)).total_seconds()) < 5


# --- errors, all-or-nothing, limits ---------------------------------------------------------------
def test_one_invalid_message_stores_nothing_and_names_it(server):
    _, key = server
    batch = [message(userId="ok@example.com", event="x"),
             message("identify", userId="u1", traits={"email": "ok2@example.com"}),
             {"type": "track", "event": "x", "userId": "u2"},
             message("track", event="x")]
    # when
    response = post("/v1/batch", {"batch": batch}, key=key)
    # then
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"index": 2, "field": "messageId", "message": errors[0]["message"]} in errors
    assert any(e["index"] == 3 and e["field"] == "userId" for e in errors)
    assert not EventReceipt.objects.exists()
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"type": "launch"}, "type"), ({"timestamp": "yesterday"}, "timestamp"), ({"properties": [1]}, "properties"),
     ({"event": ""}, "event"), ({"properties": {"revenue": "lots"}, "event": "Order Completed"}, "properties.revenue"),
     ({"timestamp": iso(datetime.now(UTC) + timedelta(hours=2))}, "timestamp"),
     ({"messageId": "id\x01"}, "messageId"), ({"properties": {"note": "bell\x07"}}, "properties")],
)
def test_invalid_fields_are_400_with_the_field(server, fields, field):
    # given
    _, key = server
    body = {"batch": [message(userId="m@example.com", **{"event": "x", **fields})]}
    # when
    response = post("/v1/batch", body, key=key)
    # then
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert response.json()["errors"][0]["index"] == 0


def test_a_message_problem_and_an_event_problem_are_answered_together(server):
    # given a batch whose first message has no messageId and whose second is an event from the future
    _, key = server
    body = {"batch": [message(userId="m@example.com", event="x", messageId=""),
                      message(userId="m@example.com", event="x", timestamp=iso(datetime.now(UTC) + timedelta(hours=2)))]}
    # when
    response = post("/v1/batch", body, key=key)
    # then both are named in one answer, and nothing is stored
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "messageId"), (1, "timestamp")]
    assert not EventReceipt.objects.exists()


def test_single_endpoint_errors_have_no_index(server):
    # given
    _, key = server
    # when
    response = post("/v1/identify", message("identify", userId="u", traits={"email": "not-an-email"}), key=key)
    # then
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "traits.email", "message": response.json()["errors"][0]["message"]}]}


def test_body_that_is_not_json_is_400(server):
    # given
    _, key = server
    # when
    response = post("/v1/batch", "{not json", key=key)
    # then
    assert response.status_code == 400


def test_request_above_500_kb_is_413(server):
    # given
    _, key = server
    batch = [message(userId="m@example.com", event="x", properties={"pad": "y" * 20_000}) for _ in range(30)]
    body = json.dumps({"batch": batch})
    assert len(body) > MAX_REQUEST_BYTES
    # when
    response = post("/v1/batch", body, key=key)
    # then
    assert response.status_code == 413
    assert not EventReceipt.objects.exists()


def test_message_above_32_kb_is_413(server):
    # given
    _, key = server
    big = message(userId="m@example.com", event="x", properties={"pad": "y" * MAX_MESSAGE_BYTES})
    # when
    response = post("/v1/batch", {"batch": [message(userId="m@example.com", event="x"), big]}, key=key)
    # then
    assert response.status_code == 413
    assert not EventReceipt.objects.exists()


def test_gzip_body_is_accepted(server):
    # given
    _, key = server
    body = gzip.compress(json.dumps({"batch": [message(userId="m@example.com", event="x")]}).encode())
    # when
    response = post("/v1/batch", body, key=key, HTTP_CONTENT_ENCODING="gzip")
    # then
    assert response.json()["accepted"] == 1


def test_rate_limit_per_source_answers_429(server, settings):
    # given
    _, key = server
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 2
    cache.clear()
    # when
    codes = [post("/v1/track", message(userId="m@example.com", event="x"), key=key).status_code for _ in range(3)]
    cache.clear()
    # then
    assert codes == [200, 200, 429]


# --- idempotency ----------------------------------------------------------------------------------
def test_same_batch_twice_counts_duplicates_and_changes_nothing(server):
    _, key = server
    batch = [message("identify", userId="u1", traits={"email": "d@example.com"}),
             message(userId="u1", event="Product Viewed", properties={"category": "kurtki"}),
             message("page", userId="u1", properties={"url": "https://shop.example/"}),
             message("group", userId="u1", groupId="g1")]
    first = post("/v1/batch", {"batch": batch}, key=key)
    # when the client retries the same batch
    second = post("/v1/batch", {"batch": batch}, key=key)
    # then
    assert first.json() == {"success": True, "accepted": 4, "duplicates": 0}
    assert second.json() == {"success": True, "accepted": 0, "duplicates": 4}
    assert len(_events("d@example.com")) == 2


def test_a_repeat_inside_one_batch_is_a_duplicate(server):
    # given
    _, key = server
    repeated = message(userId="m@example.com", event="x")
    # when
    response = post("/v1/batch", {"batch": [repeated, repeated]}, key=key)
    # then
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 1}


def test_message_ids_are_per_source():
    # given two sources sending the same messageId (two different shops' libraries)
    _, key_a = server_source("A")
    _, key_b = server_source("B")
    body = message(userId="m@example.com", event="x", message_id="same-id")
    # when
    a = post("/v1/track", body, key=key_a).json()
    b = post("/v1/track", body, key=key_b).json()
    # then both are events
    assert (a["accepted"], b["accepted"]) == (1, 1)
    assert len(_events("m@example.com")) == 2


# --- visitors not yet identified ------------------------------------------------------------------
def test_anonymous_messages_build_a_profile_that_merges_into_the_contact_on_identify(server):
    _, key = server
    # given an anonymous visitor's views
    views = [message(anonymousId="anon-9", event="Product Viewed", properties={"category": "kurtki"}) for _ in range(3)]
    first = post("/v1/batch", {"batch": views}, key=key)
    # then they are the events of an anonymous profile, which is nobody's contact
    profile = Contact.all_objects.get(is_anonymous=True)
    assert Event.objects.filter(contact=profile).count() == 3
    assert not Contact.objects.exists()
    assert Identity.objects.get(kind="anonymous", value="anon-9").contact_id == profile.pk
    # when the visitor identifies with an existing contact's email
    Contact.objects.create(email="known@example.com")
    post("/v1/identify", message("identify", anonymousId="anon-9", userId="77", traits={"email": "known@example.com"}), key=key)
    # then the visitor's ids name the contact at once, and the merge waits for the worker
    assert set(Identity.objects.values_list("kind", "value", "contact__email")) == {
        ("anonymous", "anon-9", "known@example.com"), ("user", "77", "known@example.com")}
    assert list(ProfileMerge.objects.values_list("profile_id", "contact_id")) == [
        (profile.pk, Contact.objects.get(email="known@example.com").pk)]
    # when the worker merges
    assert merge_queued() == 1
    # then the views are the contact's events (and the merge's timeline entry), the profile is gone,
    # and a retry of the first batch is a duplicate
    assert first.json()["accepted"] == 3
    assert sorted(event.type for event in _events("known@example.com")) == ["product_view"] * 3 + ["visitor_merged"]
    assert not Contact.all_objects.filter(is_anonymous=True).exists()
    assert set(Identity.objects.values_list("kind", "value", "contact__email")) == {
        ("anonymous", "anon-9", "known@example.com"), ("user", "77", "known@example.com")}
    assert MessageLog.objects.get(message_type="identify").reason == "linked the visitor: its anonymous profile merges into the contact"
    assert not ProfileMerge.objects.exists()
    assert post("/v1/batch", {"batch": views}, key=key).json() == {"success": True, "accepted": 0, "duplicates": 3}


# --- consents and GDPR ----------------------------------------------------------------------------
def test_server_source_may_set_consents(server):
    # given
    _, key = server
    # when
    post("/v1/identify", message("identify", userId="u", traits={"email": "c@example.com", "consents": {"email": True}}), key=key)
    # then
    assert Consent.objects.get(contact__email="c@example.com", channel="email").granted is True


def test_browser_source_may_not_set_consents():
    # given
    _, key = browser_source()
    # when
    response = post("/v1/identify", message("identify", userId="u", traits={"email": "c@example.com", "consents": {"email": True}}),
                    key=key, HTTP_ORIGIN=SHOP_ORIGIN)
    # then
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "traits.consents"
    assert not Contact.objects.exists()


def test_erased_email_is_not_recreated_by_identify(server):
    # given
    _, key = server
    Suppression.objects.create(email_hash=email_hash("gone@example.com"))
    # when
    response = post("/v1/batch", {"batch": [
        message("identify", userId="g", traits={"email": "gone@example.com"}),
        message(userId="g", event="Product Viewed"),
    ]}, key=key)
    # then
    assert response.status_code == 200
    assert not Contact.objects.filter(email="gone@example.com").exists()
    assert not Event.objects.exists()


# --- browser sources and CORS ---------------------------------------------------------------------
def test_browser_source_from_an_allowed_origin_gets_cors_headers():
    # given
    _, key = browser_source()
    # when
    response = post("/v1/t", message(anonymousId="a1", event="x"), key=key, HTTP_ORIGIN=SHOP_ORIGIN)
    # then
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP_ORIGIN


@pytest.mark.parametrize("origin", ["https://evil.example", None])
def test_browser_source_from_another_origin_is_refused(origin):
    # given
    _, key = browser_source()
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    # when
    response = post("/v1/t", message(userId="m@example.com", event="x"), key=key, **headers)
    # then
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response
    assert not EventReceipt.objects.exists()


@pytest.mark.parametrize(("origin", "allowed"), [(SHOP_ORIGIN, True), ("https://evil.example", False)])
def test_preflight_answers_only_allowed_origins(client, origin, allowed):
    # given
    browser_source()
    # when
    response = client.options("/v1/b", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                              HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type")
    # then
    assert response.status_code == 200
    assert (response.get("Access-Control-Allow-Origin") == origin) is allowed


def test_cors_stays_off_outside_v1(client):
    # given
    browser_source()
    # when
    response = client.options("/api/v1/", HTTP_ORIGIN=SHOP_ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    # then
    assert "Access-Control-Allow-Origin" not in response


def test_server_source_ignores_origin(server):
    # given
    _, key = server
    # when
    response = post("/v1/t", message(userId="m@example.com", event="x"), key=key, HTTP_ORIGIN="https://anywhere.example")
    # then
    assert response.status_code == 200
