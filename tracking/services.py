"""Tracking workflows: sources (issue, revoke) and taking in a request's messages.

A request's messages go through the same functions as ``/api/v1/events`` and ``/api/v1/contacts``:
``event_check`` (each event message is checked by it in ``messages_validate``) and ``events_store``
(what ``events_ingest`` does: idempotent on ``event_id``, rules applied by the worker) and
``contacts_upsert``. What is added here is only what Segment's
model needs on top: resolving ``userId``/``anonymousId`` through the identities table to a contact
or to the visitor's anonymous profile, and queueing the merge of a profile an identify links.

Order: the events are validated before anything is written; visitors seen for the first time get
their anonymous profile and link in a short transaction of their own (``_visitors_prepare``); then
ONE transaction stores the rest — one identity lookup, one receipts claim (identify, alias, group),
one contacts upsert, one identities insert, one ``events_store`` call — and after it one statement
writes the debugger's rows, hourly counts and cap.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from automation.ingestion import CleanEvent, events_store
from contacts.merging import (
    anonymous_profiles_ensure,
    anonymous_profiles_purge,
    identities_suppress,
    profiles_merge_request,
    rows_delete,
    rows_move,
)
from contacts.models import anonymous_email, normalize_email
from contacts.services import contacts_upsert, suppressed_emails
from core.validators import email_is_valid
from tracking.intake import EVENT_MESSAGE_TYPES, Message
from tracking.models import Identity, MessageLog, Source

logger = logging.getLogger(__name__)


# --- sources --------------------------------------------------------------------------------------
def clean_origin(value: str) -> str:
    """An origin as browsers send it: scheme://host[:port], no path, lower-case."""
    text = (value or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        # in the active language: the Sources form shows it (the API answers in English)
        raise ValueError(gettext("%(value)s is not an origin like https://shop.example.com") % {"value": repr(value.strip())})
    return f"{parts.scheme}://{parts.netloc}".lower()


def source_issue(*, name: str, kind: str, allowed_origins: list[str] | None = None, created_by: Any = None) -> tuple[Source, str]:
    """Create a source; returns it and its write key (shown once, stored hashed)."""
    origins = sorted({clean_origin(origin) for origin in allowed_origins or []})
    raw_key = Source.new_key()
    source = Source.objects.create(
        name=name.strip(), kind=kind, allowed_origins=origins, key_prefix=raw_key[:12],
        key_hash=Source.hash_key(raw_key), created_by=created_by,
    )
    return source, raw_key


def source_revoke(source: Source) -> bool:
    """Revoke a source's key; False when it was revoked already."""
    return bool(Source.objects.filter(pk=source.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()))


def source_for_key(raw_key: str) -> Source | None:
    if not raw_key:
        return None
    return Source.objects.active().filter(key_hash=Source.hash_key(raw_key)).first()


def source_to_api(source: Source, *, write_key: str | None = None) -> dict:
    data = {
        "id": source.pk, "name": source.name, "kind": source.kind, "key_prefix": source.key_prefix,
        "allowed_origins": list(source.allowed_origins), "created_at": source.created_at.isoformat(),
        "revoked_at": source.revoked_at.isoformat() if source.revoked_at else None,
    }
    if write_key:
        data["write_key"] = write_key
    return data


# --- taking messages in ---------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one message (for the response's counts and the debugger)."""

    message: Message
    status: str = MessageLog.ACCEPTED
    reason: str = ""
    contact_id: int | None = None
    event_id: str = ""


@dataclass
class TrackResult:
    accepted: int = 0
    duplicates: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


class _Links:
    """userId / anonymousId → the contact or anonymous profile they are linked to, read once per
    request and grown as this request links more ids (``hold_profiles`` makes the profiles stay)."""

    def __init__(self, messages: list[Message]) -> None:
        user_ids = sorted({m.user_id for m in messages if m.user_id} | {m.previous_id for m in messages if m.previous_id})
        anonymous_ids = sorted({m.anonymous_id for m in messages if m.anonymous_id} | {m.previous_id for m in messages if m.previous_id})
        self.known: dict[tuple[str, str], tuple[int, str, bool]] = {}
        self.new: dict[tuple[str, str], int] = {}
        self.merges: set[tuple[int, int]] = set()  # (anonymous profile, contact) to merge
        self.labels: dict[int, str] = {}  # anonymous profile → the visitor id the timeline names
        self.erased: set[tuple[str, str]] = set()  # ids an identify named for an erased person
        self.user_emails: dict[str, str] = {}  # a userId → the valid address it is ("" when it is none)
        if user_ids or anonymous_ids:
            self._read(user_ids, anonymous_ids)

    def _read(self, user_ids: list[str], anonymous_ids: list[str]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT i.kind, i.value, c.id, c.email, c.is_anonymous FROM tracking_identity i
                JOIN contacts_contact c ON c.id = i.contact_id
                WHERE (i.kind = 'user' AND i.value = ANY(%s)) OR (i.kind = 'anonymous' AND i.value = ANY(%s))
                """,
                [user_ids, anonymous_ids],
            )
            for kind, value, contact_id, email, anonymous in cursor.fetchall():
                self.known[(kind, value)] = (contact_id, email, anonymous)
                if anonymous and (kind == Identity.KIND_ANONYMOUS or contact_id not in self.labels):
                    self.labels[contact_id] = value

    def hold_profiles(self) -> None:
        """Keep the anonymous profiles this request writes to from being merged away until it
        commits (``FOR KEY SHARE``: a merge deletes the profile, so it waits; the contact it merges
        into stays writable). A profile a concurrent merge already deleted: its ids are read again
        and name the contact now."""
        profiles = sorted({linked[0] for linked in self.known.values() if linked[2]})
        if not profiles:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM contacts_contact WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE",
                           [profiles])
            gone = set(profiles) - {row[0] for row in cursor.fetchall()}
        if gone:
            stale = [key for key, linked in self.known.items() if linked[0] in gone]
            for key in stale:
                del self.known[key]
            self._read([v for k, v in stale if k == Identity.KIND_USER], [v for k, v in stale if k == Identity.KIND_ANONYMOUS])

    def resolve(self, message: Message) -> tuple[int | None, str, bool]:
        """(contact id or None when not created yet, email, anonymous) a message is about, or
        (None, "", False) when its visitor is linked to nobody yet."""
        for kind, value in ((Identity.KIND_USER, message.user_id), (Identity.KIND_ANONYMOUS, message.anonymous_id)):
            if value and (kind, value) in self.known:
                return self.known[(kind, value)]
        # A shop that uses the email as its userId needs no identify first.
        if message.user_id and "@" in message.user_id:
            email = self.user_emails.get(message.user_id)
            if email is None:
                email = normalize_email(message.user_id)
                email = self.user_emails[message.user_id] = email if email_is_valid(email) else ""
            if email:
                return None, email, False
        return None, "", False

    def link(self, kind: str, value: str, contact_id: int, email: str, anonymous: bool = False) -> None:
        """Link an id to a contact; an id linked to an anonymous profile is re-linked (its profile
        merges into the contact — see ``merges``)."""
        if not value:
            return
        current = self.known.get((kind, value))
        if current is None or (current[2] and not anonymous and current[0] != contact_id):
            if current is not None:
                self.merges.add((current[0], contact_id))
            self.known[(kind, value)] = (contact_id, email, anonymous)
            self.new[(kind, value)] = contact_id


def _claim_receipts(keys: list[str], now: dt.datetime) -> set[str]:
    """Insert the receipts of identify/alias/group messages; the keys that were new."""
    if not keys:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_messagereceipt (key, received_at)
            SELECT k, %s FROM unnest(%s::text[]) AS k ORDER BY k
            ON CONFLICT (key) DO NOTHING RETURNING key
            """,
            [now, sorted(set(keys))],
        )
        return {row[0] for row in cursor.fetchall()}


def _upsert(items: list[dict], *, source: Source) -> dict[str, int]:
    """contacts_upsert for identify/group messages; email → contact id. Emails erased under GDPR
    are not re-created unless the item grants a consent (as ``/api/v1/contacts`` does)."""
    if not items:
        return {}
    blocked = suppressed_emails([item["email"] for item in items])
    allowed = [item for item in items if item["email"] not in blocked or any((item.get("consents") or {}).values())]
    results = contacts_upsert(allowed, source=f"tracking: {source.name}"[:100])
    return {item["email"]: result.contact_id for item, result in zip(allowed, results, strict=True)}


def _profile_updates(items: list[tuple[int, dict]]) -> None:
    """identify traits (without an email) and group ids of visitors known only by their anonymous
    profile: fields set, properties merged key by key — one statement."""
    if not items:
        return
    rows = []
    for contact_id, fields in items:
        row = {"id": contact_id, "properties": fields.get("properties") or {}}
        for name in ("first_name", "last_name", "phone", "country", "city"):
            row[name] = fields.get(name) or None
        row["birth_date"] = fields["birth_date"].isoformat() if fields.get("birth_date") else None
        rows.append(row)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_contact c SET
                first_name = coalesce(x.first_name, c.first_name), last_name = coalesce(x.last_name, c.last_name),
                phone = coalesce(x.phone, c.phone), country = coalesce(x.country, c.country),
                city = coalesce(x.city, c.city), birth_date = coalesce(x.birth_date, c.birth_date),
                properties = c.properties || x.properties, updated_at = now()
            FROM jsonb_to_recordset(%s::jsonb) AS x(id bigint, first_name text, last_name text, phone text,
                 country text, city text, birth_date date, properties jsonb)
            WHERE c.id = x.id AND c.is_anonymous
            """,
            [json.dumps(rows)],
        )


def _insert_links(links: _Links) -> None:
    pending = [(kind, value, contact_id) for (kind, value), contact_id in links.new.items() if contact_id]
    links.new.clear()
    if not pending:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_identity AS i (kind, value, contact_id, created_at)
            SELECT kind, value, contact_id, now() FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS t(kind, value, contact_id)
            ORDER BY kind, value
            ON CONFLICT (kind, value) DO UPDATE SET contact_id = EXCLUDED.contact_id
                WHERE i.contact_id IN (SELECT id FROM contacts_contact WHERE is_anonymous)
            """,
            [[p[0] for p in pending], [p[1] for p in pending], [p[2] for p in pending]],
        )


