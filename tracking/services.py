"""Tracking workflows: sources (issue, revoke) and taking in a request's messages.

A request's messages are stored in ONE transaction, through the same functions as
``/api/v1/events`` and ``/api/v1/contacts``: ``events_ingest`` (idempotent on ``event_id``, rules
applied by the worker) and ``contacts_upsert``. What is added here is only what Segment's model
needs on top: resolving ``userId``/``anonymousId`` to an email through the identities table, and
holding a message whose visitor is not linked to an email yet until an identify links it.

Statements per request, whatever its size: one identity lookup, one receipts claim (identify,
alias, group), one contacts upsert (two statements), one identities insert, one held-message
delete (replay) and insert, one ``events_ingest`` call; then, after commit, three small
statements for the debugger (log rows, cap, hourly counts).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from automation.ingestion import IngestValidationError, events_ingest
from contacts.models import normalize_email
from contacts.services import contacts_upsert, suppressed_emails
from core.validators import email_is_valid
from tracking.intake import EVENT_MESSAGE_TYPES, Message, TrackValidationError
from tracking.models import Identity, MessageLog, Source

logger = logging.getLogger(__name__)


# --- sources --------------------------------------------------------------------------------------
def clean_origin(value: str) -> str:
    """An origin as browsers send it: scheme://host[:port], no path, lower-case."""
    text = (value or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ValueError(f"{value.strip()!r} is not an origin like https://shop.example.com")
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
    """userId / anonymousId → (contact id, email), read once per request and grown as this
    request's identifies link more ids."""

    def __init__(self, messages: list[Message]) -> None:
        user_ids = sorted({m.user_id for m in messages if m.user_id} | {m.previous_id for m in messages if m.previous_id})
        anonymous_ids = sorted({m.anonymous_id for m in messages if m.anonymous_id} | {m.previous_id for m in messages if m.previous_id})
        self.known: dict[tuple[str, str], tuple[int, str]] = {}
        self.new: dict[tuple[str, str], int] = {}
        if user_ids or anonymous_ids:
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    SELECT i.kind, i.value, c.id, c.email FROM tracking_identity i
                    JOIN contacts_contact c ON c.id = i.contact_id
                    WHERE (i.kind = 'user' AND i.value = ANY(%s)) OR (i.kind = 'anonymous' AND i.value = ANY(%s))
                    """,
                    [user_ids, anonymous_ids],
                )
                for kind, value, contact_id, email in cursor.fetchall():
                    self.known[(kind, value)] = (contact_id, email)

    def resolve(self, message: Message) -> tuple[int | None, str]:
        """The contact (id or None when not created yet, email) a message is about, or (None, "")."""
        for kind, value in ((Identity.KIND_USER, message.user_id), (Identity.KIND_ANONYMOUS, message.anonymous_id)):
            if value and (kind, value) in self.known:
                return self.known[(kind, value)]
        # A shop that uses the email as its userId needs no identify first.
        if message.user_id and "@" in message.user_id:
            email = normalize_email(message.user_id)
            if email_is_valid(email):
                return None, email
        return None, ""

    def link(self, kind: str, value: str, contact_id: int, email: str) -> None:
        if value and (kind, value) not in self.known:
            self.known[(kind, value)] = (contact_id, email)
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


def _seen_event_keys(keys: list[str]) -> set[str]:
    """Keys of track/page/screen messages already taken: stored as events or held."""
    if not keys:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT event_id FROM automation_eventreceipt WHERE event_id = ANY(%s)
            UNION ALL SELECT key FROM tracking_heldmessage WHERE key = ANY(%s)
            """,
            [keys, keys],
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


def _hold(messages: list[tuple[Source, Message]], now: dt.datetime) -> set[str]:
    """Store messages whose visitor is unknown; the keys that were new."""
    if not messages:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_heldmessage (key, source_id, user_id, anonymous_id, message, received_at)
            SELECT key, source_id, user_id, anonymous_id, message, %s
            FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::jsonb[])
                 AS t(key, source_id, user_id, anonymous_id, message)
            ORDER BY key
            ON CONFLICT (key) DO NOTHING RETURNING key
            """,
            [now, [m.key for _, m in messages], [s.pk for s, _ in messages], [m.user_id for _, m in messages],
             [m.anonymous_id for _, m in messages], [json.dumps(m.to_json()) for _, m in messages]],
        )
        return {row[0] for row in cursor.fetchall()}


def _release(links: _Links) -> list[tuple[int, Message]]:
    """Take the held messages of the ids this request linked (DELETE … RETURNING: of two
    concurrent identifies of the same visitor, only one gets them)."""
    user_ids = [value for kind, value in links.new if kind == Identity.KIND_USER]
    anonymous_ids = [value for kind, value in links.new if kind == Identity.KIND_ANONYMOUS]
    if not user_ids and not anonymous_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM tracking_heldmessage
            WHERE (user_id <> '' AND user_id = ANY(%s)) OR (anonymous_id <> '' AND anonymous_id = ANY(%s))
            RETURNING source_id, message
            """,
            [user_ids, anonymous_ids],
        )
        rows = cursor.fetchall()
    released = [(source_id, Message.from_json(data if isinstance(data, dict) else json.loads(data))) for source_id, data in rows]
    released.sort(key=lambda pair: pair[1].timestamp)
    return released


