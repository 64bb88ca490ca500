"""Background jobs with progress the user can see.

Usage in an app's tasks.py::

    @job_task("contacts_bulk", roles=(MARKETER,))
    def contacts_bulk_task(job: Job, progress: Progress) -> dict:
        return job_run_chunks(job, id_chunks(target_sql, params, apply_to_ids), total=count)

and in a view::

    job = job_start(contacts_bulk_task, title="Add tag X to 500 contacts", params={...}, user=request.user)

``job_start`` creates the Job row and enqueues the task after the surrounding transaction commits.
``roles`` are the roles that may start a job of the kind, and so run it again from the Jobs page.

A delivery of the task first takes the job's advisory lock (``core.locks.JOB``, a session lock held
for the whole delivery): a second delivery of the same job — the broker redelivering a message
whose worker still runs it, or the sweeper's — finds it taken and leaves. It then claims the job
(queued or running → running) and runs the body. Bulk bodies run on ``job_run_chunks``
(``core.jobs.runner``), which resumes a job that was ``running`` from the resume point its last
committed chunk stored: a redelivered half-done job continues where it stopped and never applies
a chunk twice. Single-statement bodies (recomputes) are idempotent and simply run again.

A worker killed mid-job loses its connection, and with it the job's lock. ``jobs_sweep`` (beat)
re-enqueues running jobs whose lock nobody holds and queued jobs whose message was lost; a job
whose worker died ``MAX_REVIVALS`` times is marked failed instead (it probably kills the worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import wraps
from typing import Any

from celery import shared_task
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

from core import locks
from core.jobs.runner import (
    CHUNK_SIZE,
    FINISHED,
    ChunkDone,
    JobContinues,
    id_chunks,
    job_run_chunks,
    single_chunk,
)
from core.models import Job
from core.roles import has_role

__all__ = [
    "CHUNK_SIZE", "FINISHED", "JOB_TASKS", "ChunkDone", "JobContinues", "Progress", "id_chunks", "job_lock_id",
    "job_restart", "job_resumable", "job_resume", "job_run_chunks", "job_start", "job_task", "jobs_sweep",
    "single_chunk", "user_may_start",
]

logger = logging.getLogger(__name__)

# A job whose worker died this many times is failed rather than enqueued again.
MAX_REVIVALS = 5


class Progress:
    """Writes progress to the Job row (its own UPDATE, visible at once to the polling page), for
    bodies that do not run on the chunk runner (which records progress with each chunk)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def update(self, processed: int, total: int | None = None) -> None:
        fields: dict = {"processed": processed, "heartbeat_at": timezone.now()}
        if total is not None:
            fields["total"] = total
            self.job.total = total
        if self.job.total:
            fields["progress"] = min(1.0, processed / self.job.total)
        Job.objects.filter(pk=self.job.pk).update(**fields)


def job_lock_id(job_id: int) -> int:
    """The job's key in the JOB lock namespace (advisory keys are 32-bit)."""
    return job_id % 2**31


def job_task(kind: str, *, roles: Sequence[str], label: str | Promise = "", **task_options: Any) -> Callable[[Callable], Any]:
    """Decorator making ``func(job, progress)`` a Celery task that takes a job id; ``roles`` may
    start (and re-run) jobs of this kind; ``label`` is how pages name the kind ("Contact import",
    never ``import_contacts``)."""

    def decorator(func: Callable) -> Any:
        @shared_task(name=f"{func.__module__}.{func.__name__}", **task_options)
        @wraps(func)
        def task(job_id: int) -> None:
            if _job_deliver(job_id, kind, func) == "continue":
                task.delay(job_id)

        task.job_kind = kind
        task.job_roles = tuple(roles)
        JOB_TASKS[kind] = task
        JOB_KIND_LABELS[kind] = label or kind.replace("_", " ").capitalize()
        return task

    return decorator


# kind → its Celery task (with ``job_kind`` and ``job_roles``)
JOB_TASKS: dict[str, Any] = {}
# kind → the words pages show for it (lazy: in the reader's language)
JOB_KIND_LABELS: dict[str, Any] = {}

