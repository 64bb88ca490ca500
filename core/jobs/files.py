"""Files that jobs write for people to download (the contact list's CSV export).

A job appends to ``<MH_EXPORT_DIR>/job-<id>.part`` one chunk at a time on the resumable runner
(``file_chunks``) and renames it to ``job-<id>`` once the last chunk is in (``job_file_finish``).
Each chunk's resume point holds, beside the key of its last row, the file's length after it, and
the runner commits that point together with the chunk's progress. A worker killed after writing
a chunk but before its commit leaves bytes the job row knows nothing of: the next chunk first cuts
the file back to the committed length, so no row is lost or written twice. Every chunk is fsynced
before its commit, so a committed length is never longer than what survives a crash.

A finished file is kept ``MH_EXPORT_RETENTION_DAYS`` days after its last write, then removed by
``job_files_remove_expired`` (beat, hourly); the job's page then says the file has expired.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.backends.utils import CursorWrapper
from django.urls import reverse
from django.utils import timezone

from core.jobs.runner import ChunkDone, ChunkStep
from core.models import Job

FILE_PREFIX = "job-"
PARTIAL_SUFFIX = ".part"


class JobFileLost(Exception):  # noqa: N818 (named for what happened, like FileNotFoundError)
    """The partial file of a job that resumes is gone or shorter than its committed length."""


@dataclass(frozen=True)
class FilePiece:
    """What one chunk adds to the file: its bytes, the key of its last row, and how many rows."""

    data: bytes
    after: Any
    rows: int


def job_file_path(job_id: int, *, partial: bool = False) -> Path:
    return Path(settings.MH_EXPORT_DIR) / f"{FILE_PREFIX}{job_id}{PARTIAL_SUFFIX if partial else ''}"


def file_append(path: Path, *, at: int, data: bytes) -> int:
    """Write ``data`` at byte ``at`` of ``path`` (created if new), cutting off whatever followed
    ``at`` (an uncommitted chunk of a delivery that died); fsynced. Returns the new length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(descriptor).st_size < at:
            raise JobFileLost(f"{path.name} holds fewer than the {at} bytes its job committed; run the job again.")
        os.ftruncate(descriptor, at)
        os.lseek(descriptor, at, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return at + len(data)


def file_chunks(job_id: int, produce: Callable[[Any], FilePiece | None], *, head: bytes = b"") -> ChunkStep:
    """A runner step writing the job's file: ``produce(after)`` gives the next piece after the
    key ``after`` (None: from the start), or None when no rows are left. The first chunk writes
    ``head`` (a BOM and a header line) before its rows, even when there are none.

    The resume point is ``{"after": key, "bytes": length}``; ``counts`` add up ``rows``."""
    partial = job_file_path(job_id, partial=True)

    def step(cursor: CursorWrapper, resume: dict | None) -> ChunkDone | None:
        if resume is not None and job_file_path(job_id).exists():
            return None  # renamed already: a delivery died between the rename and marking the job done
        after, length = (resume["after"], resume["bytes"]) if resume is not None else (None, 0)
        piece = produce(after)
        if piece is None:
            if resume is not None:
                return None
            piece = FilePiece(b"", None, 0)
        data = head + piece.data if resume is None else piece.data
        length = file_append(partial, at=length, data=data)
        return ChunkDone(
            resume_after={"after": piece.after if piece.rows else after, "bytes": length},
            size=piece.rows,
            counts={"rows": piece.rows},
        )

    return step


def job_file_finish(job_id: int, *, name: str, content_type: str, rows: int) -> dict[str, Any]:
    """Give the finished file its final name; returns what the job's result keeps of it (the name
    people download it under, its type, size and rows). Safe to call again after it succeeded."""
    final = job_file_path(job_id)
    partial = job_file_path(job_id, partial=True)
    if partial.exists():
        os.replace(partial, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
    return {"name": name, "content_type": content_type, "bytes": final.stat().st_size, "rows": rows}


@dataclass(frozen=True)
class JobFile:
    """A done job's file as its page shows it."""

    job_id: int
    name: str
    content_type: str
    size: int
    rows: int
    expires_at: datetime
    available: bool

    @property
    def path(self) -> Path:
        return job_file_path(self.job_id)

    @property
    def url(self) -> str:
        return reverse("jobs:download", kwargs={"job_id": self.job_id})

    @property
    def format(self) -> str:
        """ "CSV" for ``contacts-….csv``: what the download button names."""
        return Path(self.name).suffix.lstrip(".").upper()

    @property
    def retention_days(self) -> int:
        return int(settings.MH_EXPORT_RETENTION_DAYS)


def job_file(job: Job) -> JobFile | None:
    """The file a done job wrote (None for jobs that write none), and whether it can still be
    downloaded: it exists and is younger than the retention (the hourly removal may lag)."""
    meta = (job.result or {}).get("file") if job.status == Job.Status.DONE else None
    if not isinstance(meta, dict):
        return None
    retention = timedelta(days=settings.MH_EXPORT_RETENTION_DAYS)
    try:
        written = datetime.fromtimestamp(job_file_path(job.pk).stat().st_mtime, tz=timezone.get_current_timezone())
    except FileNotFoundError:
        written = None
    expires_at = (written or job.finished_at or timezone.now()) + retention
    return JobFile(
        job_id=job.pk,
        name=str(meta.get("name") or f"job-{job.pk}"),
        content_type=str(meta.get("content_type") or "application/octet-stream"),
        size=int(meta.get("bytes") or 0),
        rows=int(meta.get("rows") or 0),
        expires_at=expires_at,
        available=written is not None and expires_at > timezone.now(),
    )


def job_files_remove_expired(*, now: float | None = None) -> int:
    """Remove the jobs' files, finished or partial (of a failed job), last written more than
    MH_EXPORT_RETENTION_DAYS ago. Returns how many were removed."""
    directory = Path(settings.MH_EXPORT_DIR)
    if not directory.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - settings.MH_EXPORT_RETENTION_DAYS * 24 * 3600
    removed = 0
    for path in directory.glob(f"{FILE_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # removed meanwhile (a second run, a rename)
    return removed
