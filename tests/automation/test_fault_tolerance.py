"""A real worker is SIGKILLed in the middle of a batch (and the broker loses its messages); after a
restart every effect has happened exactly once."""

from __future__ import annotations

import time

import pytest
from django.db import connection, connections

from automation.models import EventReceipt, PendingEvent, RuleApplication
from automation.tasks import events_sweep_task
from contacts.models import TagScoreChange
from leads.models import ScoreChange
from tests.automation.factories import event, make_rule, tags_of
from tests.conftest import wait_for
from tests.factories import ContactFactory, give_tag

EVENTS = 3000
CONTACTS = 30


def _status() -> dict:
    from automation.engine import events_status

    return events_status()


def _waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _ingest(ingest_api, prefix: str) -> None:
    for start in range(0, EVENTS, 1000):
        response = ingest_api.post("/api/v1/events", json={"events": [
            event(f"{prefix}-{i}", email=f"f{i % CONTACTS}@example.com", type="purchase", category="kurtki", value=10)
            for i in range(start, start + 1000)
        ]})
        assert response.status_code == 202


def _assert_exactly_once(rules) -> None:
    assert _status()["pending"] == 0
    assert EventReceipt.objects.count() == EVENTS
    assert not PendingEvent.objects.exists()
    for rule in rules:
        assert RuleApplication.objects.filter(rule=rule).count() == EVENTS
    # every event added PURCHASE +1 and 5 points, once
    total_purchase = sum(tags_of(f"f{i}@example.com").get("PURCHASE", 0) for i in range(CONTACTS))
    assert total_purchase == EVENTS + 1  # +1: the tag the test gave f0 up front
    assert TagScoreChange.objects.filter(source="rule").count() == EVENTS
    assert ScoreChange.objects.count() == EVENTS
    from contacts.models import Contact

    assert sum(Contact.objects.values_list("score", flat=True)) == 5 * EVENTS


def _partition_receipts(email: str) -> tuple[int, int]:
    """(pending, all) receipts of the engine partition that ``email``'s contact belongs to."""
    from automation.engine import engine_partitions

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (SELECT count(*) FROM automation_pendingevent q
                    WHERE NOT q.failed AND mod(q.contact_id, %s) = c.partition),
                   (SELECT count(*) FROM automation_eventreceipt r WHERE mod(r.contact_id, %s) = c.partition)
            FROM (SELECT mod(id, %s) AS partition FROM contacts_contact WHERE email = %s) c
            """,
            [engine_partitions(), engine_partitions(), engine_partitions(), email],
        )
        return cursor.fetchone()


def _hold_tag_lock(email: str):
    """Another session locks the contact-tag row every batch will upsert, so the worker blocks
    inside its batch transaction (after claiming receipts and writing guard rows)."""
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(
            """
            SELECT 1 FROM contacts_contacttag ct JOIN contacts_contact c ON c.id = ct.contact_id
            WHERE c.email = %s FOR UPDATE OF ct
            """,
            [email],
        )
    return blocker


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_batch_then_restart_applies_everything_once(celery_worker_process, ingest_api):
    # given a rule worth a tag and points, and a contact-tag row locked by another session
    rule = make_rule(event_type="purchase", actions=[{"type": "add_tag", "tag": "PURCHASE"}, {"type": "add_score", "points": 5}])
    give_tag(ContactFactory(email="f0@example.com"), "PURCHASE", 1)
    blocker = _hold_tag_lock("f0@example.com")
    try:
        # when events arrive and the worker is stuck mid-batch, it is SIGKILLed
        _ingest(ingest_api, "kill")
        wait_for(_waiting_on_lock, timeout=60, message="the worker to block inside its batch")
        celery_worker_process.kill()
    finally:
        blocker.rollback()
        blocker.close()
    # then nothing of the killed batch is visible: every event of f0's partition is pending again
    # (batches of the other partitions may have finished meanwhile)
    wait_for(lambda: not _waiting_on_lock(), timeout=30, message="the killed batch to roll back")
    waiting, in_partition = _partition_receipts("f0@example.com")
    assert in_partition > 0
    assert waiting == in_partition
    assert RuleApplication.objects.filter(contact__email="f0@example.com").count() == 0
    # when the worker comes back and the beat's sweeper runs
    celery_worker_process.start()
    events_sweep_task(stuck_after_seconds=0)
    wait_for(lambda: _status()["pending"] == 0, timeout=120, message="pending to reach 0")
    # then every effect happened exactly once
    _assert_exactly_once([rule])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_broker_losing_its_messages_is_recovered_by_the_sweeper(celery_worker_process, ingest_api):
    from marketing_hub.celery import app

    # given a rule, and the worker down while events arrive
    rule = make_rule(event_type="purchase", actions=[{"type": "add_tag", "tag": "PURCHASE"}, {"type": "add_score", "points": 5}])
    give_tag(ContactFactory(email="f0@example.com"), "PURCHASE", 1)
    celery_worker_process.kill()
    _ingest(ingest_api, "broker")
    # when the broker restarts empty (its queue purged: Redis flushed, or the kombu tables emptied)
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge(celery_worker_process.queue)
    celery_worker_process.start()
    # then nothing happens by itself…
    time.sleep(1.5)
    assert _status()["waiting"] == EVENTS
    # …until the sweeper (beat, every 5 s) sees events waiting and re-enqueues processing
    assert events_sweep_task(stuck_after_seconds=1) is True
    wait_for(lambda: _status()["pending"] == 0, timeout=120, message="pending to reach 0")
    _assert_exactly_once([rule])