def _visitors_prepare(messages: list[Message]) -> None:
    """Anonymous visitors seen for the first time (an anonymousId alone, on events, that no
    identify or alias of the request names) get their profile and its link in a short
    transaction of their own, before the request's: concurrent requests carrying the same new
    visitor then wait for that insert only, not for each other's whole batch. Runs after
    validation, so a refused request still stores nothing; the request's transaction finds them
    linked (an erased visitor's profile is never created)."""
    named = {v for m in messages if m.type in ("identify", "alias") for v in (m.anonymous_id, m.previous_id) if v}
    wanted = sorted({m.anonymous_id for m in messages if m.anonymous_id and not m.user_id
                     and m.type in EVENT_MESSAGE_TYPES and m.anonymous_id not in named})
    if not wanted:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM tracking_identity WHERE kind = 'anonymous' AND value = ANY(%s)", [wanted])
        linked = {row[0] for row in cursor.fetchall()}
    new = [value for value in wanted if value not in linked]
    if not new:
        return
    emails = {value: anonymous_email(Identity.KIND_ANONYMOUS, value) for value in new}
    with transaction.atomic():
        # Committed without waiting for the disk: the request's own (synchronous) commit comes
        # after it and makes it durable too (the log is flushed in order), and a crash before that
        # answers the request with no 200 — a profile left behind is found and used by the retry.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        profiles = anonymous_profiles_ensure(list(emails.values()))
        rows = [(value, profiles[email]) for value, email in emails.items() if email in profiles]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO tracking_identity (kind, value, contact_id, created_at)
                SELECT 'anonymous', v, c, now() FROM unnest(%s::text[], %s::bigint[]) AS t(v, c) ORDER BY v
                ON CONFLICT (kind, value) DO NOTHING
                """,
                [[v for v, _ in rows], [c for _, c in rows]],
            )


def _visitor(message: Message) -> tuple[str, str]:
    """The id a visitor's anonymous profile is keyed by: the anonymousId, else the userId."""
    if message.anonymous_id:
        return Identity.KIND_ANONYMOUS, message.anonymous_id
    return Identity.KIND_USER, message.user_id


