"""The engine's guards: one batch at a time, hooks see the batch's contacts, the guard rows make
re-runs harmless, and processing tasks re-enqueue and sweep."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connections

from automation.engine import (
    engine_busy,
    engine_partitions,
    events_process_batch,
    events_status,
)
from automation.ingestion import events_ingest
from automation.models import EventReceipt, PendingEvent, RuleApplication
from automation.tasks import events_process_task, events_sweep_task
from contacts.models import Contact
from core import locks
from tests.automation.factories import event, make_rule, process_all, tags_of


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


@pytest.mark.django_db(transaction=True)
def test_a_second_processor_steps_aside_while_the_lock_is_held():
    # given pending events and another session holding the engine lock
    make_rule()
    events_ingest([event(category="a")])
    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            locks.advisory_xact_lock(cursor, locks.ENGINE)
        # when this process tries
        outcome = events_process_batch()
        # then it does nothing and the events stay pending
        assert outcome is None
        assert events_status()["waiting"] == 1
    finally:
        other.rollback()
        other.close()
    # and once the lock is free it processes them (in the partition of their contact)
    partition = Contact.objects.get().pk % engine_partitions()
    assert events_process_batch(partition=partition).applied_events == 1


@pytest.mark.django_db(transaction=True)
def test_batches_of_different_partitions_run_side_by_side(settings):
    # given two partitions and events of contacts in each
    settings.MH_ENGINE_PARTITIONS = 2
    make_rule()
    events_ingest([event(f"e{i}", email=f"p{i}@example.com", category="kurtki") for i in range(6)])
    contacts = {c.email: c.pk for c in Contact.objects.all()}
    assert {pk % 2 for pk in contacts.values()} == {0, 1}
    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        # when another session holds partition 0 (a running batch)
        with other.cursor() as cursor:
            locks.advisory_xact_lock(cursor, locks.ENGINE_PARTITION, 0)
            locks.advisory_xact_lock(cursor, locks.ENGINE, shared=True)
        # then partition 0 steps aside, partition 1 is processed, and the engine is not "busy"
        assert events_process_batch(partition=0) is None
        assert engine_busy() is False
        outcome = events_process_batch(partition=1)
        odd = [email for email, pk in contacts.items() if pk % 2 == 1]
        assert outcome.applied_events == len(odd)
        assert all(tags_of(email) == {"kurtki": 1} for email in odd)
        assert events_status()["waiting"] == 6 - len(odd)
        # and with partition 1 held too, no batch could start: ingestion need not enqueue a task
        with other.cursor() as cursor:
            locks.advisory_xact_lock(cursor, locks.ENGINE_PARTITION, 1)
        assert engine_busy() is True
    finally:
        other.rollback()
        other.close()
    assert engine_busy() is False
    assert events_process_batch(partition=0).applied_events == 6 - len(odd)
    assert events_status()["waiting"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_backfill_holding_the_engine_stops_every_partition(settings):
    # given pending events in both partitions and the engine lock held exclusively (a backfill)
    settings.MH_ENGINE_PARTITIONS = 2
    make_rule()
    events_ingest([event(f"e{i}", email=f"p{i}@example.com") for i in range(4)])
    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            locks.advisory_xact_lock(cursor, locks.ENGINE)
        # then no partition runs and the engine counts as busy
        assert events_process_batch(partition=0) is None
        assert events_process_batch(partition=1) is None
        assert engine_busy() is True
    finally:
        other.rollback()
        other.close()
    # and afterwards one loop drains both partitions
    assert process_all()["events"] == 4


@pytest.mark.django_db
def test_a_partition_out_of_range_is_refused(settings):
    settings.MH_ENGINE_PARTITIONS = 2
    with pytest.raises(ValueError, match="partition"):
        events_process_batch(partition=2)


@pytest.mark.django_db
def test_hooks_get_every_contact_of_the_batch_in_the_same_transaction():
    # given a rule for purchases only, and events of two contacts (one without any rule effect)
    make_rule(event_type="purchase", actions=[{"type": "add_score", "points": 1}])
    events_ingest([event(type="purchase", value=5), event(type="page_view", email="other@example.com")])
    calls = []
    # when
    with mock.patch("automation.engine.contacts_changed_send", side_effect=lambda ids, **kwargs: calls.append(sorted(ids))):
        process_all()
    # then loyalty/segments hooks see both contacts (purchase counts and event counts change too),
    # each once (the contacts' partitions may put them in different batches)
    seen = [contact_id for call in calls for contact_id in call]
    assert sorted(seen) == sorted(Contact.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_reprocessing_receipts_applies_nothing_twice():
    # given a processed event
    make_rule(actions=[{"type": "add_tag", "tag": "{category}"}, {"type": "add_score", "points": 3}])
    events_ingest([event(category="kurtki")])
    process_all()
    # when it is queued again (as after a lost acknowledgement) and processed again
    PendingEvent.objects.bulk_create(
        PendingEvent(event_pk=r.event_pk, event_id=r.event_id, occurred_at=r.occurred_at, contact_id=r.contact_id)
        for r in EventReceipt.objects.all()
    )
    process_all()
    # then the guard rows stop a second effect
    assert tags_of("anna@example.com") == {"kurtki": 1}
    assert Contact.objects.get().score == 3
    assert RuleApplication.objects.count() == 1


@pytest.mark.django_db
def test_deleting_a_rule_keeps_what_it_did():
    rule = make_rule()
    events_ingest([event(category="kurtki")])
    process_all()
    rule.delete()
    assert tags_of("anna@example.com") == {"kurtki": 1}


@pytest.mark.django_db
def test_task_re_enqueues_when_more_remain_and_sweeper_finds_stuck_events():
    with mock.patch("automation.engine.events_process_pending", return_value={"more": True}), \
            mock.patch.object(events_process_task, "delay") as delay:
        events_process_task()
    assert delay.call_count == 1
    events_ingest([event()])
    with mock.patch.object(events_process_task, "delay") as delay:
        assert events_sweep_task() is False  # fresh events are not stuck yet
        assert events_sweep_task(stuck_after_seconds=0) is True
    assert delay.call_count == 1
