"""Segment background work: "Refresh now" (a Job with progress) and the scheduled full refresh."""

from __future__ import annotations

from celery import shared_task

from automation.jobs import Progress, job_task
from automation.models import Job
from segments.services import segment_refresh, segments_refresh_due


@job_task("segment_refresh")
def segment_refresh_task(job: Job, progress: Progress) -> dict:
    count = segment_refresh(int(job.params["segment_id"]), progress=progress)
    if count is None:
        return {"deleted": True}
    return {"members": count}


@shared_task(name="segments.tasks.segments_refresh_scheduled_task")
def segments_refresh_scheduled_task() -> list[int]:
    """Beat: full refresh of every segment whose membership is older than its cadence
    (time-relative segments more often)."""
    return segments_refresh_due()