def _apply(source: Source, messages: list[Message], now: dt.datetime) -> TrackResult:
    result = TrackResult()
    outcomes = [Outcome(message) for message in messages]
    result.outcomes = outcomes
    # Repeats inside the request: the first one counts.
    seen: set[str] = set()
    for outcome in outcomes:
        if outcome.message.key in seen:
            outcome.status = MessageLog.DUPLICATE
        seen.add(outcome.message.key)
    live = [o for o in outcomes if o.status != MessageLog.DUPLICATE]
    profile_keys = [o.message.key for o in live if o.message.type not in EVENT_MESSAGE_TYPES]
    fresh = _claim_receipts(profile_keys, now)
    # (track/page/screen messages sent before are told by the events' own receipts, when stored below)
    for outcome in live:
        if outcome.message.type not in EVENT_MESSAGE_TYPES and outcome.message.key not in fresh:
            outcome.status = MessageLog.DUPLICATE
    work = [o for o in outcomes if o.status == MessageLog.ACCEPTED]
    links = _Links([o.message for o in work])
    # 1. identify with an email, and alias: who is who (and which anonymous profiles merge).
    _apply_identities(source, work, links)
    # 2. Visitors still linked to nobody get (or keep) their anonymous profile; ids an identify
    #    named for an erased person never build one.
    if links.erased:
        identities_suppress(sorted(links.erased))
    _ensure_profiles(work, links)
    _insert_links(links)
    # 3. The profiles of ids now linked to a contact merge into it: queued, for the worker (the
    #    ids name the contact from now on, so nothing more reaches the profile).
    merges = sorted(links.merges)
    if merges:
        profiles_merge_request(merges, label=links.labels)
        for outcome in work:
            if outcome.message.type in ("identify", "alias") and outcome.contact_id and any(
                    contact_id == outcome.contact_id for _, contact_id in merges):
                outcome.reason = "linked the visitor: its anonymous profile merges into the contact"
    links.hold_profiles()
    # 4. Profile fields without an email (identify traits, group) and the events.
    updates: list[tuple[int, dict]] = []
    known_updates: list[tuple[Outcome, dict]] = []
    event_items: list[CleanEvent] = []
    event_outcomes: list[Outcome] = []
    for outcome in work:
        message = outcome.message
        if message.type == "alias" or (message.type == "identify" and message.email):
            continue
        contact_id, email, anonymous = links.resolve(message)
        if not email:
            outcome.reason = "this visitor was erased at the person's request (GDPR); dropped"
            continue
        outcome.contact_id = contact_id
        if anonymous:
            outcome.reason = "reached the visitor's anonymous profile"
        if message.type in EVENT_MESSAGE_TYPES:
            outcome.event_id = message.key
            # each key's event is this request's own and goes out once (repeats are duplicates)
            event = message.event
            assert event is not None  # messages_validate gives every event message its event
            event.email = email
            event_items.append(event)
            event_outcomes.append(outcome)
            continue
        if message.type == "identify":
            fields = {k: v for k, v in message.contact_fields.items() if k != "email"}
        else:  # group
            fields = {"properties": {"group_id": message.group_id, "group_traits": message.properties}}
        if anonymous and contact_id:
            fields.pop("consents", None)  # an anonymous profile never brings consents
            updates.append((contact_id, fields))
        else:
            known_updates.append((outcome, {**fields, "email": email}))
    _profile_updates(updates)
    if known_updates:
        ids = _upsert([item for _, item in known_updates], source=source)
        for outcome, item in known_updates:
            outcome.contact_id = ids.get(item["email"])
    if event_items:
        ingest = events_store(event_items, now=now, stored_ids=True)
        if ingest.suppressed:
            logger.info("tracking: %s events of erased people dropped", ingest.suppressed)
        for outcome, event in zip(event_outcomes, event_items, strict=True):
            if event.event_id not in ingest.stored_ids and event.email not in ingest.suppressed_emails:
                # its messageId was stored before: it became no event and reached nobody now
                outcome.status, outcome.reason, outcome.event_id, outcome.contact_id = MessageLog.DUPLICATE, "", "", None
            elif outcome.contact_id is None:
                # named by its email alone: its id came back with the stored events
                outcome.contact_id = ingest.stored_ids.get(event.event_id)
    result.accepted = sum(1 for o in outcomes if o.status == MessageLog.ACCEPTED)
    result.duplicates = sum(1 for o in outcomes if o.status == MessageLog.DUPLICATE)
    return result