def _insert_links(links: _Links) -> None:
    pending = [(kind, value, contact_id) for (kind, value), contact_id in links.new.items() if contact_id]
    if not pending:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_identity (kind, value, contact_id, created_at)
            SELECT kind, value, contact_id, now() FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS t(kind, value, contact_id)
            ORDER BY kind, value
            ON CONFLICT (kind, value) DO NOTHING
            """,
            [[p[0] for p in pending], [p[1] for p in pending], [p[2] for p in pending]],
        )


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
    seen_events = _seen_event_keys([o.message.key for o in live if o.message.type in EVENT_MESSAGE_TYPES])
    for outcome in live:
        key = outcome.message.key
        if (outcome.message.type in EVENT_MESSAGE_TYPES and key in seen_events) or (
            outcome.message.type not in EVENT_MESSAGE_TYPES and key not in fresh
        ):
            outcome.status = MessageLog.DUPLICATE
    work = [(source, o) for o in outcomes if o.status == MessageLog.ACCEPTED]
    links = _Links([o.message for _, o in work])
    event_items: list[dict] = []
    event_outcomes: list[Outcome] = []
    to_hold: list[tuple[Source, Outcome]] = []
    sources = {source.pk: source}  # a replayed message belongs to the source that sent it
    # Each round applies messages, links the ids identifies named, and releases the messages
    # held for those ids; a released alias can link more ids, hence a few rounds.
    for _round in range(4):
        _apply_profiles(work, links)
        for item_source, outcome in work:
            message = outcome.message
            if message.type in EVENT_MESSAGE_TYPES:
                contact_id, email = links.resolve(message)
                if not email:
                    outcome.status = MessageLog.HELD
                else:
                    outcome.contact_id = contact_id
                    outcome.event_id = message.key
                    event_items.append({"event_id": message.key, "email": email, "type": message.event_type,
                                        "occurred_at": message.timestamp, "properties": message.properties})
                    event_outcomes.append(outcome)
            if outcome.status == MessageLog.HELD:
                to_hold.append((item_source, outcome))
        linking = [o for _, o in work if o.message.type in ("identify", "alias") and o.contact_id]
        _insert_links(links)
        released = _release(links)
        if not released:
            break
        if linking:
            linking[0].reason = (f"linked the visitor: {len(released)} earlier message{'s' if len(released) != 1 else ''} "
                                 "applied to the contact")
        missing = {source_id for source_id, _ in released} - set(sources)
        sources.update(Source.objects.in_bulk(list(missing)))
        work = [(sources[source_id], Outcome(message)) for source_id, message in released]
        links = _relink(links, [o.message for _, o in work])
    held_keys = _hold([(s, o.message) for s, o in to_hold], now)
    for _, outcome in to_hold:
        outcome.status = MessageLog.HELD if outcome.message.key in held_keys else MessageLog.DUPLICATE
        outcome.reason = "waiting for an identify that links this visitor to an email" if outcome.status == MessageLog.HELD else ""
    if event_items:
        try:
            ingest = events_ingest(event_items, now=now)
        except IngestValidationError as exc:
            raise TrackValidationError([
                {**error, "index": event_outcomes[error["index"]].message.index,
                 "field": {"occurred_at": "timestamp", "event_id": "messageId"}.get(error["field"], error["field"])}
                for error in exc.errors
                if event_outcomes[error["index"]].message.index >= 0
            ] or exc.errors) from exc
        if ingest.suppressed:
            logger.info("tracking: %s events of erased people dropped", ingest.suppressed)
        _fill_contact_ids(event_outcomes)
    result.accepted = sum(1 for o in outcomes if o.status in (MessageLog.ACCEPTED, MessageLog.HELD))
    result.duplicates = sum(1 for o in outcomes if o.status == MessageLog.DUPLICATE)
    return result


def _relink(links: _Links, messages: list[Message]) -> _Links:
    """The links for replayed messages: the ones known so far plus any others they name."""
    fresh = _Links(messages)
    fresh.known.update(links.known)
    return fresh


def _fill_contact_ids(outcomes: list[Outcome]) -> None:
    """Contacts created by the ingestion itself: look their ids up for the debugger."""
    missing = {o.event_id for o in outcomes if o.contact_id is None}
    if not missing:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, contact_id FROM automation_eventreceipt WHERE event_id = ANY(%s)", [list(missing)])
        by_key = dict(cursor.fetchall())
    for outcome in outcomes:
        if outcome.contact_id is None:
            outcome.contact_id = by_key.get(outcome.event_id)


def _apply_profiles(work: list[tuple[Source, Outcome]], links: _Links) -> None:
    """identify, alias and group: upsert the contacts (one call), link the ids, hold the rest."""
    identifies = [(s, o) for s, o in work if o.message.type == "identify"]
    with_email = [(s, o) for s, o in identifies if o.message.email]
    items_by_source: dict[int, tuple[Source, list[dict]]] = {}
    for item_source, outcome in with_email:
        items_by_source.setdefault(item_source.pk, (item_source, []))[1].append(dict(outcome.message.contact_fields))
    ids: dict[str, int] = {}
    for item_source, items in items_by_source.values():
        ids.update(_upsert(items, source=item_source))
    for _, outcome in with_email:
        message = outcome.message
        contact_id = ids.get(message.email)
        if contact_id is None:
            outcome.status = MessageLog.ACCEPTED
            outcome.reason = "this email was erased at the person's request (GDPR); not re-created"
            continue
        outcome.contact_id = contact_id
        links.link(Identity.KIND_USER, message.user_id, contact_id, message.email)
        links.link(Identity.KIND_ANONYMOUS, message.anonymous_id, contact_id, message.email)
    # Without an email, identify and group update the contact the visitor is linked to.
    updates: list[tuple[Source, Outcome, dict]] = []
    for item_source, outcome in work:
        message = outcome.message
        if message.type == "alias":
            contact_id, email = links.resolve(message)
            if not email:
                previous = Message(index=-1, type="alias", message_id="", key="", user_id=message.previous_id,
                                   anonymous_id=message.previous_id, timestamp=message.timestamp)
                contact_id, email = links.resolve(previous)
                if email and contact_id:
                    links.link(Identity.KIND_USER, message.user_id, contact_id, email)
            elif contact_id:
                # previousId was whatever the visitor was known by: an anonymousId or an earlier userId.
                links.link(Identity.KIND_ANONYMOUS, message.previous_id, contact_id, email)
                links.link(Identity.KIND_USER, message.previous_id, contact_id, email)
            if email and contact_id:
                outcome.contact_id = contact_id
            else:
                outcome.status = MessageLog.HELD
            continue
        if message.type == "identify" and not message.email:
            fields = {k: v for k, v in message.contact_fields.items() if k != "email"}
        elif message.type == "group":
            fields = {"properties": {"group_id": message.group_id, "group_traits": message.properties}}
        else:
            continue
        contact_id, email = links.resolve(message)
        if not email:
            outcome.status = MessageLog.HELD
            continue
        outcome.contact_id = contact_id
        updates.append((item_source, outcome, {**fields, "email": email}))
    by_source: dict[int, tuple[Source, list[dict]]] = {}
    for item_source, _, item in updates:
        by_source.setdefault(item_source.pk, (item_source, []))[1].append(item)
    for item_source, items in by_source.values():
        ids = _upsert(items, source=item_source)
        for update_source, outcome, item in updates:
            if update_source.pk == item_source.pk:
                outcome.contact_id = ids.get(item["email"])


def messages_ingest(source: Source, messages: list[Message], *, now: dt.datetime | None = None) -> TrackResult:
    """Store a request's valid messages all-or-nothing (TrackValidationError stores nothing)."""
    now = now or timezone.now()
    with transaction.atomic():
        result = _apply(source, messages, now)
    return result


