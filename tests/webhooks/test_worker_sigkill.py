"""A real worker SIGKILLed in the middle of the fan-out, and again in the middle of sending: after
restarts every message reaches the receiver at least once, with its one webhook-id, and nothing
is left pending."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from werkzeug import Response

from core.outbox import OutboxMessage
from tests.conftest import WorkerProcess, wait_for
from tests.factories import ContactFactory
from tests.webhooks.conftest import make_webhook
from webhooks.models import Delivery
from webhooks.tasks import webhooks_pump_task, webhooks_sweep_task

MESSAGES = 400


def _waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _beat_until(predicate, timeout: float, message: str):
    """What beat does every 2 s (the sweep), faster, until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        webhooks_sweep_task.delay()
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {message}")


@pytest.mark.integration
def test_sigkill_mid_fanout_and_mid_send_loses_nothing(celery_worker_process: WorkerProcess, receiver, monkeypatch):
    monkeypatch.setenv("MH_WEBHOOK_LEASE_SECONDS", "3")
    # given a receiver whose first call hangs until released, and MESSAGES outbox messages
    release = threading.Event()
    first = threading.Event()

    def answer(request):
        if not first.is_set():
            first.set()
            release.wait(30)
        return Response("ok", status=200)

    receiver.expect_request("/hook").respond_with_handler(answer)
    make_webhook(receiver.url_for("/hook"), events=["consent.changed"])
    contact = ContactFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_outboxmessage (type, contact_id, data) "
            "SELECT 'consent.changed', %s, jsonb_build_object('channel', 'c' || n, 'granted', true, 'source', 'test') "
            "FROM generate_series(1, %s) n",
            [contact.pk, MESSAGES],
        )
    # and another session that blocks the fan-out's insert of deliveries, in mid-statement
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("LOCK TABLE webhooks_delivery IN SHARE MODE")
    # when the worker starts the pump, blocks inside the fan-out's transaction and is killed there
    webhooks_pump_task.delay()
    wait_for(_waiting_on_lock, timeout=30, message="the fan-out to block")
    celery_worker_process.kill()
    blocker.rollback()
    blocker.close()
    # then the outbox is intact: nothing dispatched, no delivery
    assert OutboxMessage.objects.filter(dispatched_at__isnull=True).count() == MESSAGES
    assert not Delivery.objects.exists()
    # when restarted, it fans out and starts sending, and is killed while a call hangs
    celery_worker_process.start()
    webhooks_pump_task.delay()
    assert first.wait(30), "the receiver got no call"
    time.sleep(0.3)
    celery_worker_process.kill()
    release.set()
    leased = Delivery.objects.filter(status="pending").count()
    assert leased > 0
    # when restarted again (beat's sweep takes the deliveries whose lease ran out)
    celery_worker_process.start()
    _beat_until(lambda: not Delivery.objects.exclude(status="succeeded").exists(), 90, "every delivery to succeed")
    # then every message arrived at least once, each always under its one webhook-id, nothing waits
    assert not OutboxMessage.objects.filter(dispatched_at__isnull=True).exists()
    assert Delivery.objects.count() == MESSAGES
    ids = [request.headers["webhook-id"] for request, _ in receiver.log]
    assert set(ids) == set(Delivery.objects.values_list("message_id", flat=True))
    channels = {request.get_json()["data"]["channel"] for request, _ in receiver.log}
    assert len(channels) == MESSAGES