def _apply_identities(source: Source, work: list[Outcome], links: _Links) -> None:
    """identify with an email upserts the contact (one call) and links the message's ids to it;
    alias links ``userId`` and ``previousId`` to one person."""
    with_email = [o for o in work if o.message.type == "identify" and o.message.email]
    ids = _upsert([dict(o.message.contact_fields) for o in with_email], source=source)
    for outcome in with_email:
        message = outcome.message
        contact_id = ids.get(message.email)
        if contact_id is None:
            outcome.reason = "this email was erased at the person's request (GDPR); not re-created"
            links.erased.update((kind, value) for kind, value in (
                (Identity.KIND_USER, message.user_id), (Identity.KIND_ANONYMOUS, message.anonymous_id)) if value)
            continue
        outcome.contact_id = contact_id
        links.link(Identity.KIND_USER, message.user_id, contact_id, message.email)
        links.link(Identity.KIND_ANONYMOUS, message.anonymous_id, contact_id, message.email)
    # A message naming both a userId and an anonymousId (analytics.js after an identify) says they
    # are one person: an anonymousId not linked to a contact yet joins the userId's contact.
    for outcome in work:
        message = outcome.message
        if not (message.user_id and message.anonymous_id):
            continue
        by_user = links.known.get((Identity.KIND_USER, message.user_id))
        if by_user and not by_user[2]:
            links.link(Identity.KIND_ANONYMOUS, message.anonymous_id, by_user[0], by_user[1])
    for outcome in work:
        message = outcome.message
        if message.type != "alias":
            continue
        current = links.resolve(message)
        previous = links.resolve(Message(index=-1, type="alias", message_id="", key="", user_id=message.previous_id,
                                         anonymous_id=message.previous_id, timestamp=message.timestamp))
        # The person is whoever of the two is a known contact; else the new id's profile.
        person = current if current[1] and not current[2] else previous if previous[1] and not previous[2] else current
        contact_id, email, anonymous = person
        if not email or contact_id is None:
            continue  # neither id is linked yet: _ensure_profiles gives them one profile
        outcome.contact_id = contact_id
        # previousId is whatever the visitor was known by: an anonymousId or an earlier userId.
        for kind, value in ((Identity.KIND_USER, message.user_id), (Identity.KIND_ANONYMOUS, message.anonymous_id),
                            (Identity.KIND_USER, message.previous_id), (Identity.KIND_ANONYMOUS, message.previous_id)):
            links.link(kind, value, contact_id, email, anonymous)


