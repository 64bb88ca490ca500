"""Anonymous profiles and their merge into a contact.

A tracked visitor who has not identified yet is an anonymous profile: a contact row with
``is_anonymous`` (``Contact.objects`` does not see it) whose rules, tags and scores work as for
anyone. When the visitor identifies, the tracking intake links its ids to the contact and queues
the merge (``profiles_merge_request``, in the identify's transaction); the worker's
``profiles_merge_due`` runs ``profiles_merge``, which moves the profiles into their contacts in one
transaction, set-based for any number of (profile, contact) pairs:

- both rows are locked (ids in order, as the rules engine locks them; the profile then for
  update), and a pair whose profile is gone or is not anonymous any more is skipped — so a merge repeated, or raced by a second
  identify of the same visitor, does nothing the second time;
- this module moves what the contacts area owns: tag scores add up (one ``merge`` history row per
  tag, tied to the merge's timeline entry), notes move, consents never do, empty fields and
  unknown properties of the contact are filled from the profile;
- ``contacts_merging`` tells the areas above to move their rows (events, ledgers, stages, …);
- the profile rows are deleted: a table an area forgot holds a foreign key without cascade and
  makes the whole transaction fail rather than lose or half-move anything;
- ``contacts_changed`` (deferred, as the rules engine sends it) brings tiers up to date and queues
  the contacts' segment memberships.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from contacts.models import Suppression, anonymous_email, email_hash
from contacts.signals import contacts_changed_send, contacts_merge_prepare, contacts_merging, contacts_purging
from core.outbox import OUTBOX_TABLE

MERGE_EVENT_TYPE = "visitor_merged"


@dataclass
class Merged:
    """One profile merged into a contact."""

    profile_id: int
    contact_id: int
    events: int = 0
    tags: dict[str, int] = field(default_factory=dict)


def anonymous_profiles_ensure(emails: Sequence[str]) -> dict[str, int]:
    """The anonymous profiles with these addresses (``anonymous_email``), created when missing;
    address → contact id. A profile whose id was erased under GDPR is not re-created (its
    address's hash is suppressed) and is absent from the result."""
    wanted = sorted(set(emails))
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        # Existing profiles are read first and only the missing inserted: an INSERT … ON CONFLICT
        # that meets a profile the rules engine is updating would wait for the engine's whole batch.
        cursor.execute("SELECT email, id FROM contacts_contact WHERE email = ANY(%s::text[])", [wanted])
        found = dict(cursor.fetchall())
        new = [email for email in wanted if email not in found]
        if not new:
            return found
        cursor.execute(
            """
            WITH t AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS t(email, email_hash))
            INSERT INTO contacts_contact (email, first_name, last_name, phone, country, city, properties,
                                          score, lead_status, lead_status_reason, is_anonymous,
                                          created_at, updated_at)
            SELECT t.email, '', '', '', '', '', '{}'::jsonb, 0, 'new', '', true, now(), now()
            FROM t WHERE NOT EXISTS (SELECT 1 FROM contacts_suppression s WHERE s.email_hash = t.email_hash)
            ORDER BY t.email
            ON CONFLICT (email) DO NOTHING
            RETURNING email, id
            """,
            [new, [email_hash(email) for email in new]],
        )
        found.update(cursor.fetchall())
        missing = [email for email in new if email not in found]
        if missing:
            # A concurrent request created them after this statement's snapshot: its insert waited
            # for that one and skipped, and the statement's SELECT could not see the row. A new
            # statement does (an erased visitor's address stays missing: it was never created).
            cursor.execute("SELECT email, id FROM contacts_contact WHERE email = ANY(%s)", [missing])
            found.update(cursor.fetchall())
        return found


def identities_suppress(kinds_and_values: Sequence[tuple[str, str]]) -> None:
    """Erased people's tracked ids: their anonymous profiles are never created again."""
    now = timezone.now()
    Suppression.objects.bulk_create(
        [Suppression(email_hash=email_hash(anonymous_email(kind, value)), created_at=now, reason="gdpr_erasure")
         for kind, value in kinds_and_values],
        ignore_conflicts=True,
    )


MERGE_CHUNK = 200


def profiles_merge_request(pairs: Sequence[tuple[int, int]], *, label: dict[int, str] | None = None) -> int:
    """Queue merges, in the caller's transaction (the worker does them right after commit, and
    beat sweeps what a lost message left): the request that links a visitor never waits for the
    rules engine's batches, which lock the same rows. A profile already queued keeps its first
    target. Returns how many were queued now."""
    pairs = sorted({(int(p), int(c)) for p, c in pairs if p != c})
    if not pairs:
        return 0
    label = label or {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO contacts_profilemerge (profile_id, contact_id, label, requested_at)
            SELECT p, c, l, now() FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS t(p, c, l) ORDER BY p
            ON CONFLICT (profile_id) DO NOTHING
            """,
            [[p for p, _ in pairs], [c for _, c in pairs], [label.get(p, "")[:200] for p, _ in pairs]],
        )
        queued = cursor.rowcount
    if queued:
        transaction.on_commit(_merge_enqueue)
    return queued


def _merge_enqueue() -> None:
    from contacts.tasks import profiles_merge_task  # local import: contacts.tasks imports this module

    profiles_merge_task.delay()


MERGE_RETRY_SECONDS = 1.0


def profiles_merge_due(*, limit: int = MERGE_CHUNK) -> int:
    """Merge up to ``limit`` queued profiles, oldest first, in one transaction with the removal
    of their queue rows (a worker killed mid-way leaves them queued: the merge happens once, later).
    Queue rows another worker holds are skipped, and so are merges whose profile or contact another
    transaction is writing (a rules engine's batch, a request storing events): they stay queued
    and are tried again in a second, so the worker never sits waiting for the engine's batches.
    Returns how many queue rows were done."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT profile_id, contact_id, label FROM contacts_profilemerge
            ORDER BY requested_at, profile_id LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            [limit],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0
        _, busy = _merge([(p, c) for p, c, _ in rows], label={p: label for p, _, label in rows}, wait=False)
        done = [p for p, _, _ in rows if p not in busy]
        cursor.execute("DELETE FROM contacts_profilemerge WHERE profile_id = ANY(%s::bigint[])", [done])
        if busy:
            transaction.on_commit(_merge_retry_later)
        return len(done)


def _merge_retry_later() -> None:
    from contacts.tasks import profiles_merge_task  # local import: contacts.tasks imports this module

    profiles_merge_task.apply_async(countdown=MERGE_RETRY_SECONDS)


def profiles_merge(pairs: Sequence[tuple[int, int]], *, label: dict[int, str] | None = None) -> list[Merged]:
    """Merge each anonymous profile into its contact (``(profile_id, contact_id)`` pairs), in the
    caller's transaction, waiting for rows other transactions hold. ``label``: profile id → the
    visitor id to name on the timeline. Returns what was merged (pairs already merged or not
    mergeable are left out)."""
    return _merge(pairs, label=label, wait=True)[0]


def _merge(pairs: Sequence[tuple[int, int]], *, label: dict[int, str] | None, wait: bool) -> tuple[list[Merged], set[int]]:
    """``profiles_merge``; with ``wait=False`` the pairs whose profile or contact another
    transaction holds are left alone and named (the second value: their profiles)."""
    pairs = sorted({(int(p), int(c)) for p, c in pairs if p != c})
    if not pairs:
        return [], set()
    label = label or {}
    skip = "" if wait else " SKIP LOCKED"
    with transaction.atomic(), connection.cursor() as cursor:
        ids = sorted({pk for pair in pairs for pk in pair})
        prepared = contacts_merge_prepare.send(sender=Merged, cursor=cursor, profile_ids=sorted({p for p, _ in pairs}),
                                               wait=wait)
        busy_ids: set[int] = {int(pk) for _, response in prepared for pk in (response or ())}
        # In id order, as the rules engine locks contacts; then the profiles (deleted below) for
        # update: a request still writing events to one holds it FOR KEY SHARE and is waited for
        # (or skipped), while the contacts stay open to such writes (no deadlock between the two).
        cursor.execute(
            f"SELECT id, is_anonymous FROM contacts_contact WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE{skip}",
            [ids],
        )
        found = dict(cursor.fetchall())
        if not wait and len(found) < len(ids):
            # skipped: held by another transaction (those that do not exist any more are no merge)
            cursor.execute("SELECT id FROM contacts_contact WHERE id = ANY(%s::bigint[])", [sorted(set(ids) - set(found))])
            busy_ids |= {row[0] for row in cursor.fetchall()}
        candidates = sorted(p for p, _ in pairs if found.get(p))
        cursor.execute(
            f"SELECT id FROM contacts_contact WHERE id = ANY(%s::bigint[]) AND is_anonymous ORDER BY id FOR UPDATE{skip}",
            [candidates],
        )
        locked = {row[0] for row in cursor.fetchall()}
        if not wait:
            busy_ids |= set(candidates) - locked  # a request still writing to the profile
        found.update(dict.fromkeys(set(candidates) - locked - busy_ids, False))
        busy = {p for p, c in pairs if p in busy_ids or c in busy_ids}
        # A profile merges once, into one contact; a contact that is itself being merged away is no target.
        taken: set[int] = set()
        kept: list[tuple[int, int]] = []
        for profile_id, contact_id in pairs:
            if (profile_id not in busy and found.get(profile_id) is True and profile_id in locked
                    and contact_id in found and profile_id not in taken):
                kept.append((profile_id, contact_id))
                taken.add(profile_id)
        kept = [(p, c) for p, c in kept if c not in taken]
        if not kept:
            return [], busy
        profiles = [p for p, _ in kept]
        contacts = [c for _, c in kept]
        merged = {p: Merged(profile_id=p, contact_id=c) for p, c in kept}
        pair_params = {"profiles": profiles, "contacts": contacts}
        pairs_sql = "SELECT * FROM unnest(%(profiles)s::bigint[], %(contacts)s::bigint[]) AS m(profile_id, contact_id)"

        # What the timeline says: the profile's events and tag scores, before they move.
        cursor.execute(
            f"""
            SELECT m.profile_id, count(e.id) FROM ({pairs_sql}) m
            LEFT JOIN automation_event e ON e.contact_id = m.profile_id GROUP BY m.profile_id
            """,
            pair_params,
        )
        for profile_id, events in cursor.fetchall():
            merged[profile_id].events = events
        cursor.execute(
            f"""
            SELECT m.profile_id, t.name, ct.score FROM ({pairs_sql}) m
            JOIN contacts_contacttag ct ON ct.contact_id = m.profile_id JOIN contacts_tag t ON t.id = ct.tag_id
            ORDER BY m.profile_id, ct.score DESC, t.name
            """,
            pair_params,
        )
        for profile_id, name, score in cursor.fetchall():
            merged[profile_id].tags[name] = score

        # The timeline entry: one event per merge on the contact (not processed by rules).
        now = timezone.now()
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [now, now])
        cursor.execute(
            f"""
            INSERT INTO automation_event (id, event_id, contact_id, type, occurred_at, received_at, properties, value)
            SELECT nextval('automation_event_id_seq'), 'merge:' || m.profile_id, m.contact_id, %(type)s, %(now)s,
                   %(now)s, x.properties, NULL
            FROM ({pairs_sql}) m JOIN jsonb_to_recordset(%(details)s::jsonb) AS x(profile_id bigint, properties jsonb)
                 ON x.profile_id = m.profile_id
            RETURNING id, contact_id
            """,
            {**pair_params, "type": MERGE_EVENT_TYPE, "now": now, "details": json.dumps([
                {"profile_id": item.profile_id, "properties": {
                    "visitor": label.get(item.profile_id, ""), "events": item.events, "tags": item.tags}}
                for item in merged.values()
            ])},
        )
        merge_event = dict((contact_id, event_pk) for event_pk, contact_id in cursor.fetchall())

        # Tag scores add up; the history says so once per tag, under the merge's timeline entry.
        cursor.execute(
            f"""
            WITH m AS ({pairs_sql}),
            -- several profiles (a visitor's ids) may merge into one contact: add them up first
            given AS (
                SELECT m.contact_id, p.tag_id, sum(p.score)::int AS score, min(p.first_assigned_at) AS first_at,
                       max(p.last_assigned_at) AS last_at
                FROM m JOIN contacts_contacttag p ON p.contact_id = m.profile_id GROUP BY 1, 2
            ),
            moved AS (
                INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
                SELECT contact_id, tag_id, score, first_at, last_at FROM given ORDER BY contact_id, tag_id
                ON CONFLICT (contact_id, tag_id) DO UPDATE
                    SET score = ct.score + EXCLUDED.score,
                        first_assigned_at = least(ct.first_assigned_at, EXCLUDED.first_assigned_at),
                        last_assigned_at = greatest(ct.last_assigned_at, EXCLUDED.last_assigned_at)
                RETURNING ct.contact_id, ct.tag_id, ct.score
            )
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT mv.contact_id, mv.tag_id, g.score, mv.score, 'visitor', NULL, NULL, x.event_pk::bigint, %(now)s
            FROM moved mv JOIN given g ON g.contact_id = mv.contact_id AND g.tag_id = mv.tag_id
            LEFT JOIN jsonb_each_text(%(events)s::jsonb) AS x(contact_id, event_pk) ON x.contact_id::bigint = mv.contact_id
            """,
            {**pair_params, "now": now, "events": json.dumps({str(c): e for c, e in merge_event.items()})},
        )
        # The profile's own tag history is summed up by the merge rows; its consents never move.
        for table in ("contacts_tagscorechange", "contacts_contacttag", "contacts_consentchange", "contacts_consent"):
            cursor.execute(f"DELETE FROM {table} WHERE contact_id = ANY(%s::bigint[])", [profiles])
        cursor.execute(
            f"UPDATE contacts_note n SET contact_id = m.contact_id FROM ({pairs_sql}) m WHERE n.contact_id = m.profile_id",
            pair_params,
        )
        # Fields the contact lacks come from the profile (identify traits sent before the email).
        cursor.execute(
            f"""
            UPDATE contacts_contact c SET
                first_name = coalesce(nullif(c.first_name, ''), p.first_name),
                last_name = coalesce(nullif(c.last_name, ''), p.last_name),
                phone = coalesce(nullif(c.phone, ''), p.phone),
                country = coalesce(nullif(c.country, ''), p.country),
                city = coalesce(nullif(c.city, ''), p.city),
                birth_date = coalesce(c.birth_date, p.birth_date),
                properties = p.properties || c.properties,
                last_activity_at = greatest(c.last_activity_at, p.last_activity_at),
                updated_at = %(now)s
            FROM ({pairs_sql}) m JOIN contacts_contact p ON p.id = m.profile_id
            WHERE c.id = m.contact_id
            """,
            {**pair_params, "now": now},
        )
        contacts_merging.send(sender=Merged, cursor=cursor, pairs_sql=pairs_sql, params=pair_params)
        _outbox_drop(cursor, profiles)
        cursor.execute("DELETE FROM contacts_contact WHERE id = ANY(%s::bigint[])", [profiles])
        # deferred, as after a batch of the rules engine: tiers now, memberships by the segments' drain
        contacts_changed_send(contacts, deferred=True, sender=Merged)
    return list(merged.values()), busy


def anonymous_profiles_purge(*, before: dt.datetime) -> int:
    """Delete, set-based, the anonymous profiles with no activity since ``before`` (with
    everything the areas keep about them, as an erasure does). → profiles deleted."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT array_agg(id) FROM contacts_contact
            WHERE is_anonymous AND coalesce(last_activity_at, created_at) < %s
            """,
            [before],
        )
        ids = cursor.fetchone()[0] or []
        if not ids:
            return 0
        return contacts_purge(cursor, ids, anonymous_only=True)


def contacts_purge(cursor: CursorWrapper, contact_ids: Sequence[int], *, anonymous_only: bool = False) -> int:
    """Delete these contacts, set-based, with everything the areas keep about them (each area's
    ``contacts_purging`` receiver deletes its rows) and their messages not sent yet, in the
    caller's transaction; ``anonymous_only``: anonymous profiles only. → contacts deleted."""
    ids = list(contact_ids)
    if not ids:
        return 0
    contacts_purging.send(sender=Merged, cursor=cursor, contact_ids=ids)
    _outbox_drop(cursor, ids)
    for table in ("contacts_tagscorechange", "contacts_contacttag", "contacts_consentchange", "contacts_consent",
                  "contacts_note"):
        cursor.execute(f"DELETE FROM {table} WHERE contact_id = ANY(%s::bigint[])", [ids])
    cursor.execute("DELETE FROM contacts_contact WHERE id = ANY(%s::bigint[])" + (" AND is_anonymous" if anonymous_only else ""),
                   [ids])
    return cursor.rowcount


def _outbox_drop(cursor: CursorWrapper, profile_ids: list[int]) -> None:
    """Messages about a profile never go out (the fan-out skips anonymous profiles; once the
    profile is gone it could not tell)."""
    cursor.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE contact_id = ANY(%s::bigint[]) AND dispatched_at IS NULL",
                   [profile_ids])


# --- for the areas' receivers ---------------------------------------------------------------------
def rows_move(cursor: CursorWrapper, tables: Sequence[str], *, pairs_sql: str, params: dict) -> None:
    """Re-point the profiles' rows of ``tables`` (a ``contact_id`` column) to their contacts."""
    for table in tables:
        cursor.execute(
            f"UPDATE {table} x SET contact_id = m.contact_id FROM ({pairs_sql}) m WHERE x.contact_id = m.profile_id",
            params,
        )


def rows_delete(cursor: CursorWrapper, tables: Sequence[str], *, contact_ids: Sequence[int]) -> None:
    """Delete the rows of ``tables`` (a ``contact_id`` column) of these contacts."""
    for table in tables:
        cursor.execute(f"DELETE FROM {table} WHERE contact_id = ANY(%s::bigint[])", [list(contact_ids)])
