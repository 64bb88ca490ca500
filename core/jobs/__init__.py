"""Background jobs with progress the user can see.

Usage in an app's tasks.py::

    @job_task("bulk_tag")
    def bulk_tag_task(job: Job, progress: Progress) -> dict:
        ...                      # set-based SQL, in batches
        progress.update(done, total)
        return {"tagged": n}     # stored as job.result

and in a view::

    job = job_start(bulk_tag_task, title="Add tag X to 500 contacts", params={...}, user=request.user)

``job_start`` creates the Job row and enqueues the task after the surrounding transaction commits.
The task marks the job running, then done (with the returned result) or failed (with the error).
A task killed mid-way leaves a ``running`` job that ``jobs_reap_stale`` marks failed later; work
inside a job must be idempotent or transactional per batch so that "run again" is safe.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.models import Job

logger = logging.getLogger(__name__)


class Progress:
    """Writes progress to the Job row (its own UPDATE, visible at once to the polling page)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def update(self, processed: int, total: int | None = None) -> None:
        fields: dict = {"processed": processed}
        if total is not None:
            fields["total"] = total
            self.job.total = total
        if self.job.total:
            fields["progress"] = min(1.0, processed / self.job.total)
        Job.objects.filter(pk=self.job.pk).update(**fields)


def job_task(kind: str, **task_options) -> Callable:
    """Decorator making ``func(job, progress)`` a Celery task that takes a job id."""

    def decorator(func: Callable) -> Callable:
        @shared_task(name=f"{func.__module__}.{func.__name__}", **task_options)
        @wraps(func)
        def task(job_id: int) -> None:
            claimed = Job.objects.filter(pk=job_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
                status=Job.Status.RUNNING, started_at=timezone.now()
            )
            if not claimed:
                return  # finished already (a redelivered message)
            job = Job.objects.get(pk=job_id)
            try:
                result = func(job, Progress(job))
            except Exception as exc:
                logger.exception("job %s (%s) failed", job_id, kind)
                Job.objects.filter(pk=job_id).update(
                    status=Job.Status.FAILED,
                    error=f"{exc.__class__.__name__}: {exc}"[:2000] or traceback.format_exc()[-2000:],
                    finished_at=timezone.now(),
                )
                return
            Job.objects.filter(pk=job_id).update(
                status=Job.Status.DONE, progress=1.0, result=result or {}, finished_at=timezone.now()
            )

        task.job_kind = kind
        JOB_TASKS[kind] = task
        return task

    return decorator


JOB_TASKS: dict[str, Callable] = {}


def job_start(
    task, *, title: str, params: dict | None = None, user=None, total: int | None = None,
    link: tuple[str, str, str] | None = None,
) -> Job:
    """Create a queued Job for ``task`` (a ``@job_task``) and enqueue it after commit. ``link`` is
    (label, text, url) of what the job works on, shown on its page ("Rule", "Welcome", "/automation/…")."""
    params = dict(params or {})
    if link is not None:
        params["link"] = {"label": link[0], "text": link[1], "url": link[2]}
    job = Job.objects.create(
        kind=task.job_kind,
        title=title[:200],
        params=params,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        total=total,
    )
    transaction.on_commit(lambda: task.delay(job.pk))
    return job


def job_restart(job: Job, *, user=None) -> Job:
    """"Run again": a new job of the same kind with the same parameters."""
    task = JOB_TASKS[job.kind]
    return job_start(task, title=job.title, params=job.params, user=user)


def jobs_reap_stale(*, older_than: timedelta = timedelta(hours=2)) -> int:
    """Running jobs whose worker died long ago are marked failed, so nobody waits forever."""
    cutoff = timezone.now() - older_than
    return Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=cutoff).update(
        status=Job.Status.FAILED, error="The worker stopped while running this job; run it again.",
        finished_at=timezone.now(),
    )


def job_bump(job_id: int, processed: int) -> None:
    """Add to a job's processed count atomically (for jobs split over several tasks)."""
    Job.objects.filter(pk=job_id).update(processed=F("processed") + processed)