def _ensure_profiles(work: list[Outcome], links: _Links) -> None:
    """An anonymous profile for every visitor no id links to anybody (one statement), and the
    message's ids linked to it."""
    needed: dict[str, tuple[str, str]] = {}
    pending: list[Message] = []
    for outcome in work:
        message = outcome.message
        if message.type == "identify" and message.email:
            continue
        if links.resolve(message)[1] or {(Identity.KIND_USER, message.user_id),
                                          (Identity.KIND_ANONYMOUS, message.anonymous_id)} & links.erased:
            continue
        kind, value = _visitor(message)
        needed[anonymous_email(kind, value)] = (kind, value)
        pending.append(message)
    if not needed:
        return
    profiles = anonymous_profiles_ensure(list(needed))
    for message in pending:
        if links.resolve(message)[1]:
            continue  # linked by an earlier message of this request
        email = anonymous_email(*_visitor(message))
        contact_id = profiles.get(email)
        if contact_id is None:
            continue  # an erased visitor: not re-created
        for kind, value in ((Identity.KIND_ANONYMOUS, message.anonymous_id), (Identity.KIND_USER, message.user_id),
                            (Identity.KIND_ANONYMOUS, message.previous_id)):
            links.link(kind, value, contact_id, email, True)
        links.labels.setdefault(contact_id, message.anonymous_id or message.user_id)


