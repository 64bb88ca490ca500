"""Segment memberships after events: the engine queues the batch's contacts instead of
re-evaluating every saved segment inside its batch; the drain brings memberships up to date."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connections

from automation.engine import engine_busy, events_process_pending, events_status
from automation.ingestion import events_ingest
from automation.tasks import events_process_enqueue
from contacts.models import Contact
from core import locks
from segments.dirty import segments_dirty_refresh
from segments.models import Segment, SegmentDirtyContact, SegmentMember
from segments.services import segment_refresh
from tests.automation.factories import event, make_rule, process_all

KURTKI_2 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 2}


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"), \
            mock.patch("segments.tasks.segments_dirty_refresh_enqueue"):
        yield


def members(segment: Segment) -> set[str]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("contact__email", flat=True))


@pytest.mark.django_db
def test_events_queue_their_contacts_and_the_drain_updates_memberships():
    # given a refreshed (empty) segment and a rule tagging the category
    segment = Segment.objects.create(name="Kurtki", definition=KURTKI_2)
    segment_refresh(segment.pk)
    make_rule(actions=[{"type": "add_tag", "tag": "{category}", "score": 1}])
    events_ingest([event(category="kurtki"), event(category="kurtki")])
    # when the engine applies the events
    process_all()
    # then the tag is applied and the contact waits in the queue: events/status is not 0 yet
    assert events_status() == {"pending": 1, "waiting": 0, "failed": 0, "memberships_waiting": 1}
    # (queued as a new contact by the ingestion, then by the engine's batch)
    assert set(SegmentDirtyContact.objects.values_list("contact_id", flat=True)) == {
        Contact.objects.get(email="anna@example.com").pk}
    assert members(segment) == set()
    # when the queue is drained
    totals = segments_dirty_refresh()
    # then the membership and the count follow (its two queue rows merged), the queue is empty and
    # events/status reads 0
    assert totals["rows"] == 2
    assert members(segment) == {"anna@example.com"}
    assert Segment.objects.get(pk=segment.pk).count == 1
    assert not SegmentDirtyContact.objects.exists()
    assert events_status()["pending"] == 0


def queued_contact_and_waiting_events(waiting: int) -> Segment:
    """A segment, a contact queued for it (as new, then by the engine's batch) and ``waiting``
    of its events not yet processed."""
    segment = Segment.objects.create(name="Kurtki", definition=KURTKI_2)
    make_rule()
    events_ingest([event(category="kurtki"), event(category="kurtki")])
    process_all()
    events_ingest([event(category="buty") for _ in range(waiting)])
    return segment


@pytest.mark.django_db
def test_the_drain_runs_beside_an_engine_that_keeps_up():
    # given a queued contact and fewer events waiting than one batch takes (a steady stream)
    segment = queued_contact_and_waiting_events(2)
    # when the drain runs while those events wait
    with mock.patch("automation.engine.BATCH_SIZE", 2):
        totals = segments_dirty_refresh()
    # then it does not wait for them
    assert totals["deferred"] is False
    assert totals["rows"] == 2  # queued as new, then by the engine's batch
    assert members(segment) == {"anna@example.com"}


@pytest.mark.django_db
def test_the_drain_waits_while_the_engine_is_behind_unless_contacts_waited_too_long():
    # given a queued contact and more events waiting than one batch takes (a burst)
    segment = queued_contact_and_waiting_events(3)
    # when the drain runs while the engine is behind
    with mock.patch("automation.engine.BATCH_SIZE", 2):
        totals = segments_dirty_refresh()
    # then it leaves the work for after the events
    assert totals["deferred"] is True
    assert SegmentDirtyContact.objects.count() == 2  # queued as new, then by the engine's batch
    # when the queued contact has waited longer than the limit
    SegmentDirtyContact.objects.update(marked_at="2000-01-01T00:00:00Z")
    with mock.patch("automation.engine.BATCH_SIZE", 2):
        totals = segments_dirty_refresh()
    # then it drains anyway
    assert totals["rows"] == 2
    assert members(segment) == {"anna@example.com"}


@pytest.mark.django_db
def test_a_drain_stops_between_chunks_when_the_engine_falls_behind():
    # given two contacts queued, and an engine that keeps up at the drain's start but is behind
    # after its first chunk
    events_ingest([event(category="kurtki"), event(category="kurtki", email="ola@example.com")])
    assert SegmentDirtyContact.objects.count() == 2  # each queued as new
    behind = iter([False, True])
    with mock.patch("segments.dirty.DRAIN_YIELDS_TO", [lambda: next(behind)]):
        # when the drain takes one queue row per chunk
        totals = segments_dirty_refresh(chunk=1)
    # then it stops after the first chunk and leaves the other contact queued
    assert totals["deferred"] is True
    assert totals["rows"] == 1
    assert SegmentDirtyContact.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_ingest_does_not_enqueue_while_a_batch_holds_the_engine_lock():
    # given another session holding the engine lock (a running batch: its loop re-checks for
    # pending events after releasing it)
    other = connections.create_connection("default")
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            locks.advisory_xact_lock(cursor, locks.ENGINE)
        # when an ingest asks for processing (the real function, imported before the patch)
        with mock.patch("automation.tasks.events_process_task.delay") as delay:
            events_process_enqueue()
        # then no message bounces off the lock
        assert engine_busy() is True
        assert delay.call_count == 0
    finally:
        other.rollback()
        other.close()
    # and with the lock free a task is sent
    with mock.patch("automation.tasks.events_process_task.delay") as delay:
        events_process_enqueue()
    assert engine_busy() is False
    assert delay.call_count == 1


@pytest.mark.django_db
def test_a_long_engine_run_enqueues_the_drain_during_the_run_not_only_at_its_end():
    # given four events, taken one per batch, and a run long enough for the drain to be due
    make_rule()
    events_ingest([event(category="kurtki") for _ in range(4)])
    with mock.patch("automation.engine.DRAIN_NUDGE_S", 0), \
            mock.patch("automation.engine.segments_dirty_enqueue") as enqueue:
        # when the engine runs
        totals = events_process_pending(batch_size=1, time_budget=60)
    # then the drain was enqueued after each batch and once more at the end
    assert totals["batches"] == 4
    assert enqueue.call_count == 5
