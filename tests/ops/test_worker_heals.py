"""A prefork worker survives the SIGKILL of one of its pool processes (what the OOM killer does):
processing resumes by itself, without a restart, and every effect happens exactly once."""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest
from django.conf import settings
from django.db import connection, connections

from automation.models import EventReceipt, PendingEvent, RuleApplication
from contacts.models import Contact, TagScoreChange
from leads.models import ScoreChange
from tests.automation.factories import event, make_rule, tags_of
from tests.conftest import _test_database_url, wait_for
from tests.factories import ContactFactory, give_tag
from tests.ops.conftest import app_environment, celery_worker

EVENTS = 4000
CONTACTS = 40
POINTS = 5


def _pending() -> int:
    return PendingEvent.objects.count()


def _blocked_worker_process() -> int | None:
    """The pid of the pool process whose backend waits on a lock inside its batch transaction (pool
    processes name their sessions "<application_name>/<pid>")."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'mh-heal-worker/%%' AND wait_event_type = 'Lock' LIMIT 1"
        )
        row = cursor.fetchone()
    return int(row[0].rsplit("/", 1)[1]) if row else None


def _pool_process(worker_pid: int, pid: int) -> psutil.Process:
    for child in psutil.Process(worker_pid).children():
        if child.pid == pid:
            return child
    raise AssertionError(f"{pid} is not a pool process of {worker_pid}")


def _hold_tag_lock(email: str):
    """Another session locks the contact-tag row every batch of that contact upserts, so the pool
    process blocks inside its batch transaction (claimed rows, guard rows written)."""
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM contacts_contacttag ct JOIN contacts_contact c ON c.id = ct.contact_id "
            "WHERE c.email = %s FOR UPDATE OF ct",
            [email],
        )
    return blocker


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sigkill_of_one_pool_process_mid_batch_heals_without_restart(ingest_api):
    from marketing_hub.celery import app

    # given a rule worth a tag and points, a prefork worker with two pool processes, and a
    # contact-tag row locked so that a batch blocks mid-transaction
    rule = make_rule(event_type="purchase", actions=[{"type": "add_tag", "tag": "PURCHASE"}, {"type": "add_score", "points": POINTS}])
    give_tag(ContactFactory(email="h0@example.com"), "PURCHASE", 1)
    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = app_environment(_test_database_url() + "?application_name=mh-heal-worker", settings.CELERY_BROKER_URL)
    worker = celery_worker(env, queue, concurrency=2).start()
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    blocker = _hold_tag_lock("h0@example.com")
    try:
        worker.wait_for_log("ready.")
        for start in range(0, EVENTS, 1000):
            response = ingest_api.post("/api/v1/events", json={"events": [
                event(f"heal-{i}", email=f"h{i % CONTACTS}@example.com", type="purchase", category="kurtki", value=10)
                for i in range(start, start + 1000)
            ]})
            assert response.status_code == 202
        pid = wait_for(_blocked_worker_process, timeout=60, message="a pool process to block inside its batch")
        victim = _pool_process(worker.process.pid, pid)

        # when that pool process is SIGKILLed mid-batch (and the lock then goes away)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        blocker.rollback()
        blocker.close()
        blocker = None

        # then processing resumes by itself within 60 s, with the same worker
        wait_for(lambda: _pending() == 0, timeout=60, message="pending to reach 0 without a restart")
        healed_after = time.monotonic() - killed_at
        assert worker.process.poll() is None
        # (the dead process may stay a zombie a moment before the pool reaps and replaces it)
        def live_pool() -> set[int]:
            return {child.pid for child in psutil.Process(worker.process.pid).children()
                    if child.status() != psutil.STATUS_ZOMBIE}

        pool = wait_for(lambda: (lambda pids: pids if len(pids) == 2 else None)(live_pool()), timeout=30,
                        message="the pool to replace the killed process")
        assert victim.pid not in pool
        # and the worker still takes new work
        response = ingest_api.post("/api/v1/events", json={"events": [
            event("heal-after", email="h1@example.com", type="purchase", category="kurtki", value=10)]})
        assert response.status_code == 202
        wait_for(lambda: _pending() == 0, timeout=30, message="an event sent after the kill to be applied")
    finally:
        if blocker is not None:
            blocker.rollback()
            blocker.close()
        app.conf.task_default_queue = previous_queue
        worker.stop()
    print(f"\nprocessing resumed {healed_after:.1f} s after the SIGKILL")
    log = worker.log()
    assert "signal 9 (SIGKILL)" in log
    assert "Unrecoverable error" not in log

    # and every effect happened exactly once
    total = EVENTS + 1
    assert EventReceipt.objects.count() == total
    assert RuleApplication.objects.filter(rule=rule).count() == total
    assert TagScoreChange.objects.filter(source="rule").count() == total
    assert ScoreChange.objects.count() == total
    assert sum(tags_of(f"h{i}@example.com").get("PURCHASE", 0) for i in range(CONTACTS)) == total + 1
    assert sum(Contact.objects.values_list("score", flat=True)) == POINTS * total