# The keys of the areas' job results and parameters that a job's page lists, in words; a key not
# named here is humanized from its slug.
JOB_FIELD_LABELS = {
    "applied": pgettext_lazy("job field", "Applied"),
    "busy": pgettext_lazy("job field", "Busy"),
    "changed": pgettext_lazy("job field", "Changed"),
    "contacts": pgettext_lazy("job field", "Contacts"),
    "days": pgettext_lazy("job field", "Days"),
    "deleted": pgettext_lazy("job field", "Deleted"),
    "deliveries": pgettext_lazy("job field", "Deliveries"),
    "distribution": pgettext_lazy("job field", "Distribution"),
    "down": pgettext_lazy("job field", "Moved down"),
    "events": pgettext_lazy("job field", "Events"),
    "ids": pgettext_lazy("job field", "Selected contacts"),
    "import_id": pgettext_lazy("job field", "Import"),
    "language": pgettext_lazy("job field", "Language"),
    "matched": pgettext_lazy("job field", "Matched"),
    "members": pgettext_lazy("job field", "Members"),
    "no_tier": pgettext_lazy("job field", "Without a tier"),
    "outbox": pgettext_lazy("job field", "Outbox"),
    "pending_down": pgettext_lazy("job field", "Waiting to move down"),
    "points": pgettext_lazy("job field", "Points"),
    "program_id": pgettext_lazy("job field", "Programme"),
    "query": pgettext_lazy("job field", "Filters"),
    "reason": pgettext_lazy("job field", "Reason"),
    "replayed": pgettext_lazy("job field", "Replayed"),
    "segment_id": pgettext_lazy("job field", "Segment"),
    "since": pgettext_lazy("job field", "Since"),
    "skipped": pgettext_lazy("job field", "Skipped"),
    "tags": pgettext_lazy("job field", "Tags"),
    "timed_out": pgettext_lazy("job field", "Timed out"),
    "top_tags": pgettext_lazy("job field", "Top tags"),
    "unchanged": pgettext_lazy("job field", "Unchanged"),
    "up": pgettext_lazy("job field", "Moved up"),
    "version": pgettext_lazy("job field", "Version"),
    "webhook_id": pgettext_lazy("job field", "Webhook"),
    "written": pgettext_lazy("job field", "Written"),
}


def job_kind_label(kind: str) -> str:
    """A job kind in words; a kind no task registers (an old row) is humanized from its slug."""
    return str(JOB_KIND_LABELS.get(kind) or kind.replace("_", " ").capitalize())


def job_field_label(key: str) -> str:
    return str(JOB_FIELD_LABELS.get(key) or key.replace("_", " ").capitalize())


def _job_deliver(job_id: int, kind: str, func: Callable) -> str:
    """One delivery of a job, under its lock. Returns what happened: "busy" (another delivery
    holds it), "finished" (nothing to do), "continue" (enqueue again), "done" or "failed"."""
    with connection.cursor() as cursor, locks.advisory_session_lock(
        cursor, locks.JOB, job_lock_id(job_id), wait=False
    ) as held:
        if not held:
            logger.info("job %s (%s) is being run by another delivery; leaving it", job_id, kind)
            return "busy"
        now = timezone.now()
        # queued, or running with nobody at it (we hold its lock): claim it. A running job resumes
        # from its stored point; a finished one is left alone (a late duplicate message).
        claimed = Job.objects.filter(pk=job_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
            status=Job.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)), heartbeat_at=now,
        )
        if not claimed:
            return "finished"
        job = Job.objects.get(pk=job_id)
        try:
            result = func(job, Progress(job))
        except JobContinues:
            return "continue"  # enqueued by the caller once our lock is released
        except Exception as exc:
            logger.exception("job %s (%s) failed", job_id, kind)
            Job.objects.filter(pk=job_id).update(
                status=Job.Status.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:2000],
                finished_at=timezone.now(),
            )
            return "failed"
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.DONE, progress=1.0, result=result or {}, finished_at=timezone.now(),
        )
        return "done"


def user_may_start(user: Any, kind: str) -> bool:
    """Whether ``user`` holds a role that may start jobs of ``kind`` (unknown kinds: nobody)."""
    task = JOB_TASKS.get(kind)
    return task is not None and has_role(user, *task.job_roles)