def messages_ingest(source: Source, messages: list[Message], *, now: dt.datetime | None = None) -> TrackResult:
    """Store a request's messages, valid by ``messages_validate``, all-or-nothing."""
    now = now or timezone.now()
    _visitors_prepare(messages)
    for attempt in range(4):
        try:
            with transaction.atomic():
                return _apply(source, messages, now)
        except OperationalError as exc:
            # Two requests merging the same visitor can deadlock (each waits for a row the other
            # locked); the loser's transaction was rolled back whole, so running it again is safe —
            # and then it finds the visitor merged.
            sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
            if sqlstate not in ("40P01", "40001") or attempt == 3 or connection.in_atomic_block:
                raise
            logger.warning("tracking: retry after %s (attempt %s)", sqlstate, attempt + 1)
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# --- the debugger ---------------------------------------------------------------------------------
def log_request(source: Source, *, outcomes: list[Outcome] | None = None, rejected: list[dict] | None = None,
                now: dt.datetime | None = None) -> None:
    """Record a request's messages in the source's log (capped at the last ``LOG_KEEP``) and its
    hourly counts. ``rejected``: one dict per message (``message_type``, ``message_id``,
    ``reason``) of a request that stored nothing."""
    now = now or timezone.now()
    outcomes = outcomes or []
    rejected = rejected or []
    duplicates = sum(1 for outcome in outcomes if outcome.status == MessageLog.DUPLICATE)
    accepted = len(outcomes) - duplicates
    rejected_count = len(rejected)
    # Only the last LOG_KEEP messages of a request can survive the cap: build no more rows than those.
    keep_rejected = rejected[-MessageLog.LOG_KEEP:]
    keep_outcomes = outcomes[-(MessageLog.LOG_KEEP - len(keep_rejected)):] if len(keep_rejected) < MessageLog.LOG_KEEP else []
    rows: list[dict] = []
    for outcome in keep_outcomes:
        message = outcome.message
        rows.append({
            "message_type": message.type, "message_id": message.message_id[:200], "label": message.label[:200],
            "status": outcome.status, "reason": outcome.reason,
            "event_type": message.event_type if outcome.event_id else "", "event_id": outcome.event_id,
            "contact_id": outcome.contact_id, "visitor": (message.user_id or message.anonymous_id)[:200],
        })
    for item in keep_rejected:
        rows.append({"message_type": "", "message_id": "", "label": "", "reason": "", "event_type": "", "event_id": "",
                     "contact_id": None, "visitor": "", **item, "status": MessageLog.REJECTED})
    try:
        # One statement: the rows (a contact a concurrent merge deleted since is named by nobody),
        # the hourly counts, and the cap — the rows before this request's beyond the last LOG_KEEP
        # (so a source keeps at most twice that between two requests; the page shows LOG_KEEP).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                WITH logged AS (
                    INSERT INTO tracking_messagelog (source_id, received_at, message_type, message_id, label, status,
                                                     reason, event_type, event_id, contact_id, visitor)
                    SELECT %(source)s, %(now)s, x.message_type, x.message_id, x.label, x.status, x.reason, x.event_type,
                           x.event_id, (SELECT c.id FROM contacts_contact c WHERE c.id = x.contact_id), x.visitor
                    FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
                        message_type text, message_id text, label text, status text, reason text, event_type text,
                        event_id text, contact_id bigint, visitor text, ord int)
                    ORDER BY x.ord
                    RETURNING 1
                ), counted AS (
                    INSERT INTO tracking_hourlycount AS h (source_id, hour, accepted, duplicates, rejected)
                    VALUES (%(source)s, date_trunc('hour', %(now)s::timestamptz), %(accepted)s, %(duplicates)s, %(rejected)s)
                    ON CONFLICT (source_id, hour) DO UPDATE SET accepted = h.accepted + EXCLUDED.accepted,
                        duplicates = h.duplicates + EXCLUDED.duplicates, rejected = h.rejected + EXCLUDED.rejected
                    RETURNING 1
                )
                DELETE FROM tracking_messagelog WHERE source_id = %(source)s AND id < (
                    SELECT id FROM tracking_messagelog WHERE source_id = %(source)s ORDER BY id DESC OFFSET %(keep)s LIMIT 1)
                """,
                {"source": source.pk, "now": now, "accepted": accepted,
                 "rows": json.dumps([{**row, "ord": position} for position, row in enumerate(rows)]),
                 "duplicates": duplicates, "rejected": rejected_count, "keep": MessageLog.LOG_KEEP - 1},
            )
    except Exception:  # the debugger must never cost the shop its messages
        logger.exception("tracking: could not write the debugger log of source %s", source.pk)


# --- retention, merges, erasure -------------------------------------------------------------------
def tracking_purge(*, now: dt.datetime | None = None) -> dict:
    """Delete, set-based, the anonymous profiles of visitors with no activity for
    ``MH_ANONYMOUS_RETENTION_DAYS`` (with their events, tags and identities), and hourly counts
    older than that."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=int(settings.MH_ANONYMOUS_RETENTION_DAYS))
    with transaction.atomic(), connection.cursor() as cursor:
        profiles = anonymous_profiles_purge(before=cutoff)
        cursor.execute("DELETE FROM tracking_hourlycount WHERE hour < %s", [cutoff])
        hours = cursor.rowcount
    return {"anonymous_profiles": profiles, "hourly_counts": hours}


