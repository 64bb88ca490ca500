"""Segment background work: "Refresh now" (a Job with progress), the CSV export of a segment's
members (a Job writing a file to download), the scheduled full refresh and the drain of the
memberships queued by the rules engine (``segments.dirty``)."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from contacts import csvio
from contacts.models import Contact
from core.jobs import Progress, job_run_chunks, job_task, single_chunk
from core.jobs.files import FilePiece, file_chunks, job_file_finish
from core.models import Job
from core.roles import MARKETER
from segments.dirty import segments_dirty_exists, segments_dirty_refresh
from segments.models import Segment
from segments.services import segment_members_queryset, segment_refresh, segments_refresh_due

logger = logging.getLogger(__name__)

# Members per chunk of a CSV export, as the contact list's export (``contacts.tasks.EXPORT_CHUNK``):
# one keyset query with each contact's tags aggregated, about 1-2 MB of CSV, so a million members
# are a hundred commits and a killed worker redoes one chunk at most.
EXPORT_CHUNK = 10_000
# Characters of the segment's name in the export's file name (the rest of the name is dropped).
FILE_SLUG_LENGTH = 50


@job_task("segment_refresh", roles=(MARKETER,), label=_("Segment refresh"))
def segment_refresh_task(job: Job, progress: Progress) -> dict:
    """"Refresh now": the one-statement refresh as a single chunk of the job runner (a versioned
    recompute; its result commits with the job's resume point)."""

    def refresh(cursor) -> dict:
        count = segment_refresh(int(job.params["segment_id"]))
        return {"deleted": True} if count is None else {"members": count}

    return job_run_chunks(job, single_chunk(refresh), total=1)


class SegmentGone(Exception):  # noqa: N818 (named for what happened, like FileNotFoundError)
    """The segment of an export was deleted before its file was finished."""


def segment_export_members(segment: Segment, *, after_id: int | None = None) -> QuerySet:
    """The members an export writes, those after contact ``after_id``: what the segment's page
    counts and lists (``segment_members_queryset``) — the stored membership once the worker has
    refreshed it, the live definition until then. A segment "for sending" has email consent in its
    definition (``effective_definition``), so its members are the ones with consent when the
    membership was computed, as its count says.

    The keyset condition is repeated on the membership row (in the same ``filter``, so on the same
    join): PostgreSQL does not carry ``contact.id > n`` over to ``contact_id``, and without it every
    chunk reads the memberships from the lowest contact id up to the resume point — at 250,000
    members of 500,000 contacts the last chunk took 470 ms instead of 100 ms, and a million members
    would read some 50 million index entries over the export instead of one pass."""
    if segment.refreshed_at is None:
        return segment_members_queryset(segment)
    return Contact.objects.filter(segment_memberships__segment=segment,
                                  segment_memberships__contact_id__gt=after_id or 0)


def segment_export_file_name(segment: Segment, started_at: dt.datetime) -> str:
    """``segment-<name as a slug, or the id>-YYYYMMDD-HHMM.csv``, the time the export was asked for."""
    # NFKD leaves "ł" whole, so slugify would drop it ("Wrocław" → "wrocaw")
    slug = slugify(segment.name.replace("ł", "l").replace("Ł", "L"))[:FILE_SLUG_LENGTH].strip("-_")
    return f"segment-{slug or segment.pk}-{timezone.localtime(started_at).strftime('%Y%m%d-%H%M')}.csv"


@job_task("segment_export", roles=(MARKETER,), label=_("Segment export"))
def segment_export_task(job: Job, progress: Progress) -> dict:
    """The CSV of the segment's members (``segment_export_members``) in the contact export's format
    (``contacts.csvio``: BOM, header, every cell formula-guarded), EXPORT_CHUNK members in contact
    id order per chunk, appended to the job's file (``core.jobs.files``): the resume point is the
    last contact id and the file's length, committed with the chunk's progress."""
    segment_id = int(job.params["segment_id"])
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise SegmentGone(f"Segment {segment_id} was deleted; there is nothing to export.")

    def produce(after_id: int | None) -> FilePiece | None:
        members = segment_export_members(segment, after_id=after_id)
        chunk = csvio.contacts_export_chunk(members, after_id=after_id, size=EXPORT_CHUNK)
        return FilePiece(*chunk) if chunk is not None else None

    counts = job_run_chunks(job, file_chunks(job.pk, produce, head=csvio.EXPORT_HEAD),
                            total=segment_members_queryset(segment).count)
    # a deletion mid-way empties the stored membership: that is no export of the segment
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise SegmentGone(f"Segment {segment_id} was deleted while its members were being exported.")
    rows = counts.get("rows", 0)
    return {"contacts": rows, "file": job_file_finish(
        job.pk, name=segment_export_file_name(segment, job.created_at), content_type="text/csv; charset=utf-8",
        rows=rows)}


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
