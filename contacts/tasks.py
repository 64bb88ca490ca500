"""Background jobs of the contacts area: bulk actions over a filtered list, CSV imports and
exports, and the Tags page's counts.

Thin tasks: the work is set-based SQL in ``ContactQuerySet`` and ``contacts.csvio``, run chunk by
chunk on the resumable runner (``core.jobs.runner``)."""

from __future__ import annotations

import pghistory
from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http import QueryDict
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from contacts import csvio
from contacts.filters import ContactFilterSet
from contacts.merging import MERGE_CHUNK, profiles_merge_due
from contacts.models import Contact, ContactImport
from contacts.services import tag_stats_counted_live, tag_stats_refresh
from contacts.signals import TAG_CHANGES, contacts_changed_send
from core import locks
from core.jobs import CHUNK_SIZE, ChunkDone, JobContinues, id_chunks, job_run_chunks, job_task, single_chunk
from core.jobs.files import FilePiece, file_chunks, job_file_finish
from core.models import Job
from core.roles import MARKETER

# Contacts per chunk of a bulk action: one transaction each, so progress moves, a killed worker
# loses one chunk at most, and no single statement holds locks on a million rows.
BULK_CHUNK = CHUNK_SIZE
# Contacts per chunk of a CSV export: one keyset query on the primary key (with each contact's tags
# aggregated) and about 1-2 MB of CSV per chunk, so a million contacts is a hundred commits and a
# killed worker redoes one chunk at most.
EXPORT_CHUNK = 10_000


def bulk_queryset(params: dict):
    """The contacts a bulk action targets: the ids picked, or every contact matching the list's filters."""
    if params.get("ids"):
        ids = [int(value) for value in str(params["ids"]).split(",") if value.strip().isdigit()]
        return Contact.objects.filter(pk__in=ids)
    filterset = ContactFilterSet(QueryDict(params.get("query", "")), queryset=Contact.objects.all())
    return filterset.qs.order_by()


def bulk_apply(queryset, params: dict, *, user=None) -> int:
    """Apply the bulk action to the queryset's contacts (set-based). Tag changes tell the areas
    that derive from tags (tiers, segment memberships) in the same transaction."""
    action = params["action"]
    with transaction.atomic():
        # read before the change: a "remove tag" may take contacts out of a filtered queryset
        tag_actions = ("add_tag", "set_tag_score", "remove_tag")
        contact_ids = list(queryset.values_list("pk", flat=True)) if action in tag_actions else []
        if action == "add_tag":
            changed = queryset.add_tag(params["tag"], int(params.get("score") or 1), user=user, source="bulk")
        elif action == "set_tag_score":
            changed = queryset.set_tag_score(params["tag"], int(params["score"]), user=user, source="bulk")
        elif action == "remove_tag":
            changed = queryset.remove_tag(params["tag"], user=user, source="bulk")
        elif action == "assign_owner":
            owner_id = params.get("owner")
            owner = get_user_model().objects.get(pk=int(owner_id)) if owner_id not in (None, "", "none") else None
            return queryset.assign_owner(owner)
        else:
            raise ValueError(f"Unknown bulk action {action!r}")
        if changed:
            contacts_changed_send(contact_ids, sender=bulk_apply, changes=TAG_CHANGES)
    return changed


@job_task("contacts_bulk", roles=(MARKETER,), label=_("Bulk action on contacts"))
def contacts_bulk_task(job: Job, progress) -> dict:
    """A bulk action over every contact the list's filters match, BULK_CHUNK contacts (in id
    order) per chunk; a redelivered job resumes after its last committed chunk."""
    params = job.params
    user = job.created_by
    queryset = bulk_queryset(params)
    target_sql, target_params = queryset.ids_sql()

    def apply(cursor, ids: list[int]) -> dict:
        return {"matched": len(ids), "changed": bulk_apply(Contact.objects.filter(pk__in=ids), params, user=user)}

    with pghistory.context(job=job.pk, user=getattr(user, "pk", None), action=params["action"]):
        counts = job_run_chunks(job, id_chunks(target_sql, target_params, apply, size=BULK_CHUNK),
                                total=queryset.count)
    return {"matched": counts.get("matched", 0), "changed": counts.get("changed", 0)}


