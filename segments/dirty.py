"""Saved-segment memberships that wait: the dirty queue and its drain.

Re-evaluating every saved segment for every contact of every rules-engine batch cost more than all
the rest of a batch (about half of its time at 250k contacts, and growing with the data). So when
contacts change in a batch (``contacts_changed`` with ``deferred=True``), segments only append them
to ``SegmentDirtyContact`` in the batch's transaction, and ``segments_dirty_refresh`` (a task the
engine enqueues during and after its runs, plus a beat safety net) re-evaluates them set-based a moment
later, in chunks that merge repeated contacts. Edits by hand and bulk jobs refresh memberships in
their own transaction (``deferred=False``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from django.db import connection, transaction

from core.locks import SEGMENTS_DIRTY_DRAIN, advisory_xact_try_lock
from segments.services import segment_members_refresh_for_contacts

Changes = Mapping[int, Iterable[str]] | Iterable[str] | None

# The queue is drained in chunks of this many queue rows (repeated contacts merge).
SEGMENTS_DIRTY_CHUNK = 20000
# Longest a queued contact waits for its membership refresh while the rules engine is behind.
SEGMENTS_DIRTY_MAX_WAIT = timedelta(seconds=30)

# Callables answering "is more urgent work behind?" (the rules engine registers its backlog check
# in its AppConfig.ready()): while one says yes, the drain waits, up to SEGMENTS_DIRTY_MAX_WAIT.
DRAIN_YIELDS_TO: list[Callable[[], bool]] = []


def segments_mark_dirty(contact_ids: list[int], changes: Changes = None) -> None:
    """Append ``contact_ids`` to the dirty queue with what changed of them (``contacts_changed``'s
    ``changes``; None: anything) — one INSERT, never waits on a drain. Anonymous profiles are
    left out: no segment holds them (a profile's merge queues the contact it merged into)."""
    ids = sorted({int(pk) for pk in contact_ids})
    if isinstance(changes, Mapping):
        texts = [",".join(sorted(changes[pk])) if changes.get(pk) is not None else None for pk in ids]
    else:
        text = ",".join(sorted(changes)) if changes is not None else None
        texts = [text] * len(ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO automation_segmentdirtycontact (contact_id, marked_at, changes) "
            "SELECT t.id, now(), t.changes FROM unnest(%s::bigint[], %s::text[]) AS t(id, changes) "
            "JOIN contacts_contact c ON c.id = t.id WHERE NOT c.is_anonymous",
            [ids, texts],
        )


def segments_dirty_enqueue() -> None:
    """Enqueue the drain after the current transaction commits."""
    # local import: segments.tasks imports this module (its tasks run the drain)
    from segments.tasks import segments_dirty_refresh_enqueue

    transaction.on_commit(segments_dirty_refresh_enqueue)


def _segments_dirty_chunk(limit: int) -> int | None:
    """Take up to ``limit`` queue rows and re-evaluate their contacts' memberships, in one
    transaction (a SIGKILL puts the rows back). None when another drain holds the lock."""
    with transaction.atomic(), connection.cursor() as cursor:
        if not advisory_xact_try_lock(cursor, SEGMENTS_DIRTY_DRAIN):
            return None
        # Recomputable from the queue and the contacts: no need to wait for the WAL flush.
        cursor.execute("SET LOCAL synchronous_commit = off")
        # one row per contact: what any of its queue rows says changed (NULL, anything, wins)
        cursor.execute(
            """
            WITH taken AS (
                DELETE FROM automation_segmentdirtycontact d
                WHERE d.id IN (SELECT id FROM automation_segmentdirtycontact ORDER BY id LIMIT %s)
                RETURNING d.contact_id, d.changes
            )
            SELECT contact_id, CASE WHEN bool_or(changes IS NULL) THEN NULL ELSE string_agg(changes, ',') END,
                   count(*)
            FROM taken GROUP BY contact_id ORDER BY contact_id
            """,
            [limit],
        )
        rows = cursor.fetchall()
        if rows:
            segment_members_refresh_for_contacts(
                [contact_id for contact_id, _, _ in rows],
                changes={contact_id: None if text is None else set(text.split(",")) for contact_id, text, _ in rows})
        return sum(taken for _, _, taken in rows)


def segments_dirty_count() -> int:
    """Contacts whose saved-segment memberships wait for the drain (a contact queued by several
    batches, or as new and then by its events' batch, counts once)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT contact_id) FROM automation_segmentdirtycontact")
        return cursor.fetchone()[0]


def segments_dirty_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM automation_segmentdirtycontact)")
        return cursor.fetchone()[0]


def _segments_dirty_should_wait() -> bool:
    """While more urgent work is behind the CPU goes to it, as long as no queued contact has
    waited longer than SEGMENTS_DIRTY_MAX_WAIT: the engine enqueues the drain again during and
    after its run, and the beat safety net bounds the wait. Waiting also lets one drain merge the
    contacts of many batches. A stream the engine keeps up with does not make the drain wait: it
    runs beside the batches, each chunk taking what the last one's time let accumulate."""
    if not any(check() for check in DRAIN_YIELDS_TO):
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM automation_segmentdirtycontact WHERE marked_at < now() - %s)",
            [SEGMENTS_DIRTY_MAX_WAIT],
        )
        return cursor.fetchone()[0]


def segments_dirty_refresh(*, chunk: int = SEGMENTS_DIRTY_CHUNK, time_budget: float = 60.0) -> dict:
    """Drain the dirty queue: re-evaluate the queued contacts against every saved segment until the
    queue is empty, another drain holds the lock, or the budget is spent."""
    deadline = time.monotonic() + time_budget
    totals = {"chunks": 0, "rows": 0, "busy": False, "more": False, "deferred": False}
    if _segments_dirty_should_wait():
        totals["deferred"] = True
        return totals
    while True:
        taken = _segments_dirty_chunk(chunk)
        if taken is None:
            totals["busy"] = True
            return totals
        if taken:
            totals["chunks"] += 1
            totals["rows"] += taken
        elif not segments_dirty_exists():
            # Checked after our lock was released: a drain refused while we held it is covered.
            return totals
        if taken and _segments_dirty_should_wait():
            # the engine fell behind meanwhile: it enqueues the drain again when its run ends
            totals["deferred"] = True
            return totals
        if time.monotonic() > deadline:
            totals["more"] = segments_dirty_exists()
            return totals


def on_contacts_changed(sender, contact_ids: list[int], deferred: bool = False, **kwargs) -> None:
    """``contacts_changed`` receiver: queue the contacts (rules-engine batches) or refresh now."""
    if deferred:
        segments_mark_dirty(contact_ids, kwargs.get("changes"))
    else:
        segment_members_refresh_for_contacts(contact_ids, changes=kwargs.get("changes"))
