"""Background jobs of the contacts area: bulk actions over a filtered list, CSV imports and the
Tags page's counts.

Thin tasks: the work is set-based SQL in ``ContactQuerySet`` and ``contacts.csvio``."""

from __future__ import annotations

from contextlib import contextmanager

import pghistory
from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Max, Min
from django.http import QueryDict

from contacts.models import Contact, ContactImport
from contacts.signals import contacts_changed_send
from core.jobs import job_task
from core.models import Job

# Contacts are processed in id ranges of this width, one transaction each, so progress moves and
# no single statement holds locks on a million rows.
ID_RANGE = 20_000


def bulk_queryset(params: dict):
    """The contacts a bulk action targets: the ids picked, or every contact matching the list's filters."""
    from contacts.filters import ContactFilterSet

    if params.get("ids"):
        ids = [int(value) for value in str(params["ids"]).split(",") if value.strip().isdigit()]
        return Contact.objects.filter(pk__in=ids)
    filterset = ContactFilterSet(QueryDict(params.get("query", "")), queryset=Contact.objects.all())
    return filterset.qs.order_by()


def bulk_apply(queryset, params: dict, *, user=None) -> int:
    action = params["action"]
    if action == "add_tag":
        return queryset.add_tag(params["tag"], int(params.get("score") or 1), user=user, source="bulk")
    if action == "remove_tag":
        return queryset.remove_tag(params["tag"], user=user, source="bulk")
    if action == "assign_owner":
        owner_id = params.get("owner")
        owner = get_user_model().objects.get(pk=int(owner_id)) if owner_id not in (None, "", "none") else None
        return queryset.assign_owner(owner)
    raise ValueError(f"Unknown bulk action {action!r}")


@job_task("contacts_bulk")
def contacts_bulk_task(job: Job, progress) -> dict:
    params = job.params
    user = job.created_by
    queryset = bulk_queryset(params)
    bounds = queryset.aggregate(low=Min("pk"), high=Max("pk"))
    total = queryset.count()
    progress.update(0, total)
    changed = 0
    if total:
        with pghistory.context(job=job.pk, user=getattr(user, "pk", None), action=params["action"]):
            low, high = bounds["low"], bounds["high"]
            for start in range(low, high + 1, ID_RANGE):
                part = queryset.filter(pk__gte=start, pk__lt=start + ID_RANGE)
                changed += bulk_apply(part, params, user=user)
                if params["action"] in ("add_tag", "remove_tag"):
                    # tiers and segment memberships follow the new tag scores, range by range
                    contacts_changed_send(list(part.values_list("pk", flat=True)), sender=bulk_apply)
                done = min(total, round(total * (start + ID_RANGE - low) / (high - low + 1)))
                progress.update(done, total)
    return {"matched": total, "changed": changed}


@job_task("import_contacts")
def contacts_import_task(job: Job, progress) -> dict:
    from contacts.csvio import contacts_import_run

    contact_import = ContactImport.objects.get(pk=job.params["import_id"])
    try:
        with pghistory.context(job=job.pk, import_id=contact_import.pk):
            return contacts_import_run(contact_import, progress, user=job.created_by)
    except Exception:
        ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.FAILED)
        raise


# One recount at a time: the scheduled one skips while another runs; "Recount now" waits for it.
TAG_STATS_LOCK_KEY = 731_004_301


@contextmanager
def _tag_stats_lock(*, wait: bool):
    """Hold the recount lock (a session advisory lock) and yield True, or yield False when
    ``wait`` is off and another recount holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {'pg_advisory_lock' if wait else 'pg_try_advisory_lock'}(%s)", [TAG_STATS_LOCK_KEY])
        held = wait or cursor.fetchone()[0]
        try:
            yield held
        finally:
            if held:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [TAG_STATS_LOCK_KEY])


@shared_task(name="contacts.tasks.tag_stats_refresh_task")
def tag_stats_refresh_task() -> int | None:
    """Recount the Tags page's snapshot (beat, every 5 minutes). Nothing to do on a small database,
    whose page counts live; None when another recount was running."""
    from contacts.services import tag_stats_counted_live, tag_stats_refresh

    if tag_stats_counted_live():
        return 0
    with _tag_stats_lock(wait=False) as held:
        return tag_stats_refresh() if held else None


@job_task("tag_stats")
def tag_stats_recount_task(job: Job, progress) -> dict:
    """"Recount now" on the Tags page, as a Job the page shows."""
    from contacts.services import tag_stats_refresh

    progress.update(0, 1)
    with _tag_stats_lock(wait=True):
        counted = tag_stats_refresh()
    progress.update(1, 1)
    return {"tags": counted}