@job_task("contacts_export", roles=(MARKETER,), label=_("Contact export"))
def contacts_export_task(job: Job, progress) -> dict:
    """The CSV of every contact the list's filters match (or of the ticked ones), EXPORT_CHUNK
    contacts in id order per chunk, appended to the job's file (``core.jobs.files``): the resume
    point is the last contact id and the file's length, committed with the chunk's progress."""
    queryset = bulk_queryset(job.params)

    def produce(after_id: int | None) -> FilePiece | None:
        chunk = csvio.contacts_export_chunk(queryset, after_id=after_id, size=EXPORT_CHUNK)
        return FilePiece(*chunk) if chunk is not None else None

    counts = job_run_chunks(job, file_chunks(job.pk, produce, head=csvio.EXPORT_HEAD), total=queryset.count)
    stamp = timezone.localtime(job.created_at).strftime("%Y%m%d-%H%M")
    rows = counts.get("rows", 0)
    return {"contacts": rows, "file": job_file_finish(job.pk, name=f"contacts-{stamp}.csv",
                                                      content_type="text/csv; charset=utf-8", rows=rows)}


@job_task("import_contacts", roles=(MARKETER,), label=_("Contact import"))
def contacts_import_task(job: Job, progress) -> dict:
    """Import the file chunk by chunk (CHUNK_ROWS rows each; the resume point is the last row
    number): each chunk's contacts, tags and error-report lines commit with the resume point."""
    contact_import = ContactImport.objects.get(pk=job.params["import_id"])
    user = job.created_by
    chunks = None  # one pass over the file per delivery, re-opened if the point moved elsewhere
    position = None

    def step(cursor, after: int | None) -> ChunkDone | None:
        nonlocal chunks, position
        if chunks is None or after != position:
            if after is None:
                ContactImport.objects.filter(pk=contact_import.pk).update(errors=[])
            chunks = csvio.contacts_import_chunks(contact_import, after_row=after or 0)
        chunk = next(chunks, None)
        if chunk is None:
            return None
        written = csvio.contacts_import_write(chunk, user=user)
        csvio.contacts_import_errors_add(contact_import, chunk.errors)
        position = chunk.last_row
        return ChunkDone(resume_after=chunk.last_row, size=chunk.rows, counts=written)

    try:
        # the error report's problems, in the language of whoever started the import (English if unknown)
        with pghistory.context(job=job.pk, import_id=contact_import.pk), \
                translation.override(job.params.get("language") or "en"):
            counts = job_run_chunks(job, step, total=lambda: _import_data_rows(contact_import))
        return csvio.contacts_import_finish(contact_import, counts)
    except JobContinues:
        raise
    except Exception:
        ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.FAILED)
        raise


def _import_data_rows(contact_import: ContactImport) -> int:
    """The file's non-empty data rows (the progress bar's total)."""
    reader = csvio.sniff_reader(contact_import.content)
    next(reader, None)
    return sum(1 for row in reader if any(cell.strip() for cell in row))


@shared_task(name="contacts.tasks.tag_stats_refresh_task")
def tag_stats_refresh_task() -> int | None:
    """Recount the Tags page's snapshot (beat, every 5 minutes). Nothing to do on a small database,
    whose page counts live; None when another recount is running (one at a time: the lock)."""
    if tag_stats_counted_live():
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        if not locks.advisory_xact_try_lock(cursor, locks.TAG_STATS):
            return None
        return tag_stats_refresh()


@job_task("tag_stats", roles=(MARKETER,), label=_("Tag statistics recount"))
def tag_stats_recount_task(job: Job, progress) -> dict:
    """"Recount now" on the Tags page, as a Job the page shows; it waits for a scheduled recount
    that is running, then counts."""
    def recount(cursor) -> dict:
        locks.advisory_xact_lock(cursor, locks.TAG_STATS)
        return {"tags": tag_stats_refresh()}

    return job_run_chunks(job, single_chunk(recount), total=1)


@shared_task(name="contacts.tasks.profiles_merge_task")
def profiles_merge_task() -> int:
    """Merge the queued anonymous profiles (``contacts.merging``), chunk by chunk until none wait."""
    done = 0
    while True:
        merged = profiles_merge_due()
        done += merged
        if merged < MERGE_CHUNK:
            return done
