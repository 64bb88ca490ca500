"""The resumable chunk runner every bulk job runs on.

A bulk job (tag 20,000 contacts, move them to a stage, run a rule over past events, import a file)
walks its target in keyset order — contact ids, or (time, id) for events — one chunk at a time.
Each chunk is ONE transaction that

1. locks the Job row and reads the resume point from it (``Job.resume_after``),
2. selects the next chunk after that point and applies its effect with set-based SQL,
3. writes the new resume point, the chunk's counts and the progress to the Job row,

so the effect and "how far we got" commit together or not at all. When a worker dies mid-way
(SIGKILL, OOM, a lost machine), the chunk it was in rolls back and the committed ones are recorded
on the row: the next delivery of the job continues after the last committed chunk and never
applies one twice. Because the resume point is read under the row lock, even two deliveries
racing past the per-job advisory lock (see ``core.jobs.job_task``) cannot both apply a chunk: the
second waits for the first's commit and then reads the point the first moved on.

A delivery also stops after ``time_budget`` seconds and asks to be enqueued again
(``JobContinues``), so no job runs into Celery's hard time limit however large the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from django.utils import timezone

from core.models import Job

# A chunk of a few thousand contacts commits in well under a second on the bench data: small
# enough that a killed worker loses little, large enough that the per-chunk overhead (the row lock,
# the job UPDATE, the dependents' refresh) stays a few percent.
CHUNK_SIZE = 5_000
# Seconds one delivery works before it re-enqueues itself (Celery's soft limit is 29 minutes).
TIME_BUDGET = 10 * 60.0
# ``resume_after`` of a job whose target is exhausted (for steps whose last key says nothing).
FINISHED = "finished"


class JobContinues(Exception):  # noqa: N818 (a signal to the task wrapper, not an error)
    """The delivery spent its time budget; the job is to be enqueued again and resumes."""


@dataclass(frozen=True)
class ChunkDone:
    """What one committed chunk did: the key to resume after, how many target rows it covered
    (the progress), and counts to add to the job's (``{"changed": 812}``)."""

    resume_after: Any
    size: int
    counts: Mapping[str, Any] = field(default_factory=dict)


# ``step(cursor, resume_after)`` finds the chunk after ``resume_after`` (None: from the start) and
# applies it inside the runner's transaction; None when nothing is left.
ChunkStep = Callable[[CursorWrapper, Any], ChunkDone | None]


def counts_merge(total: Mapping[str, Any], chunk: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers add up over the chunks; anything else (a label, a distribution) is the latest."""
    merged = dict(total)
    for key, value in chunk.items():
        previous = merged.get(key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and isinstance(previous, int | float) and not isinstance(previous, bool):
            merged[key] = previous + value
        else:
            merged[key] = value
    return merged


def job_run_chunks(job: Job, step: ChunkStep, *, total: int | Callable[[], int] | None = None,
                   time_budget: float | None = None) -> dict[str, Any]:
    """Run ``step`` chunk by chunk from the job's resume point until it returns None; return the
    counts of every committed chunk of the job (this delivery's and the earlier ones').

    ``total`` (or a function computing it) is the target's size for the progress bar; it is
    computed once, by the first delivery, and kept on the row."""
    if job.total is None and total is not None:
        job.total = total() if callable(total) else total
        Job.objects.filter(pk=job.pk, total__isnull=True).update(total=job.total)
    deadline = time.monotonic() + (TIME_BUDGET if time_budget is None else time_budget)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            state = (
                Job.objects.select_for_update()
                .only("resume_after", "counts", "processed", "total")
                .get(pk=job.pk)
            )
            if state.resume_after == FINISHED:
                return state.counts
            done = step(cursor, state.resume_after)
            if done is None:
                return state.counts
            processed = state.processed + done.size
            Job.objects.filter(pk=job.pk).update(
                resume_after=done.resume_after,
                counts=counts_merge(state.counts, done.counts),
                processed=processed,
                progress=min(1.0, processed / state.total) if state.total else 0.0,
                chunks_done=F("chunks_done") + 1,
                heartbeat_at=timezone.now(),
            )
        if time.monotonic() > deadline:
            raise JobContinues


def id_chunks(target_sql: str, target_params: Sequence, apply: Callable[[CursorWrapper, list[int]], Mapping[str, Any]],
              *, size: int = CHUNK_SIZE) -> ChunkStep:
    """A step over the ids a SELECT returns (one column; duplicates allowed), in id order: each
    chunk is the next ``size`` distinct ids after the resume point, handed to ``apply(cursor, ids)``.

    The target query is evaluated again for every chunk, inside its transaction, with the keyset
    condition pushed into it: contacts that left the target meanwhile are not touched, and the
    primary-key index makes each chunk as cheap as the first."""

    def step(cursor: CursorWrapper, after: int | None) -> ChunkDone | None:
        cursor.execute(
            f"SELECT DISTINCT target.id FROM ({target_sql}) AS target(id) WHERE target.id > %s "
            "ORDER BY target.id LIMIT %s",
            [*target_params, after or 0, size],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return None
        return ChunkDone(resume_after=ids[-1], size=len(ids), counts=apply(cursor, ids))

    return step


def single_chunk(apply: Callable[[CursorWrapper], Mapping[str, Any]]) -> ChunkStep:
    """A step for work that is one statement (a full recompute): one chunk that records its result
    with the job, so a redelivery after it committed only reports it."""

    def step(cursor: CursorWrapper, after: Any) -> ChunkDone | None:
        if after is not None:
            return None
        return ChunkDone(resume_after=FINISHED, size=1, counts=apply(cursor))

    return step
