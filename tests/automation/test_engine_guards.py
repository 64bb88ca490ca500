"""The engine's guards: one batch at a time, hooks see the batch's contacts, the guard rows make
re-runs harmless, and processing tasks re-enqueue and sweep."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connections

from automation.engine import ENGINE_LOCK_KEY, events_process_batch, events_status
from automation.ingestion import events_ingest
from automation.models import EventReceipt, RuleApplication
from automation.tasks import events_process_task, events_sweep_task
from contacts.models import Contact
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
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ENGINE_LOCK_KEY])
        # when this process tries
        outcome = events_process_batch()
        # then it does nothing and the events stay pending
        assert outcome is None
        assert events_status()["waiting"] == 1
    finally:
        other.rollback()
        other.close()
    # and once the lock is free it processes them
    assert events_process_batch().applied_events == 1


@pytest.mark.django_db
def test_hooks_get_every_contact_of_the_batch_in_the_same_transaction():
    # given a rule for purchases only, and events of two contacts (one without any rule effect)
    make_rule(event_type="purchase", actions=[{"type": "add_score", "points": 1}])
    events_ingest([event(type="purchase", value=5), event(type="page_view", email="other@example.com")])
    calls = []
    # when
    with mock.patch("automation.hooks.run_after_events_applied", side_effect=lambda ids: calls.append(sorted(ids))):
        process_all()
    # then loyalty/segments hooks see both contacts (purchase counts and event counts change too)
    assert calls == [sorted(Contact.objects.values_list("pk", flat=True))]


@pytest.mark.django_db
def test_reprocessing_receipts_applies_nothing_twice():
    # given a processed event
    make_rule(actions=[{"type": "add_tag", "tag": "{category}"}, {"type": "add_score", "points": 3}])
    events_ingest([event(category="kurtki")])
    process_all()
    # when its receipt is set back to pending (as after a lost acknowledgement) and processed again
    EventReceipt.objects.update(state=EventReceipt.State.PENDING)
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
