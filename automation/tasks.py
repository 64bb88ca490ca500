"""Celery tasks of the automation area: thin wrappers over engine functions the tests call directly."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automation import engine
from automation.adhoc import adhoc_run
from automation.models import Rule
from core.jobs import CHUNK_SIZE, FINISHED, ChunkDone, Progress, job_run_chunks, job_task
from core.models import Job
from core.roles import MARKETER

logger = logging.getLogger(__name__)

# Pending events older than this are considered stuck (their task was lost) by the sweeper.
STUCK_AFTER = timedelta(seconds=5)
# Past events per chunk of a rule backfill (one engine batch each).
BACKFILL_CHUNK = CHUNK_SIZE


@shared_task(name="automation.tasks.events_process_task", acks_late=True)
def events_process_task() -> dict:
    """Apply the rules to pending events until none remain (or the time budget is spent)."""
    totals = engine.events_process_pending()
    if totals["more"]:
        events_process_task.delay()
    return totals


def events_process_enqueue() -> None:
    """Called after an ingest commits: a task, unless a batch holds the engine lock right now —
    its loop re-checks for pending events after releasing the lock and takes these too, so a
    message per request would only bounce off the lock (a broker round trip and a poll each)."""
    try:
        if engine.engine_busy():
            return
    except Exception:  # cannot tell: enqueue, a spare task is harmless
        logger.exception("could not read the engine lock; enqueueing")
    try:
        events_process_task.delay()
    except Exception:  # the broker is down: the events are stored, the sweeper will pick them up
        logger.exception("could not enqueue event processing; the sweeper will retry")


@shared_task(name="automation.tasks.events_sweep_task", acks_late=True)
def events_sweep_task(stuck_after_seconds: float | None = None) -> bool:
    """Beat, every few seconds: re-enqueue processing when pending events wait longer than they
    should (a lost message, a broker restart, a worker killed before it acknowledged)."""
    stuck_after = STUCK_AFTER if stuck_after_seconds is None else timedelta(seconds=stuck_after_seconds)
    cutoff = timezone.now() - stuck_after
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM automation_pendingevent WHERE NOT failed AND received_at < %s)", [cutoff]
        )
        stuck = cursor.fetchone()[0]
    if stuck:
        events_process_task.delay()
    return stuck


@job_task("rule_backfill", roles=(MARKETER,), label=_("Rule backfill over past events"))
def rule_backfill_task(job: Job, progress: Progress) -> dict:
    """Run a rule on past events since ``params.since``, in (occurred_at, id) keyset chunks on the
    resumable runner; pairs already applied are skipped by the engine's guard as well."""
    rule = Rule.objects.filter(pk=job.params.get("rule_id")).first()
    if rule is None:
        raise ValueError("The rule was deleted.")
    since = datetime.fromisoformat(job.params["since"])

    def step(cursor, after: dict | str | None) -> ChunkDone | None:
        if after == FINISHED:
            return None
        keyset = (datetime.fromisoformat(after["occurred_at"]), after["id"]) if after else None
        scanned, applied, last = engine.rule_backfill_batch(rule, since=since, after=keyset, limit=BACKFILL_CHUNK)
        if not scanned:
            return None
        # the batch says where the next one starts, or None when it was the last
        resume = {"occurred_at": last[0].isoformat(), "id": last[1]} if last else FINISHED
        return ChunkDone(resume_after=resume, size=scanned, counts={"events": scanned, "applied": applied})

    counts = job_run_chunks(job, step, total=lambda: engine.rule_backfill_count(rule, since=since))
    if engine.pending_exists():
        events_process_task.delay()  # we held the engine lock; do not leave new events waiting
    return {"events": counts.get("events", 0), "applied": counts.get("applied", 0), "rule_id": rule.pk}


@job_task("adhoc_actions", roles=(MARKETER,), label=_("Ad-hoc rule on a segment"))
def adhoc_actions_task(job: Job, progress: Progress) -> dict:
    return adhoc_run(job, progress)
