"""The resumable chunk runner and the job task's claim: resume points committed with their chunk,
one delivery at a time, redelivery resumes, the sweeper revives jobs nobody runs."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from contacts.models import ContactTag
from contacts.tasks import contacts_bulk_task
from core import locks
from core.jobs import (
    MAX_REVIVALS,
    ChunkDone,
    id_chunks,
    job_lock_id,
    job_run_chunks,
    jobs_sweep,
    single_chunk,
)
from core.models import Job
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _bulk_job(user, **fields) -> Job:
    return Job.objects.create(kind="contacts_bulk", created_by=user, params={
        "action": "add_tag", "tag": "Promo", "score": 1, "query": "city=Sopot"}, **fields)


def _promo_scores() -> dict[int, int]:
    return dict(ContactTag.objects.filter(tag__key="promo").values_list("contact_id", "score"))


def _other_session():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    return psycopg.connect(**params, autocommit=True)


def test_a_running_job_delivered_again_resumes_after_its_last_committed_chunk(marketer, monkeypatch):
    # given four contacts and a job whose first delivery committed two chunks of one before dying
    monkeypatch.setattr("contacts.tasks.BULK_CHUNK", 1)
    contacts = sorted(ContactFactory.create_batch(4, city="Sopot"), key=lambda contact: contact.pk)
    job = _bulk_job(marketer, status="running", started_at=timezone.now(), total=4, processed=2, chunks_done=2,
                    resume_after=contacts[1].pk, counts={"matched": 2, "changed": 2})
    # when the message is delivered again
    contacts_bulk_task.run(job.pk)
    # then only the two contacts after the resume point are tagged now
    job.refresh_from_db()
    assert _promo_scores() == {contacts[2].pk: 1, contacts[3].pk: 1}
    # and the result counts the earlier delivery's chunks too
    assert job.status == "done" and job.result == {"matched": 4, "changed": 4}
    assert (job.processed, job.chunks_done, job.resume_after) == (4, 4, contacts[3].pk)


def test_a_failing_chunk_rolls_back_together_with_its_resume_point(marketer):
    # given three contacts and a step that fails on the second chunk
    contacts = sorted(ContactFactory.create_batch(3), key=lambda contact: contact.pk)
    job = _bulk_job(marketer)

    def apply(cursor, ids):
        if contacts[1].pk in ids:
            raise RuntimeError("the database said no")
        return {"tagged": len(ids)}

    sql, params = "SELECT id FROM contacts_contact", []
    # when the runner runs it
    with pytest.raises(RuntimeError):
        job_run_chunks(job, id_chunks(sql, params, apply, size=1), total=3)
    # then the first chunk is recorded, the failed one is not
    job.refresh_from_db()
    assert (job.resume_after, job.processed, job.chunks_done, job.counts) == (contacts[0].pk, 1, 1, {"tagged": 1})
    assert job.progress == pytest.approx(1 / 3)


def test_a_second_delivery_leaves_the_job_to_the_one_holding_its_lock(marketer):
    # given a queued job whose lock another session (a running delivery) holds
    ContactFactory(city="Sopot")
    job = _bulk_job(marketer)
    other = _other_session()
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [locks.JOB.key, job_lock_id(job.pk)])
        # when a duplicate message is delivered
        contacts_bulk_task.run(job.pk)
        # then it did nothing: the job is not claimed, nobody is tagged
        job.refresh_from_db()
        assert (job.status, job.started_at) == ("queued", None)
        assert _promo_scores() == {}
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [locks.JOB.key, job_lock_id(job.pk)])
        other.close()
    # and once the lock is free, a delivery runs it
    contacts_bulk_task.run(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and len(_promo_scores()) == 1


def test_a_finished_job_delivered_again_changes_nothing(marketer):
    # given a job that ran
    ContactFactory(city="Sopot")
    job = _bulk_job(marketer)
    contacts_bulk_task.run(job.pk)
    # when its message comes again
    contacts_bulk_task.run(job.pk)
    # then the contact got the tag once
    assert list(_promo_scores().values()) == [1]


def test_a_delivery_that_spent_its_time_budget_enqueues_the_job_again(marketer, monkeypatch):
    # given two contacts, chunks of one and no time budget
    monkeypatch.setattr("contacts.tasks.BULK_CHUNK", 1)
    monkeypatch.setattr("core.jobs.runner.TIME_BUDGET", 0.0)
    ContactFactory.create_batch(2, city="Sopot")
    job = _bulk_job(marketer)
    # when a delivery runs
    with mock.patch.object(contacts_bulk_task, "delay") as delay:
        contacts_bulk_task.run(job.pk)
    # then it committed one chunk, left the job running and enqueued it again
    job.refresh_from_db()
    assert (job.status, job.chunks_done) == ("running", 1)
    delay.assert_called_once_with(job.pk)
    # and the next delivery finishes it
    monkeypatch.setattr("core.jobs.runner.TIME_BUDGET", 600.0)
    contacts_bulk_task.run(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.result == {"matched": 2, "changed": 2}


def test_a_single_chunk_job_redelivered_after_its_commit_reports_without_running_again(marketer):
    # given a one-statement job whose chunk committed before its worker died
    job = Job.objects.create(kind="tag_stats", status="running")
    calls = []

    def recompute(cursor):
        calls.append(1)
        return {"tags": 7, "label": "all"}

    assert job_run_chunks(job, single_chunk(recompute), total=1) == {"tags": 7, "label": "all"}
    # when the body runs again for the same job
    again = job_run_chunks(Job.objects.get(pk=job.pk), single_chunk(recompute), total=1)
    # then it reports the committed result and did not recompute
    assert again == {"tags": 7, "label": "all"} and len(calls) == 1


def test_counts_add_up_numbers_and_keep_the_latest_of_the_rest():
    from core.jobs.runner import counts_merge

    assert counts_merge({"moved": 2, "stage": "A"}, {"moved": 3, "stage": "B", "new": 1}) == {
        "moved": 5, "stage": "B", "new": 1}


def test_a_step_that_returns_none_ends_the_job_with_the_counts_so_far(marketer):
    job = _bulk_job(marketer)
    chunks = iter([ChunkDone(resume_after=10, size=5, counts={"seen": 5}), None])
    assert job_run_chunks(job, lambda cursor, after: next(chunks), total=5) == {"seen": 5}
    job.refresh_from_db()
    assert (job.resume_after, job.progress) == (10, 1.0)


# --- the sweeper ------------------------------------------------------------------------------------
def _stale(status: str, *, seconds: int, attempts: int = 0) -> Job:
    beat = timezone.now() - timedelta(seconds=seconds)
    return Job.objects.create(kind="contacts_bulk", status=status, heartbeat_at=beat, attempts=attempts,
                              started_at=beat if status == "running" else None)


def test_the_sweeper_revives_jobs_nobody_runs_and_leaves_the_others():
    # given a running job whose worker died, one still running elsewhere (its lock held), a fresh
    # one, a queued job whose message was lost, and a recently queued one
    dead = _stale("running", seconds=120)
    alive = _stale("running", seconds=120)
    fresh = _stale("running", seconds=5)
    lost = _stale("queued", seconds=3600)
    waiting = _stale("queued", seconds=30)
    other = _other_session()
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [locks.JOB.key, job_lock_id(alive.pk)])
        # when the sweeper runs
        with mock.patch.object(contacts_bulk_task, "delay") as delay:
            outcome = jobs_sweep()
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [locks.JOB.key, job_lock_id(alive.pk)])
        other.close()
    # then the dead and the lost job are enqueued again, once each, and counted
    assert outcome == {"revived": 2, "failed": 0}
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted([dead.pk, lost.pk])
    assert dict(Job.objects.values_list("pk", "attempts")) == {
        dead.pk: 1, alive.pk: 0, fresh.pk: 0, lost.pk: 1, waiting.pk: 0}


def test_the_sweeper_fails_a_job_that_keeps_killing_its_worker():
    # given a job revived the maximum number of times
    job = _stale("running", seconds=120, attempts=MAX_REVIVALS)
    # when the sweeper finds it without a worker again
    with mock.patch.object(contacts_bulk_task, "delay") as delay:
        assert jobs_sweep() == {"revived": 0, "failed": 1}
    # then it is failed with a reason, not enqueued
    job.refresh_from_db()
    delay.assert_not_called()
    assert job.status == "failed" and f"stopped {MAX_REVIVALS} times" in job.error


def test_the_sweep_runs_on_the_beat_schedule():
    from marketing_hub.celery import app

    assert "core.jobs.jobs_sweep_task" in {entry["task"] for entry in app.conf.beat_schedule.values()}
