"""/healthz/deep: the worker's heartbeat, the queue and the broker backlog; 503 when processing has
stalled longer than MH_STALL_SECONDS; admins see "Processing stalled since …" on the dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from automation.models import PendingEvent
from core.health import WorkerHeartbeat, heartbeat_record, processing_status
from tests.automation.factories import event
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def _pending_events(ingest_api: ApiClient, count: int, prefix: str = "h") -> None:
    response = ingest_api.post("/api/v1/events", json={"events": [
        event(f"{prefix}-{i}", email=f"{prefix}{i}@example.com", type="purchase") for i in range(count)]})
    assert response.status_code == 202


def _age(seconds: float) -> None:
    """Move the heartbeat and the queue ``seconds`` into the past."""
    shift = timedelta(seconds=seconds)
    beat = WorkerHeartbeat.objects.get()
    WorkerHeartbeat.objects.filter(pk=beat.pk).update(beat_at=beat.beat_at - shift, head_since=beat.head_since - shift)
    for pending in PendingEvent.objects.all():
        PendingEvent.objects.filter(pk=pending.pk).update(received_at=pending.received_at - shift)


def test_deep_health_reports_heartbeat_queue_and_backlog_when_all_runs(settings):
    # given a fresh heartbeat and nothing pending
    settings.MH_STALL_SECONDS = 120
    heartbeat_record(hostname="worker-1")
    # when the probe is read
    response = Client().get("/healthz/deep")
    # then 200 with every figure an operator needs
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok" and body["database"] == "ok" and body["broker"] == "ok"
    assert 0 <= body["worker"]["heartbeat_age_seconds"] < body["stall_threshold_seconds"]
    assert body["processing"] == {"pending": 0, "oldest_pending_age_seconds": None, "stalled_since": None,
                                  "stall_reason": None}
    assert body["broker_backlog"] >= 0
    assert body["stall_threshold_seconds"] == 120


def test_a_heartbeat_older_than_the_threshold_is_a_stall(settings):
    # given the worker's last heartbeat 3 minutes ago (threshold 2)
    settings.MH_STALL_SECONDS = 120
    heartbeat_record()
    _age(180)
    # when the probe is read
    response = Client().get("/healthz/deep")
    # then 503, stalled since that heartbeat
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "stalled"
    assert body["processing"]["stall_reason"] == "no worker heartbeat"
    assert body["processing"]["stalled_since"] == WorkerHeartbeat.objects.get().beat_at.isoformat()


def test_pending_events_whose_head_does_not_move_are_a_stall(settings, ingest_api):
    # given events waiting, seen by the heartbeat as the queue's head 3 minutes ago …
    settings.MH_STALL_SECONDS = 120
    _pending_events(ingest_api, 3)
    heartbeat_record()
    _age(180)
    # … and the heartbeat still beating (the worker is alive but applies nothing)
    heartbeat_record()
    # when the probe is read
    response = Client().get("/healthz/deep")
    # then 503, stalled since the head was first seen
    body = response.json()
    assert response.status_code == 503
    assert body["processing"]["pending"] == 3
    assert body["processing"]["stall_reason"] == "pending events are not being applied"
    assert body["processing"]["oldest_pending_age_seconds"] >= 180
    assert body["processing"]["stalled_since"] == WorkerHeartbeat.objects.get().head_since.isoformat()


def test_an_old_backlog_that_is_being_worked_through_is_not_a_stall(settings, ingest_api):
    # given a backlog whose events arrived 3 minutes ago
    settings.MH_STALL_SECONDS = 120
    _pending_events(ingest_api, 3)
    heartbeat_record()
    _age(180)
    # when the engine applies the oldest one and the heartbeat sees the new head
    PendingEvent.objects.order_by("received_at", "event_pk").first().delete()
    heartbeat_record()
    status = processing_status()
    # then it is not a stall, although the events are old
    assert status.pending == 2
    assert timezone.now() - status.oldest_pending_at > timedelta(seconds=120)
    assert not status.stalled
    assert Client().get("/healthz/deep").status_code == 200


def test_events_never_seen_by_any_worker_are_a_stall_after_the_threshold(settings, ingest_api):
    # given no heartbeat ever (no worker started) and events waiting for 3 minutes
    settings.MH_STALL_SECONDS = 120
    _pending_events(ingest_api, 2)
    PendingEvent.objects.update(received_at=timezone.now() - timedelta(seconds=180))
    # when the probe is read, then it is a stall since the oldest arrived
    response = Client().get("/healthz/deep")
    assert response.status_code == 503
    assert response.json()["worker"]["last_heartbeat"] is None


def test_the_dashboard_tells_admins_since_when_processing_stalled(settings, admin_client, marketer_client):
    # given a stalled worker
    settings.MH_STALL_SECONDS = 120
    heartbeat_record()
    _age(600)
    # when admins and marketers open the dashboard
    admin_page = admin_client.get("/").content.decode()
    marketer_page = marketer_client.get("/").content.decode()
    # then only the admins see the warning
    assert "Processing stalled since" in admin_page
    assert 'href="/healthz/deep"' in admin_page
    assert "Processing stalled since" not in marketer_page


def test_the_dashboard_says_nothing_while_processing_runs(admin_client):
    heartbeat_record()
    assert "Processing stalled since" not in admin_client.get("/").content.decode()
