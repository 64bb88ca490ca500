"""Event ingestion: validate a batch all-or-nothing, then store it set-based in one transaction.

Per request (1–1000 events) the database sees a fixed number of statements, whatever the size:

1. ``mh_ensure_event_partitions`` — only when the batch touches a month this process has not seen;
2. one ``INSERT … SELECT FROM unnest(…) ON CONFLICT (email) DO NOTHING`` creating unknown contacts
   (skipping emails whose hash is in ``contacts_suppression``: an erased person is not re-created
   by behavioural events; their events are dropped and counted as ``suppressed``);
3. one statement that inserts the receipts (``ON CONFLICT (event_id) DO NOTHING RETURNING``: the
   idempotency key — an ``event_id`` seen before, in this request or any earlier one, is a
   duplicate) and the events of the new receipts.

Processing is enqueued once, after commit. ``contacts_contact.last_activity_at`` is brought up to
date by the rules engine in the same transaction that applies the events (so the API never takes
row locks on contacts and cannot deadlock with the engine's score updates), and ``events/status``
counts an event as pending until then.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.utils import OperationalError
from django.utils import timezone

from automation import tasks
from contacts.models import EVENT_TYPES, Contact, email_hash, normalize_email
from core.validators import ANONYMOUS_DOMAIN, CONTROL_CHARACTERS_MESSAGE, email_is_valid, has_control_characters
from segments.dirty import segments_mark_dirty

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
MAX_FUTURE = timedelta(minutes=5)
# Older events would each create a monthly partition of their own for little use.
MAX_PAST = timedelta(days=3653)
MAX_PROPERTIES_BYTES = 16 * 1024
# numeric(14, 2): the largest order value the column holds
MAX_VALUE = Decimal("999999999999.99")
_EVENT_TYPES = frozenset(EVENT_TYPES)
# How json.dumps writes the characters ``core.validators`` refuses: one search over the encoded
# properties instead of a walk over every key and value.
_CONTROL_ESCAPES = re.compile(r"(?<!\\)(?:\\\\)*\\(?:u00(?:0[0-8bcef]|1[0-9a-f])|[bf])")

# Months (as "YYYY-MM") whose event partition this process has already ensured.
_known_months: set[str] = set()


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0
    created_contacts: int = 0
    # with ``stored_ids=True``: the ids of the events stored now (the rest were duplicates or
    # suppressed) with their contacts' ids, and the emails whose events were dropped because
    # their person was erased
    stored_ids: dict[str, int] = field(default_factory=dict)
    suppressed_emails: set[str] = field(default_factory=set)


@dataclass
class CleanEvent:
    event_id: str
    email: str
    type: str
    occurred_at: datetime
    properties: dict = field(default_factory=dict)
    value: Decimal | None = None
    properties_json: str = "{}"


class IngestValidationError(ValueError):
    def __init__(self, errors: list[dict]) -> None:
        super().__init__(f"{len(errors)} invalid event field(s)")
        self.errors = errors


# --- validation -----------------------------------------------------------------------------------
def _value_of(properties: dict) -> tuple[Decimal | None, str | None]:
    """properties.value as the order total, or an error message."""
    raw = properties.get("value")
    if raw is None:
        return None, None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None, "must be a number (the order total)"
    try:
        number = Decimal(str(raw).strip()) if isinstance(raw, str) else Decimal(repr(raw) if isinstance(raw, float) else raw)
    except InvalidOperation:
        return None, "must be a number (the order total)"
    if not number.is_finite():
        return None, "must be a finite number"
    if abs(number) > MAX_VALUE:
        return None, f"must be at most {MAX_VALUE:,} in absolute value"
    return number.quantize(Decimal("0.01")), None


_ANONYMOUS_SUFFIX = "@" + ANONYMOUS_DOMAIN


def events_validate(items: list[Any], *, now: datetime | None = None) -> list[CleanEvent]:
    """Check every item; raise IngestValidationError listing every problem with its index.

    ``items`` are objects with ``event_id``, ``email``, ``type``, ``occurred_at`` and
    ``properties`` attributes (the API's pydantic items) or dicts with those keys.
    """
    now = now or timezone.now()
    latest = now + MAX_FUTURE
    errors: list[dict] = []
    clean: list[CleanEvent] = []
    for index, item in enumerate(items):
        get = item.get if isinstance(item, dict) else lambda name, _item=item: getattr(_item, name, None)
        item_errors: list[dict] = []

        def fail(name: str, message: str, _errors: list = item_errors, _index: int = index) -> None:
            _errors.append({"index": _index, "field": name, "message": message})

        event_id = get("event_id")
        if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
            fail("event_id", "must be a text of 1 to 128 characters")
        elif event_id.strip() != event_id:
            fail("event_id", "must not start or end with spaces")
        elif has_control_characters(event_id):
            fail("event_id", CONTROL_CHARACTERS_MESSAGE)
        raw_email = get("email")
        email = normalize_email(raw_email) if isinstance(raw_email, str) else ""
        if not email:
            fail("email", "is required")
        elif len(email) > 254:
            fail("email", "may be at most 254 characters")
        elif not email_is_valid(email):
            fail("email", "is not a valid email address")
        event, problems = event_check(event_id=event_id, email=email, event_type=get("type"),
                                      occurred_at=get("occurred_at"), properties=get("properties"), now=now,
                                      latest=latest)
        for name, message in problems:
            fail(name, message)
        if item_errors or event is None:
            errors.extend(item_errors)
            continue
        clean.append(event)
    if errors:
        raise IngestValidationError(errors)
    return clean


def event_check(*, event_id: str, email: str, event_type: Any, occurred_at: Any, properties: Any, now: datetime,
                latest: datetime | None = None) -> tuple[CleanEvent | None, list[tuple[str, str]]]:
    """The checks of one event's type, time and properties, as ``/api/v1/events`` makes them:
    (the clean event, []) or (None, the problems as (field, message)). ``event_id`` and ``email``
    are the caller's, already checked (the tracking intake names the email later)."""
    latest = latest or now + MAX_FUTURE
    problems: list[tuple[str, str]] = []
    if event_type not in _EVENT_TYPES:
        problems.append(("type", f"must be one of {', '.join(EVENT_TYPES)}"))
    if isinstance(occurred_at, str):
        try:
            occurred_at = datetime.fromisoformat(occurred_at)
        except ValueError:
            occurred_at = None
    if not isinstance(occurred_at, datetime):
        problems.append(("occurred_at", "must be an ISO 8601 date-time with a timezone"))
    elif occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        problems.append(("occurred_at", "must include a timezone (e.g. 2025-05-01T12:00:00+02:00 or …Z)"))
    elif occurred_at > latest:
        problems.append(("occurred_at", "must not be more than 5 minutes in the future"))
    elif occurred_at < now - MAX_PAST:
        problems.append(("occurred_at", "must be within the last 10 years"))
    if properties is None:
        properties = {}
    value = None
    encoded = "{}"
    if not isinstance(properties, dict):
        problems.append(("properties", "must be an object"))
    else:
        try:
            encoded = json.dumps(properties, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            problems.append(("properties", "must hold only JSON values (no NaN or Infinity)"))
        else:
            # (a character is at most 4 bytes of UTF-8; every escape json.dumps writes has a backslash)
            if len(encoded) * 4 > MAX_PROPERTIES_BYTES and len(encoded.encode()) > MAX_PROPERTIES_BYTES:
                problems.append(("properties", f"may be at most {MAX_PROPERTIES_BYTES // 1024} KB of JSON"))
            elif "\\" in encoded and _CONTROL_ESCAPES.search(encoded):
                problems.append(("properties", CONTROL_CHARACTERS_MESSAGE))
        value, value_error = _value_of(properties)
        if value_error:
            problems.append(("properties.value", value_error))
    if problems:
        return None, problems
    return CleanEvent(event_id, email, event_type, occurred_at.astimezone(UTC), properties, value, encoded), problems


# --- storing --------------------------------------------------------------------------------------
def _contact_defaults() -> tuple[list[str], list[str], list[Any]]:
    """Columns, cast placeholders and values for a contact created from an email alone, taken
    from the model so a field added later (with a default) needs no change here."""
    columns, placeholders, values = [], [], []
    for model_field in Contact._meta.concrete_fields:
        if model_field.primary_key or model_field.attname in ("email", "is_anonymous") or getattr(model_field, "generated", False):
            continue  # generated columns (the search document) are the database's to fill
        if model_field.has_default():
            value = model_field.get_default()
        elif model_field.null:
            value = None
        else:  # pragma: no cover - a required field without default would need a value here
            raise RuntimeError(f"Contact.{model_field.name} has no default; ingestion cannot create contacts")
        columns.append(connection.ops.quote_name(model_field.column))
        placeholders.append(f"%s::{model_field.db_type(connection)}")
        values.append(model_field.get_db_prep_save(value, connection))
    return columns, placeholders, values


def _ensure_partitions(cursor, events: list[CleanEvent]) -> None:
    months = {f"{year:04d}-{month:02d}" for year, month in {(e.occurred_at.year, e.occurred_at.month) for e in events}}
    if months <= _known_months:
        return
    earliest = min(event.occurred_at for event in events)
    latest = max(event.occurred_at for event in events)
    cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [earliest, latest])
    _known_months.update(months)


_STORE_SQL = """
WITH input AS (
    SELECT DISTINCT ON (t.event_id) t.event_id, t.email, t.type, t.occurred_at, t.properties, t.value
    FROM jsonb_to_recordset(%(events)s::jsonb)
         AS t(ord int, event_id text, email text, type text, occurred_at timestamptz, properties jsonb, value numeric)
    ORDER BY t.event_id, t.ord
), receipts AS (
    INSERT INTO automation_eventreceipt (event_id, event_pk, occurred_at, contact_id, received_at)
    SELECT i.event_id, nextval('automation_event_id_seq'), i.occurred_at, c.id, %(now)s
    FROM input i JOIN contacts_contact c ON c.email = i.email
    ORDER BY i.event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, event_pk, occurred_at, contact_id
), pending AS (
    INSERT INTO automation_pendingevent
        (event_pk, event_id, occurred_at, contact_id, received_at, attempts, error, failed, failed_at)
    SELECT r.event_pk, r.event_id, r.occurred_at, r.contact_id, %(now)s, 0, '', false, NULL FROM receipts r
), events AS (
    INSERT INTO automation_event (id, event_id, contact_id, type, occurred_at, received_at, properties, value)
    SELECT r.event_pk, r.event_id, r.contact_id, i.type, i.occurred_at, %(now)s, i.properties, i.value
    FROM receipts r JOIN input i ON i.event_id = r.event_id
    RETURNING event_id, contact_id
)
SELECT count(*), {stored_ids} FROM events
"""


def _events_json(events: list[CleanEvent]) -> str:
    """The batch as ONE JSON array for ``jsonb_to_recordset``: the properties are already encoded
    by validation, and a single document costs the database one parse where arrays of JSON
    texts cost Python an escaping pass over every element (a quarter of a request's time)."""
    dumps = json.dumps
    rows = []
    for position, event in enumerate(events):
        value = "null" if event.value is None else f'"{event.value}"'
        rows.append(
            f'{{"ord":{position},"event_id":{dumps(event.event_id, ensure_ascii=False)},'
            f'"email":{dumps(event.email, ensure_ascii=False)},"type":{dumps(event.type)},'
            f'"occurred_at":"{event.occurred_at.isoformat()}","properties":{event.properties_json},"value":{value}}}'
        )
    return "[" + ",".join(rows) + "]"


def _store(events: list[CleanEvent], now: datetime, *, stored_ids: bool = False) -> IngestResult:
    result = IngestResult()
    emails = sorted({event.email for event in events})
    columns, placeholders, defaults = _contact_defaults()
    with transaction.atomic(), connection.cursor() as cursor:
        # A 202 promises the events survive a crash: wait for the WAL flush even on a server
        # whose default is asynchronous commit.
        cursor.execute("SET LOCAL synchronous_commit = on")
        _ensure_partitions(cursor, events)
        # One statement: create the unknown contacts and name the unknown emails that stay unknown
        # because their person was erased (suppressed).
        cursor.execute(
            f"""
            WITH t AS (
                SELECT t.email, t.email_hash FROM unnest(%s::text[], %s::text[]) AS t(email, email_hash)
            ), missing AS (
                SELECT t.email, t.email_hash,
                       EXISTS (SELECT 1 FROM contacts_suppression s WHERE s.email_hash = t.email_hash) AS suppressed
                FROM t WHERE NOT EXISTS (SELECT 1 FROM contacts_contact c WHERE c.email = t.email)
            ), created AS (
                INSERT INTO contacts_contact (email, is_anonymous, {", ".join(columns)})
                SELECT m.email, m.email LIKE %s, {", ".join(placeholders)}
                FROM missing m WHERE NOT m.suppressed
                ORDER BY m.email
                ON CONFLICT (email) DO NOTHING
                RETURNING id
            )
            SELECT ARRAY(SELECT id FROM created), ARRAY(SELECT email FROM missing WHERE suppressed)
            """,
            [emails, [email_hash(email) for email in emails], "%" + _ANONYMOUS_SUFFIX, *defaults],
        )
        created, suppressed = cursor.fetchone()
        result.created_contacts = len(created)
        if created:
            # A contact new to every saved segment: the drain evaluates it against all of them
            # (the engine's batch names only what its events change).
            segments_mark_dirty(created)
        suppressed_emails = set(suppressed)
        if stored_ids:
            result.suppressed_emails = suppressed_emails
        kept = [event for event in events if event.email not in suppressed_emails]
        result.suppressed = len(events) - len(kept)
        if kept:
            sql = _STORE_SQL.format(stored_ids="array_agg(event_id), array_agg(contact_id)" if stored_ids
                                    else "NULL, NULL")
            cursor.execute(sql, {"events": _events_json(kept), "now": now})
            result.accepted, ids, contact_ids = cursor.fetchone()
            result.stored_ids = dict(zip(ids or (), contact_ids or (), strict=True))
        result.duplicates = len(kept) - result.accepted
        if result.accepted:
            # looked up at call time (module attribute): tests swap the enqueue for a stub
            transaction.on_commit(tasks.events_process_enqueue)
    return result


def events_ingest(items: list[Any], *, now: datetime | None = None, stored_ids: bool = False) -> IngestResult:
    """Validate (raising IngestValidationError, nothing stored) and store a batch of events.
    ``stored_ids``: the result names the events stored now (with their contacts) and the erased
    people's emails."""
    now = now or timezone.now()
    return events_store(events_validate(items, now=now), now=now, stored_ids=stored_ids)


def events_store(events: list[CleanEvent], *, now: datetime, stored_ids: bool = False) -> IngestResult:
    """Store events that ``events_validate`` returned (the tracking intake checks its messages'
    events with ``event_check`` before anything is written, then names their contacts):
    all-or-nothing, idempotent."""
    for attempt in range(4):
        try:
            return _store(events, now, stored_ids=stored_ids)
        except OperationalError as exc:
            # A deadlock or serialization failure with a concurrent writer: the transaction was
            # rolled back whole, so running it again is safe.
            sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
            if sqlstate not in ("40P01", "40001") or attempt == 3:
                raise
            logger.warning("ingest retry after %s (attempt %s)", sqlstate, attempt + 1)
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# --- limits ---------------------------------------------------------------------------------------
def ingest_rate_limit() -> int:
    """Requests per minute per API key (``INGEST_RATE_LIMIT_PER_MINUTE``; 0 switches it off).
    The default, 3,000 requests of up to 1,000 events, is far above the benchmark's rate."""
    return int(settings.INGEST_RATE_LIMIT_PER_MINUTE)


def ingest_max_body_bytes() -> int:
    return int(settings.INGEST_MAX_BODY_BYTES)


def ingest_rate_check(key_id: int | str) -> int | None:
    """Count one request for ``key_id`` in the current minute; the seconds to wait when over the
    limit, else None. Uses Django's cache: per process with the default local-memory cache,
    shared across processes when CACHES points at Redis."""
    limit = ingest_rate_limit()
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // 60)
    cache_key = f"mh:ingest-rate:{key_id}:{window}"
    cache.add(cache_key, 0, timeout=120)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=120)
        count = 1
    if count > limit:
        return max(1, int((window + 1) * 60 - now) + 1)
    return None