def job_start(
    task: Any, *, title: str, params: dict | None = None, user: Any = None, total: int | None = None,
    link: tuple[str, str, str] | None = None,
) -> Job:
    """Create a queued Job for ``task`` (a ``@job_task``) and enqueue it after commit. ``link`` is
    (label, text, url) of what the job works on, shown on its page ("Rule", "Welcome", "/automation/…")."""
    params = dict(params or {})
    if link is not None:
        params["link"] = {"label": link[0], "text": link[1], "url": link[2]}
    job = Job.objects.create(
        kind=task.job_kind,
        title=str(title)[:200],  # a lazy translation is stored as the starter's words
        params=params,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        total=total,
        heartbeat_at=timezone.now(),
    )
    transaction.on_commit(lambda: task.delay(job.pk))
    return job


def job_restart(job: Job, *, user: Any = None) -> Job:
    """"Run again": a new job of the same kind with the same parameters (a new run on purpose:
    "add tag +1" adds once more). The caller checks ``user_may_start`` first."""
    task = JOB_TASKS[job.kind]
    return job_start(task, title=job.title, params=job.params, user=user)


def job_resumable(job: Job) -> bool:
    """A failed job that committed part of its work and can continue from its resume point
    ("Continue" instead of "Run again", which would apply the committed chunks a second time)."""
    return (job.status == Job.Status.FAILED and job.chunks_done > 0 and job.resume_after != FINISHED
            and job.kind in JOB_TASKS)


def job_resume(job: Job) -> bool:
    """Queue a failed job again; its next delivery continues after its last committed chunk.
    False when it is no longer failed (someone else resumed it)."""
    if not Job.objects.filter(pk=job.pk, status=Job.Status.FAILED).update(
        status=Job.Status.QUEUED, error="", finished_at=None, heartbeat_at=timezone.now(),
    ):
        return False
    task = JOB_TASKS[job.kind]
    transaction.on_commit(lambda: task.delay(job.pk))
    return True


def jobs_sweep(*, running_after: timedelta = timedelta(seconds=60),
               queued_after: timedelta = timedelta(minutes=10)) -> dict[str, int]:
    """Revive jobs nobody is working on: running jobs whose lock no session holds (their worker
    died; with late acks the broker may not redeliver for an hour, or at all on the database
    broker) and whose last sign of life is older than ``running_after``, and queued jobs older than
    ``queued_after`` (their message was lost). Each is enqueued again and resumes from its stored
    point; a job revived ``MAX_REVIVALS`` times is failed. Returns {"revived": n, "failed": m}."""
    now = timezone.now()
    held, held_params = locks.held_sql(locks.JOB)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT j.id FROM automation_job j
            WHERE (j.status = 'running' AND coalesce(j.heartbeat_at, j.started_at, j.created_at) < %s
                   OR j.status = 'queued' AND coalesce(j.heartbeat_at, j.created_at) < %s)
              AND NOT EXISTS (SELECT 1 FROM pg_locks WHERE {held} AND objid::bigint = j.id %% 2147483648)
            ORDER BY j.id
            """,
            [now - running_after, now - queued_after, *held_params],
        )
        stale_ids = [row[0] for row in cursor.fetchall()]
    revived = failed = 0
    for job in Job.objects.filter(pk__in=stale_ids).only("pk", "kind", "attempts", "status"):
        task = JOB_TASKS.get(job.kind)
        if task is None or job.attempts >= MAX_REVIVALS:
            # stored, so in English (the worker has no reader's language)
            reason = ("Its kind of job no longer exists." if task is None else
                      f"The worker stopped {job.attempts} times while running this job; run it again.")
            failed += Job.objects.filter(pk=job.pk, status=job.status).update(
                status=Job.Status.FAILED, error=reason, finished_at=now,
            )
            continue
        # The guard on the status and the old heartbeat: a delivery that claimed it meanwhile wins.
        if Job.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts).update(
            attempts=F("attempts") + 1, heartbeat_at=now,
        ):
            logger.warning("job %s (%s) had no worker; enqueued again", job.pk, job.kind)
            task.delay(job.pk)
            revived += 1
    return {"revived": revived, "failed": failed}


@shared_task(name="core.jobs.jobs_sweep_task")
def jobs_sweep_task() -> dict[str, int]:
    return jobs_sweep()