def on_contacts_merging(sender: Any, *, cursor: Any, pairs_sql: str, params: dict, **kwargs: Any) -> None:
    """A merged profile's ids now name the contact; its debugger rows point there too."""
    rows_move(cursor, ("tracking_identity", "tracking_messagelog"), pairs_sql=pairs_sql, params=params)


def on_contacts_purging(sender: Any, *, cursor: Any, contact_ids: list[int], **kwargs: Any) -> None:
    rows_delete(cursor, ("tracking_identity",), contact_ids=contact_ids)
    cursor.execute("UPDATE tracking_messagelog SET contact_id = NULL WHERE contact_id = ANY(%s::bigint[])", [contact_ids])


def on_contacts_erasing(sender: Any, *, contact_ids: list[int], **kwargs: Any) -> None:
    """An erased person's tracked ids go with them (cascade) and never build a profile again."""
    identities_suppress(list(Identity.objects.filter(contact_id__in=contact_ids).values_list("kind", "value")))


def contact_identities(contact: Any) -> dict:
    """The contact API's ``user_id`` (the latest linked) and ``anonymous_ids`` (oldest first)."""
    rows = list(Identity.objects.filter(contact_id=contact.pk).order_by("created_at", "id").values_list("kind", "value"))
    user_ids = [value for kind, value in rows if kind == Identity.KIND_USER]
    return {"user_id": user_ids[-1] if user_ids else None,
            "anonymous_ids": [value for kind, value in rows if kind == Identity.KIND_ANONYMOUS]}
