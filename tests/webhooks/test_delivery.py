"""Delivery to a real receiver on loopback: bodies and Standard Webhooks signatures, the retry
schedule, Retry-After, 410, failing for good and replay, rotation, the SSRF guard, filters."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as StandardWebhook
from werkzeug import Response

from contacts.services import consents_record, contact_erase
from core.outbox import OutboxMessage
from leads.funnels import stages_set
from leads.models import TemperatureSettings
from segments.services import segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import funnel_with_stages, give_points
from tests.loyalty.factories import make_program
from tests.segments.factories import make_segment
from tests.webhooks.conftest import make_webhook, pump_until, received
from webhooks.delivery import deliveries_send_round
from webhooks.fanout import outbox_fanout
from webhooks.models import Delivery, Webhook
from webhooks.services import (
    WebhookError,
    delivery_replay,
    validate_webhook,
    webhook_rotate_secret,
    webhook_send_test,
)

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


def verify(secret: str, request) -> dict:
    """What a receiver using the standardwebhooks package does; raises on a bad signature."""
    return StandardWebhook(secret).verify(request.get_data(as_text=True), dict(request.headers))


def done(*statuses):
    def predicate():
        """every delivery finished"""
        return Delivery.objects.exists() and not Delivery.objects.exclude(status__in=statuses).exists()

    return predicate


def test_every_event_type_arrives_signed(receiver):
    # given a webhook subscribed to everything and one change of every kind
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    webhook = make_webhook(receiver.url_for("/hook"))
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    contact = ContactFactory(email="ewa@example.com", first_name="Ewa", last_name="Nowak")
    give_tag(contact, "kurtki", 5)
    give_tag(contact, "PURCHASE", 7)
    segment = make_segment(KURTKI_3, name="Jackets")
    segment_refresh(segment.pk)  # segment.entered
    give_points(contact, 120)  # lead.temperature_changed cold → hot
    program = make_program("Club")  # loyalty.tier_changed
    funnel_with_stages("Sales")
    with connection.cursor() as cursor:
        stages_set(cursor, contact_ids=[contact.pk], funnel_names=["Sales"], stage_names=["MQL"], cause="manual")
        consents_record(cursor, contact_ids=[contact.pk], channels=["email"], granted=[True], source="form")
    from contacts.models import ContactTag

    ContactTag.objects.filter(contact=contact, tag__key="kurtki").delete()
    segment_refresh(segment.pk)  # segment.exited
    webhook_send_test(webhook)
    gone = ContactFactory(email="Gone@Example.com")
    contact_erase(gone)  # contact.erased
    # when the pump runs
    pump_until(done("succeeded"))
    # then every message verifies with the secret, and says what the contract says
    bodies = {}
    for request, _ in received(receiver):
        payload = verify(webhook.secret, request)
        assert request.headers["webhook-id"].startswith("msg_")
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["content-type"] == "application/json"
        bodies[payload["type"]] = payload
    assert set(bodies) == {"segment.entered", "segment.exited", "lead.temperature_changed", "loyalty.tier_changed",
                           "funnel.stage_changed", "consent.changed", "contact.erased", "webhook.test"}
    snapshot = {"email": "ewa@example.com", "first_name": "Ewa", "last_name": "Nowak", "score": 120,
                "temperature": "hot"}
    entered = bodies["segment.entered"]["data"]
    assert entered["segment"] == {"id": segment.pk, "name": "Jackets"} and entered["contact"] == snapshot
    assert bodies["lead.temperature_changed"]["data"] | {"sequence": 0} == {
        "contact": snapshot, "from": "cold", "to": "hot", "score": 120, "sequence": 0}
    assert bodies["loyalty.tier_changed"]["data"]["program"] == {"id": program.pk, "name": "Club"}
    assert (bodies["loyalty.tier_changed"]["data"]["from"], bodies["loyalty.tier_changed"]["data"]["to"]) == (None, "Silver")
    assert bodies["funnel.stage_changed"]["data"]["funnel"]["name"] == "Sales"
    assert bodies["funnel.stage_changed"]["data"]["to"] == "MQL"
    assert {k: bodies["consent.changed"]["data"][k] for k in ("channel", "granted", "source")} == {
        "channel": "email", "granted": True, "source": "form"}
    assert bodies["webhook.test"]["data"] == {}
    assert bodies["segment.entered"]["timestamp"].endswith("Z")
    # the contact's messages carry an increasing sequence
    sequences = [bodies[kind]["data"]["sequence"] for kind in ("segment.entered", "lead.temperature_changed",
                                                               "funnel.stage_changed", "segment.exited")]
    assert sequences == sorted(sequences)


def test_erasure_sends_the_hash_and_nothing_personal(receiver):
    # given a subscribed webhook and a contact
    receiver.expect_request("/hook").respond_with_data("ok")
    webhook = make_webhook(receiver.url_for("/hook"), events=["contact.erased"])
    contact = ContactFactory(email="Private.Person@example.com", first_name="Prywatna")
    # when the contact is erased and the pump runs
    contact_erase(contact)
    pump_until(done("succeeded"))
    # then the receiver gets the hash of the lower-case email, and no name or email
    ((request, body),) = received(receiver)
    verify(webhook.secret, request)
    assert body["type"] == "contact.erased"
    assert set(body["data"]) == {"email_sha256", "sequence"}
    assert body["data"]["email_sha256"] == hashlib.sha256(b"private.person@example.com").hexdigest()
    text = request.get_data(as_text=True).lower()
    assert "private.person" not in text and "prywatna" not in text


def test_erasure_removes_the_contacts_stored_and_waiting_calls(receiver):
    # given a contact with a delivered call in the log and a change not yet fanned out
    receiver.expect_request("/hook").respond_with_data("ok")
    make_webhook(receiver.url_for("/hook"))
    contact = ContactFactory(email="leaving@example.com")
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=["email"], granted=[True], source="api")
    pump_until(done("succeeded"))
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=["sms"], granted=[True], source="api")
    # when the contact is erased and the pump runs
    contact_erase(contact)
    pump_until(lambda: Delivery.objects.filter(type="contact.erased", status="succeeded").exists())
    # then the log keeps nothing with the email, and only contact.erased went out after the first call
    assert not Delivery.objects.filter(body__contains="leaving@example.com").exists()
    assert [body["type"] for _, body in received(receiver)] == ["consent.changed", "contact.erased"]


def test_segment_refresh_moving_n_contacts_sends_n_messages(receiver):
    # given N contacts that match a new segment and a webhook on segment.entered
    n = 120
    receiver.expect_request("/hook").respond_with_data("ok")
    make_webhook(receiver.url_for("/hook"), events=["segment.entered"])
    contacts = [ContactFactory() for _ in range(n)]
    for contact in contacts:
        give_tag(contact, "kurtki", 4)
    segment = make_segment(KURTKI_3)
    # when the segment refreshes and the pump runs
    segment_refresh(segment.pk)
    assert OutboxMessage.objects.filter(type="segment.entered", segment_id=segment.pk).count() == n
    pump_until(done("succeeded"))
    # then N segment.entered, one per contact
    emails = [body["data"]["contact"]["email"] for _, body in received(receiver)]
    assert sorted(emails) == sorted(c.email for c in contacts)


def test_500_500_200_is_one_message_three_attempts(receiver, short_retries):
    # given a receiver that fails twice, then succeeds
    answers = iter([500, 500, 200])
    receiver.expect_request("/flaky").respond_with_handler(lambda request: Response("x", status=next(answers)))
    webhook = make_webhook(receiver.url_for("/flaky"))
    webhook_send_test(webhook)
    # when the pump runs until it is delivered
    pump_until(done("succeeded"))
    # then the same webhook-id three times, and one delivery that succeeded with 3 attempts
    ids = [request.headers["webhook-id"] for request, _ in received(receiver)]
    assert len(ids) == 3 and len(set(ids)) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert delivery.message_id == ids[0]


def test_429_with_retry_after_waits_at_least_that_long(receiver, short_retries):
    # given a receiver that answers 429 with Retry-After: 2 once (the schedule says 0.2 s)
    answers = iter([Response("slow down", status=429, headers={"Retry-After": "2"}), Response("ok", status=200)])
    receiver.expect_request("/busy").respond_with_handler(lambda request: next(answers))
    webhook = make_webhook(receiver.url_for("/busy"))
    webhook_send_test(webhook)
    # when the pump runs until it is delivered
    started = time.monotonic()
    pump_until(done("succeeded"))
    # then the second attempt came at least 2 s after the first
    assert time.monotonic() - started >= 2.0
    delivery = Delivery.objects.get()
    assert delivery.attempts == 2
    assert delivery.delivered_at - delivery.created_at >= timedelta(seconds=2)


def test_410_switches_the_webhook_off(receiver, short_retries):
    # given a receiver that says Gone, and two messages for it
    receiver.expect_request("/gone").respond_with_data("gone", status=410)
    webhook = make_webhook(receiver.url_for("/gone"), events=["consent.changed"])
    contact = ContactFactory()
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=["email"], granted=[True], source="api")
    # when the pump runs
    pump_until(done("failed"))
    # then the webhook is off with the reason, and its delivery failed (replayable)
    webhook.refresh_from_db()
    assert webhook.active is False and "410" in webhook.disabled_reason
    assert Delivery.objects.get().status == "failed"
    # and later messages are not fanned out to it
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=["email"], granted=[False], source="api")
    outbox_fanout()
    assert Delivery.objects.count() == 1


def test_down_for_the_whole_schedule_ends_failed_and_replay_delivers(receiver, short_retries):
    # given a receiver that is down (503, no Retry-After) until told otherwise
    state = {"up": False}
    receiver.expect_request("/down").respond_with_handler(
        lambda request: Response("ok" if state["up"] else "down", status=200 if state["up"] else 503))
    webhook = make_webhook(receiver.url_for("/down"))
    webhook_send_test(webhook)
    # when the whole schedule runs out
    pump_until(done("failed"))
    # then the delivery failed after the first attempt and every retry of the schedule
    delivery = Delivery.objects.get()
    assert delivery.attempts == 1 + len(short_retries)
    assert delivery.last_status_code == 503 and delivery.next_attempt_at is None
    # when the receiver is back and the delivery is replayed
    state["up"] = True
    delivery_replay(delivery)
    pump_until(done("succeeded"))
    # then it arrived with the same webhook-id as every earlier attempt
    ids = {request.headers["webhook-id"] for request, _ in received(receiver)}
    assert ids == {delivery.message_id}
    assert len(received(receiver)) == 2 + len(short_retries)


def test_a_failing_streak_of_five_days_switches_the_webhook_off(receiver, short_retries):
    # given a webhook whose deliveries have all failed since 6 days ago
    receiver.expect_request("/dead").respond_with_data("no", status=500)
    webhook = make_webhook(receiver.url_for("/dead"))
    Webhook.objects.filter(pk=webhook.pk).update(failing_since=timezone.now() - timedelta(days=6))
    webhook_send_test(webhook)
    # when one more attempt fails
    outbox_fanout()
    deliveries_send_round()
    # then the system switched it off and says why
    webhook.refresh_from_db()
    assert webhook.active is False and "5 days" in webhook.disabled_reason


def test_rotation_signs_with_both_secrets_for_a_day(receiver):
    # given a webhook whose secret was rotated
    receiver.expect_request("/rot").respond_with_data("ok")
    webhook = make_webhook(receiver.url_for("/rot"))
    old_secret = webhook.secret
    new_secret = webhook_rotate_secret(webhook)
    assert new_secret != old_secret
    webhook_send_test(webhook)
    # when it is delivered
    pump_until(done("succeeded"))
    # then two signatures, and a receiver on either secret accepts it
    ((request, _),) = received(receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(old_secret, request)
    verify(new_secret, request)
    # and after 24 hours only the new secret signs
    Webhook.objects.filter(pk=webhook.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    receiver.clear_log()
    webhook_send_test(webhook)
    pump_until(lambda: len(receiver.log) == 1)
    (request, _), = received(receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verify(new_secret, request)
    with pytest.raises(Exception, match="[Ss]ignature"):
        verify(old_secret, request)


def test_loopback_is_refused_unless_allowed(receiver, settings):
    # given no allowed networks
    settings.MH_WEBHOOK_ALLOWED_NETS = []
    url = receiver.url_for("/hook")
    # when a webhook on 127.0.0.1 is created, then it is refused with a reason
    with pytest.raises(WebhookError) as refused:
        validate_webhook({"url": url, "events": ["segment.entered"]})
    assert "loopback" in str(refused.value)
    for bad in ("ftp://example.com/x", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/", "http://[::1]/"):
        with pytest.raises(WebhookError):
            validate_webhook({"url": bad, "events": ["segment.entered"]})
    # when it was allowed at creation but is not any more at send time
    settings.MH_WEBHOOK_ALLOWED_NETS = ["127.0.0.0/8"]
    webhook = make_webhook(url)
    settings.MH_WEBHOOK_ALLOWED_NETS = []
    webhook_send_test(webhook)
    outbox_fanout()
    deliveries_send_round()
    # then nothing was sent and the delivery says why
    assert receiver.log == []
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.last_error.startswith("Refused")


def test_redirects_are_not_followed_and_bodies_are_capped(receiver):
    # given a receiver that redirects, and one that answers a 100 KB body
    receiver.expect_request("/redirect").respond_with_data("", status=302, headers={"Location": "http://10.0.0.1/"})
    receiver.expect_request("/big").respond_with_data("x" * 100_000)
    redirecting = make_webhook(receiver.url_for("/redirect"))
    big = make_webhook(receiver.url_for("/big"))
    webhook_send_test(redirecting)
    webhook_send_test(big)
    # when sent
    outbox_fanout()
    deliveries_send_round()
    # then the redirect is a failure (not followed) and the big body is stored truncated
    redirected = Delivery.objects.get(webhook=redirecting)
    assert redirected.status == "pending" and redirected.last_status_code == 302
    assert "redirect" in redirected.last_error
    assert len(receiver.log) == 2
    stored = Delivery.objects.get(webhook=big)
    assert stored.status == "succeeded" and len(stored.last_response_body) == 4096


def test_filters_limit_segment_programme_and_funnel_messages(receiver):
    # given two segments and a webhook filtered to the first
    receiver.expect_request("/hook").respond_with_data("ok")
    first = make_segment(KURTKI_3, name="First")
    second = make_segment(KURTKI_3, name="Second")
    make_webhook(receiver.url_for("/hook"), events=["segment.entered"], filter={"segment_ids": [first.pk]})
    give_tag(ContactFactory(), "kurtki", 5)
    # when both refresh
    segment_refresh(first.pk)
    segment_refresh(second.pk)
    pump_until(done("succeeded"))
    # then only the first segment's message arrives
    assert [body["data"]["segment"]["name"] for _, body in received(receiver)] == ["First"]


def test_an_inactive_webhook_gets_nothing_but_tests(receiver):
    # given a webhook switched off
    receiver.expect_request("/off").respond_with_data("ok")
    webhook = make_webhook(receiver.url_for("/off"), active=False)
    contact = ContactFactory()
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=["sms"], granted=[True], source="api")
    webhook_send_test(webhook)
    # when the pump runs
    pump_until(done("succeeded"))
    # then only the test arrived
    assert [body["type"] for _, body in received(receiver)] == ["webhook.test"]