# --- the debugger ---------------------------------------------------------------------------------
def log_request(source: Source, *, outcomes: list[Outcome] | None = None, rejected: list[dict] | None = None,
                now: dt.datetime | None = None) -> None:
    """Record a request's messages in the source's log (capped at the last ``LOG_KEEP``) and its
    hourly counts. ``rejected``: one dict per message (``message_type``, ``message_id``,
    ``reason``) of a request that stored nothing."""
    now = now or timezone.now()
    rows: list[MessageLog] = []
    accepted = duplicates = rejected_count = 0
    for outcome in outcomes or []:
        message = outcome.message
        if outcome.status == MessageLog.DUPLICATE:
            duplicates += 1
        else:
            accepted += 1
        rows.append(MessageLog(
            source=source, received_at=now, message_type=message.type, message_id=message.message_id[:200],
            label=message.label[:200], status=outcome.status, reason=outcome.reason,
            event_type=message.event_type if outcome.event_id else "", event_id=outcome.event_id,
            contact_id=outcome.contact_id, visitor=(message.user_id or message.anonymous_id)[:200],
        ))
    for item in rejected or []:
        rejected_count += 1
        rows.append(MessageLog(source=source, received_at=now, status=MessageLog.REJECTED, **item))
    # Only the last LOG_KEEP rows of a request can survive the cap: write no more than those.
    rows = rows[-MessageLog.LOG_KEEP:]
    try:
        with transaction.atomic():
            MessageLog.objects.bulk_create(rows)
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    DELETE FROM tracking_messagelog WHERE source_id = %s AND id < (
                        SELECT id FROM tracking_messagelog WHERE source_id = %s ORDER BY id DESC OFFSET %s LIMIT 1)
                    """,
                    [source.pk, source.pk, MessageLog.LOG_KEEP - 1],
                )
                cursor.execute(
                    """
                    INSERT INTO tracking_hourlycount AS h (source_id, hour, accepted, duplicates, rejected)
                    VALUES (%s, date_trunc('hour', %s::timestamptz), %s, %s, %s)
                    ON CONFLICT (source_id, hour) DO UPDATE SET accepted = h.accepted + EXCLUDED.accepted,
                        duplicates = h.duplicates + EXCLUDED.duplicates, rejected = h.rejected + EXCLUDED.rejected
                    """,
                    [source.pk, now, accepted, duplicates, rejected_count],
                )
    except Exception:  # the debugger must never cost the shop its messages
        logger.exception("tracking: could not write the debugger log of source %s", source.pk)


# --- retention ------------------------------------------------------------------------------------
def tracking_purge(*, now: dt.datetime | None = None) -> dict:
    """Delete, set-based, what anonymous visitors left behind: held messages of visitors with no
    message for ``MH_ANONYMOUS_RETENTION_DAYS`` (a visitor still active keeps all of theirs), and
    hourly counts older than that."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=int(settings.MH_ANONYMOUS_RETENTION_DAYS))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH last_seen AS (
                SELECT coalesce(nullif(anonymous_id, ''), user_id) AS visitor, max(received_at) AS at
                FROM tracking_heldmessage GROUP BY 1
            )
            DELETE FROM tracking_heldmessage h USING last_seen l
            WHERE coalesce(nullif(h.anonymous_id, ''), h.user_id) = l.visitor AND l.at < %s
            """,
            [cutoff],
        )
        held = cursor.rowcount
        cursor.execute("DELETE FROM tracking_hourlycount WHERE hour < %s", [cutoff])
        hours = cursor.rowcount
    return {"held_messages": held, "hourly_counts": hours}
