"""Segment background work: "Refresh now" (a Job with progress), the scheduled full refresh and the
drain of the memberships queued by the rules engine (``segments.dirty``)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils.translation import gettext_lazy as _

from core.jobs import Progress, job_run_chunks, job_task, single_chunk
from core.models import Job
from core.roles import MARKETER
from segments.dirty import segments_dirty_exists, segments_dirty_refresh
from segments.services import segment_refresh, segments_refresh_due

logger = logging.getLogger(__name__)


@job_task("segment_refresh", roles=(MARKETER,), label=_("Segment refresh"))
def segment_refresh_task(job: Job, progress: Progress) -> dict:
    """"Refresh now": the one-statement refresh as a single chunk of the job runner (a versioned
    recompute; its result commits with the job's resume point)."""

    def refresh(cursor) -> dict:
        count = segment_refresh(int(job.params["segment_id"]))
        return {"deleted": True} if count is None else {"members": count}

    return job_run_chunks(job, single_chunk(refresh), total=1)


@shared_task(name="segments.tasks.segments_refresh_scheduled_task")
def segments_refresh_scheduled_task() -> list[int]:
    """Beat: full refresh of every segment whose membership is older than its cadence
    (time-relative segments more often)."""
    return segments_refresh_due()


@shared_task(name="segments.tasks.segments_dirty_refresh_task", acks_late=True)
def segments_dirty_refresh_task() -> dict:
    """Re-evaluate the saved-segment memberships of the contacts the rules engine queued."""
    totals = segments_dirty_refresh()
    if totals["more"]:
        segments_dirty_refresh_task.delay()
    return totals


def segments_dirty_refresh_enqueue() -> None:
    try:
        segments_dirty_refresh_task.delay()
    except Exception:  # the broker is down: the queue is in the database, the beat entry retries
        logger.exception("could not enqueue the segments' dirty drain; the schedule will retry")


@shared_task(name="segments.tasks.segments_dirty_sweep_task")
def segments_dirty_sweep_task() -> bool:
    """Beat safety net: a lost drain message (or a killed drain) leaves queued contacts behind."""
    if segments_dirty_exists():
        segments_dirty_refresh_task.delay()
        return True
    return False
