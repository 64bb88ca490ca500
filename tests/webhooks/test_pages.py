"""Settings → Webhooks in the browser's terms (server-rendered pages): create with the secret shown
once, the list's health line, the log's filters and pages, replay, switch off, delete, and what
marketers may see."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import Job
from tests.segments.factories import make_segment
from tests.webhooks.conftest import make_webhook
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db


def _delivery(webhook, status="succeeded", type="segment.entered", **fields):
    return Delivery.objects.create(webhook=webhook, message_id=f"msg_{Delivery.objects.count() + 1}", type=type,
                                   body=json.dumps({"type": type}), status=status, attempts=1,
                                   last_attempt_at=timezone.now(), **fields)


def test_create_shows_the_secret_once(admin_client, receiver):
    # given a segment to filter on
    segment = make_segment({"type": "has_tag", "tag": "vip"}, name="VIPs")
    # when an admin creates a webhook through the form
    response = admin_client.post(reverse("webhooks:new"), {
        "url": receiver.url_for("/hook"), "description": "Shop", "events": ["segment.entered", "segment.exited"],
        "segment_ids": [segment.pk], "active": "on",
    })
    # then the page shows the secret, and the webhook is stored with the filter
    webhook = Webhook.objects.get()
    assert response.status_code == 200
    assert webhook.secret in response.content.decode() and response["Cache-Control"] == "no-store"
    assert (webhook.name, webhook.events, webhook.segment_ids) == ("Shop", ["segment.entered", "segment.exited"], [segment.pk])
    # and no later page shows it again
    for url in (reverse("webhooks:list"), reverse("webhooks:detail", args=[webhook.pk]),
                reverse("webhooks:edit", args=[webhook.pk])):
        assert webhook.secret not in admin_client.get(url).content.decode()


def test_form_errors_name_the_field(admin_client, settings):
    # given loopback not allowed
    settings.MH_WEBHOOK_ALLOWED_NETS = []
    # when the form gets a loopback URL and no events
    response = admin_client.post(reverse("webhooks:new"), {"url": "http://127.0.0.1:9/x", "events": []})
    # then it re-renders (200) with the messages, and nothing is stored
    text = response.content.decode()
    assert response.status_code == 200 and not Webhook.objects.exists()
    assert "loopback" in text and "This field is required" in text


def test_list_shows_health_and_marketers_read_only(admin_client, marketer_client, receiver):
    # given a webhook with 3 calls in the last day, one of them failed
    webhook = make_webhook(receiver.url_for("/hook"), description="Shop")
    _delivery(webhook)
    _delivery(webhook)
    _delivery(webhook, status="failed", last_error="HTTP 500", last_status_code=500)
    # when an admin and a marketer open the list
    admin_page = admin_client.get(reverse("webhooks:list")).content.decode()
    marketer_page = marketer_client.get(reverse("webhooks:list")).content.decode()
    # then both see the health line, only the admin the buttons
    for page in (admin_page, marketer_page):
        assert "67% ok" in page and "of 3" in page and "HTTP 500" in page
    assert reverse("webhooks:new") in admin_page and reverse("webhooks:new") not in marketer_page
    assert reverse("webhooks:toggle", args=[webhook.pk]) not in marketer_page


def test_log_filters_and_pages_in_sql(admin_client, receiver, django_assert_max_num_queries):
    # given 30 succeeded and 3 failed deliveries
    webhook = make_webhook(receiver.url_for("/hook"))
    for _ in range(30):
        _delivery(webhook)
    failed = [_delivery(webhook, status="failed", type="consent.changed") for _ in range(3)]
    url = reverse("webhooks:detail", args=[webhook.pk])
    # when the log is filtered by status (an htmx request gets the fragment)
    response = admin_client.get(url, {"status": "failed"}, headers={"HX-Request": "true"})
    # then only the failed rows, in the fragment
    text = response.content.decode()
    assert text.count('data-status="failed"') == 3 and 'data-status="succeeded"' not in text
    assert "<html" not in text
    assert all(f'id="delivery-{d.pk}"' in text for d in failed)
    # when the first page of everything is read, it has 25 rows and a next page, in few queries
    with django_assert_max_num_queries(15):
        first = admin_client.get(url).content.decode()
    assert first.count("<tr id=\"delivery-") == 25 and "Page <strong>1</strong> of <strong>2</strong>" in first
    by_type = admin_client.get(url, {"type": "consent.changed"}).content.decode()
    assert by_type.count("<tr id=\"delivery-") == 3


def test_open_a_delivery_and_replay_it(admin_client, receiver):
    # given a failed delivery with its last attempt recorded
    webhook = make_webhook(receiver.url_for("/hook"))
    delivery = _delivery(webhook, status="failed", last_status_code=503, last_response_body="busy",
                         last_request_headers={"webhook-id": "msg_1"}, last_latency_ms=12)
    # when opened
    text = admin_client.get(reverse("webhooks:delivery", args=[delivery.pk]), headers={"HX-Request": "true"}).content.decode()
    # then the request headers and body, the response status and body, latency and attempts show
    for expected in ("webhook-id: msg_1", "segment.entered", "HTTP 503", "busy", "12 ms", "Attempts"):
        assert expected in text
    # when replayed
    response = admin_client.post(reverse("webhooks:replay", args=[delivery.pk]), headers={"HX-Request": "true"})
    # then it waits to be sent again, now, with the same id
    delivery.refresh_from_db()
    assert response.status_code == 200 and 'data-status="pending"' in response.content.decode()
    assert (delivery.status, delivery.attempts, delivery.message_id) == ("pending", 0, "msg_1")


def test_replay_all_failed_since_runs_as_a_job(admin_client, receiver):
    # given failed deliveries from 2 hours and from 3 days ago
    webhook = make_webhook(receiver.url_for("/hook"))
    recent = _delivery(webhook, status="failed")
    old = _delivery(webhook, status="failed")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    since = timezone.localtime(timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    # when an admin replays everything that failed since yesterday
    response = admin_client.post(reverse("webhooks:replay_failed", args=[webhook.pk]), {"since": since})
    job = Job.objects.get(kind="webhook_replay_failed")
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", kwargs={"job_id": job.pk})
    # and the job runs (the task's body)
    from webhooks.tasks import webhook_replay_failed_task

    webhook_replay_failed_task(job.pk)
    # then only the recent one is queued again
    job.refresh_from_db()
    assert job.status == "done" and job.result.get("replayed") == 1
    assert Delivery.objects.get(pk=recent.pk).status == "pending"
    assert Delivery.objects.get(pk=old.pk).status == "failed"


def test_switch_off_rotate_and_delete(admin_client, receiver):
    # given an active webhook with a waiting delivery
    webhook = make_webhook(receiver.url_for("/hook"))
    waiting = _delivery(webhook, status="pending")
    old_secret = webhook.secret
    # when switched off, then it is off and its waiting delivery failed (replayable)
    admin_client.post(reverse("webhooks:toggle", args=[webhook.pk]))
    webhook.refresh_from_db()
    assert webhook.active is False and webhook.disabled_reason == ""
    assert Delivery.objects.get(pk=waiting.pk).status == "failed"
    # when the secret is rotated, then the new one is shown once and the old still signs
    page = admin_client.post(reverse("webhooks:rotate", args=[webhook.pk])).content.decode()
    webhook.refresh_from_db()
    assert webhook.secret in page and webhook.secret != old_secret
    assert webhook.signing_secrets() == [webhook.secret, old_secret]
    # when deleted, then it is gone with its log
    admin_client.post(reverse("webhooks:delete", args=[webhook.pk]))
    assert not Webhook.objects.exists() and not Delivery.objects.exists()


def test_system_switch_off_is_shown_to_admins(admin_client, receiver):
    # given a webhook the system switched off
    webhook = make_webhook(receiver.url_for("/hook"), description="Shop")
    Webhook.objects.filter(pk=webhook.pk).update(active=False, disabled_reason="The receiver answered 410 Gone",
                                                 disabled_at=timezone.now())
    # when the admin opens the webhooks page and the dashboard
    page = admin_client.get(reverse("webhooks:list")).content.decode()
    dashboard = admin_client.get(reverse("dashboard")).content.decode()
    # then both warn
    assert "switched off by the system" in page and "410 Gone" in page
    assert "switched off" in dashboard and "Shop" in dashboard


def test_the_dashboard_gives_the_switch_off_reason_in_polish(admin_client, receiver):
    # given a webhook the system switched off, its reason stored in English
    webhook = make_webhook(receiver.url_for("/hook"), description="Shop")
    Webhook.objects.filter(pk=webhook.pk).update(active=False, disabled_reason="The receiver answered 410 Gone",
                                                 disabled_at=timezone.now())
    # when the admin opens the dashboard in Polish
    dashboard = admin_client.get(reverse("dashboard"), HTTP_ACCEPT_LANGUAGE="pl").content.decode()
    # then the reason is in Polish too
    assert "Odbiorca odpowiedział 410 Gone" in dashboard and "The receiver answered" not in dashboard


def test_the_log_keeps_refreshing_when_the_test_message_is_fanned_out_while_the_page_is_made(admin_client, receiver,
                                                                                          monkeypatch):
    # given a webhook and its test message waiting in the outbox
    from webhooks import views
    from webhooks.fanout import outbox_fanout
    from webhooks.services import webhook_send_test

    webhook = make_webhook(receiver.url_for("/hook"), description="Shop")
    webhook_send_test(webhook)
    # and the worker fans it out after the page has read its log but before it reads the health
    health = views.webhooks_health

    def fanned_out_meanwhile(ids):
        outbox_fanout()
        return health(ids)

    monkeypatch.setattr(views, "webhooks_health", fanned_out_meanwhile)
    # when the admin's page is made
    response = admin_client.get(reverse("webhooks:detail", args=[webhook.pk]))
    # then the call is not in the log yet, but the log refreshes itself until it is
    text = response.content.decode()
    assert Delivery.objects.filter(webhook=webhook, type="webhook.test", status="pending").exists()
    assert "No deliveries yet" in text
    assert 'hx-trigger="every 3s"' in text
