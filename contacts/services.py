"""Contact workflows that span several models: upsert with consents, GDPR export and erasure,
tag rename/merge/delete, and the contact representation the API returns.

Everything that touches many rows is set-based SQL; Python only shapes one request's input.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pghistory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import F, FloatField, Min, Q, Sum
from django.db.models.functions import Cast, NullIf
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.countries import ISO_COUNTRY_CODES
from contacts.models import (
    SCORE_BANDS,
    Consent,
    ConsentChange,
    Contact,
    ContactOwnerEvent,
    ContactTag,
    Event,
    Note,
    Suppression,
    Tag,
    TagScoreChange,
    TagStats,
    email_hash,
    normalize_email,
    normalize_tag_name,
    tag_key,
)
from contacts.registry import CONTACT_PARTS
from contacts.signals import CHANGED_CONSENT, CHANGED_FIELDS, contacts_changed_send, contacts_erasing
from core.outbox import OutboxMessage, outbox_written_send
from core.paging import table_rows_estimate
from core.roles import MARKETER, has_role
from core.validators import email_is_valid

# --- validation shared by the API schemas and the CSV import --------------------------------------
# Messages are translated when raised: the API runs in English (its messages are a contract), the
# CSV import in the language of the person who started it.
CHANNEL_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,31}$")
TEXT_LIMITS = {"first_name": 100, "last_name": 100, "phone": 40, "city": 100}
CONTACT_FIELDS = ("first_name", "last_name", "phone", "country", "city", "birth_date")
MAX_TAG_SCORE_STEP = 1_000_000


def clean_email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(_("Email must be a string."))
    email = normalize_email(value)
    if not email:
        raise ValueError(_("Email is required."))
    if len(email) > 254:
        raise ValueError(_("Email must be at most 254 characters."))
    if not email_is_valid(email):
        raise ValueError(_("%(value)r is not a valid email address.") % {"value": value.strip()})
    return email


def clean_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(_("%(field)s must be a string.") % {"field": field})
    text = value.strip()
    if len(text) > TEXT_LIMITS[field]:
        raise ValueError(_("%(field)s must be at most %(limit)d characters.") % {"field": field, "limit": TEXT_LIMITS[field]})
    if "\x00" in text:
        raise ValueError(_("%(field)s must not contain NUL characters.") % {"field": field})
    return text


def clean_country(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(_("Country must be a string."))
    code = value.strip().upper()
    if code == "":
        return ""
    if code not in ISO_COUNTRY_CODES:
        raise ValueError(_("%(value)r is not an ISO 3166-1 alpha-2 country code (e.g. PL, DE).") % {"value": value.strip()})
    return code


def clean_birth_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        date = value
    elif isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(_("Birth date must be YYYY-MM-DD."))
        try:
            date = dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(_("%(value)r is not a real date.") % {"value": text}) from None
    else:
        raise ValueError(_("Birth date must be a YYYY-MM-DD string."))
    if date.year < 1900 or date > timezone.localdate():
        raise ValueError(_("Birth date must be between 1900-01-01 and today."))
    return date


def clean_channel(value: Any) -> str:
    channel = str(value).strip().lower() if isinstance(value, str) else ""
    if not CHANNEL_RE.match(channel):
        raise ValueError(_("A consent channel is 1–32 lower-case letters, digits, '_', '.' or '-'."))
    return channel


def clean_tag_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(_("Tag must be a string."))
    name = normalize_tag_name(value)
    if not name:
        raise ValueError(_("Tag must not be empty."))
    if len(name) > 100:
        raise ValueError(_("Tag must be at most 100 characters."))
    return name


# --- upsert -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpsertResult:
    contact_id: int
    created: bool


def suppressed_emails(emails: list[str]) -> set[str]:
    """The (normalized) emails among ``emails`` that were erased under GDPR."""
    by_hash = {email_hash(email): normalize_email(email) for email in emails}
    hashes = Suppression.objects.filter(email_hash__in=list(by_hash)).values_list("email_hash", flat=True)
    return {by_hash[value] for value in hashes}


def contacts_upsert(items: list[dict], *, source: str, user=None) -> list[UpsertResult]:
    """Create or update contacts by email, set-based (one INSERT, one UPDATE, one consent upsert).

    ``items`` are clean dicts: ``email`` (normalized) and any of first_name, last_name, phone,
    country, city, birth_date (date), properties (dict, merged key by key), consents (channel →
    bool). A key that is absent or None leaves the stored value alone. Items with the same email
    are merged in order. Returns one result per item, in order. Granting a consent lifts a GDPR
    suppression (the caller decides whether a suppressed email may be written at all).
    """
    if not items:
        return []
    merged: dict[str, dict] = {}
    for item in items:
        email = item["email"]
        target = merged.setdefault(email, {"email": email, "properties": {}, "consents": {}})
        for field in CONTACT_FIELDS:
            if item.get(field) is not None:
                target[field] = item[field]
        target["properties"].update(item.get("properties") or {})
        target["consents"].update(item.get("consents") or {})
    rows = sorted(merged.values(), key=lambda row: row["email"])

    def column(field: str) -> list:
        return [row.get(field) for row in rows]

    emails = column("email")
    birth_dates = [value.isoformat() if value else None for value in column("birth_date")]
    properties = [json.dumps(row["properties"]) if row["properties"] else None for row in rows]
    arrays = [emails, column("first_name"), column("last_name"), column("phone"), column("country"),
              column("city"), birth_dates, properties]
    unnest = (
        "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::date[], %s::jsonb[])"
        " AS i(email, first_name, last_name, phone, country, city, birth_date, properties)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # The contacts that exist are read first, and only the missing ones inserted: an INSERT … ON
        # CONFLICT meeting a row that the rules engine is updating waits for the engine's whole batch.
        # FOR KEY SHARE keeps them from being deleted until this commits, without waiting for writers.
        cursor.execute("SELECT id, email FROM contacts_contact WHERE email = ANY(%s::text[]) FOR KEY SHARE", [emails])
        existing = {email: contact_id for contact_id, email in cursor.fetchall()}
        missing = [index for index, email in enumerate(emails) if email not in existing]
        created: dict[str, int] = {}
        if missing:
            cursor.execute(
                f"""
                INSERT INTO contacts_contact (email, first_name, last_name, phone, country, city, birth_date,
                    properties, owner_id, score, lead_status, lead_status_reason, lead_status_changed_at,
                    last_activity_at, created_at, updated_at)
                SELECT email, coalesce(first_name, ''), coalesce(last_name, ''), coalesce(phone, ''),
                       coalesce(country, ''), coalesce(city, ''), birth_date, coalesce(properties, '{{}}'::jsonb),
                       NULL, 0, 'new', '', NULL, NULL, now(), now()
                FROM {unnest} ORDER BY email
                ON CONFLICT (email) DO NOTHING
                RETURNING id, email
                """,
                [[array[index] for index in missing] for array in arrays],
            )
            created = {email: contact_id for contact_id, email in cursor.fetchall()}
            raced = [emails[index] for index in missing if emails[index] not in created]
            if raced:
                # created by a concurrent request after this statement's snapshot: a new statement sees them
                cursor.execute("SELECT id, email FROM contacts_contact WHERE email = ANY(%s::text[]) FOR KEY SHARE",
                               [raced])
                existing.update({email: contact_id for contact_id, email in cursor.fetchall()})
        # Only rows whose values change are written (and so locked): an upsert that brings nothing
        # new, like an identify naming an email already stored, never waits for the rules engine.
        updating = [index for index, email in enumerate(emails) if email in existing]
        if updating:
            cursor.execute(
                f"""
                UPDATE contacts_contact c SET
                    first_name = coalesce(i.first_name, c.first_name), last_name = coalesce(i.last_name, c.last_name),
                    phone = coalesce(i.phone, c.phone), country = coalesce(i.country, c.country),
                    city = coalesce(i.city, c.city), birth_date = coalesce(i.birth_date, c.birth_date),
                    properties = c.properties || coalesce(i.properties, '{{}}'::jsonb), updated_at = now()
                FROM {unnest}
                WHERE c.email = i.email AND (
                    coalesce(i.first_name, c.first_name) IS DISTINCT FROM c.first_name
                    OR coalesce(i.last_name, c.last_name) IS DISTINCT FROM c.last_name
                    OR coalesce(i.phone, c.phone) IS DISTINCT FROM c.phone
                    OR coalesce(i.country, c.country) IS DISTINCT FROM c.country
                    OR coalesce(i.city, c.city) IS DISTINCT FROM c.city
                    OR coalesce(i.birth_date, c.birth_date) IS DISTINCT FROM c.birth_date
                    OR c.properties || coalesce(i.properties, '{{}}'::jsonb) IS DISTINCT FROM c.properties
                )
                RETURNING c.id
                """,
                [[array[index] for index in updating] for array in arrays],
            )
            updated = [contact_id for (contact_id,) in cursor.fetchall()]
        else:
            updated = []
        ids = existing | created
        consent_ids, channels, granted = [], [], []
        for row in rows:
            for channel, value in row["consents"].items():
                consent_ids.append(ids[row["email"]])
                channels.append(channel)
                granted.append(bool(value))
        consents_record(cursor, contact_ids=consent_ids, channels=channels, granted=granted, source=source,
                        user_id=getattr(user, "pk", None))
        regranted = [email_hash(row["email"]) for row in rows if any(row["consents"].values())]
        if regranted:
            Suppression.objects.filter(email_hash__in=regranted).delete()
        # New contacts and changed fields: tiers now, memberships queued (every segment for a new
        # contact, which was never evaluated). A contact the upsert left as it was (an identify
        # naming a stored email) is not announced; consents announce their own changes.
        if created or updated:
            contacts_changed_send([*created.values(), *updated], deferred=True, sender=contacts_upsert,
                                  changes={**dict.fromkeys(updated, [CHANGED_FIELDS]), **dict.fromkeys(created.values())})
    return [UpsertResult(ids[item["email"]], item["email"] in created) for item in items]


def consents_record(cursor, *, contact_ids: list[int], channels: list[str], granted: list[bool], source: str,
                    user_id: int | None = None) -> int:
    """Set consent states (parallel arrays); every actual change is appended to the history.

    A state given again unchanged is not a change and writes nothing. The contacts whose consent
    changed are announced (``contacts_changed``, deferred): segments "for sending" need email
    consent, so their memberships follow. Returns the changes made.
    """
    if not contact_ids:
        return 0
    cursor.execute(
        """
        WITH input AS (
            SELECT DISTINCT ON (contact_id, channel) contact_id, channel, granted
            FROM unnest(%s::bigint[], %s::text[], %s::boolean[]) WITH ORDINALITY AS i(contact_id, channel, granted, ord)
            ORDER BY contact_id, channel, ord DESC
        ),
        changed AS (
            INSERT INTO contacts_consent AS c (contact_id, channel, granted, source, updated_at)
            SELECT contact_id, channel, granted, %s, now() FROM input ORDER BY contact_id, channel
            ON CONFLICT (contact_id, channel) DO UPDATE
                SET granted = EXCLUDED.granted, source = EXCLUDED.source, updated_at = now()
                WHERE c.granted IS DISTINCT FROM EXCLUDED.granted
            RETURNING c.contact_id, c.channel, c.granted
        ),
        history AS (
            INSERT INTO contacts_consentchange (contact_id, channel, granted, source, user_id, created_at)
            SELECT contact_id, channel, granted, %s, %s, now() FROM changed
            RETURNING 1
        ),
        told AS (
            -- the world hears of each change (core.outbox) from the same statement
            INSERT INTO core_outboxmessage (type, contact_id, data)
            SELECT 'consent.changed', contact_id, jsonb_build_object('channel', channel, 'granted', granted, 'source', %s::text)
            FROM changed ORDER BY contact_id
        )
        SELECT count(*), array_agg(DISTINCT contact_id) FROM changed
        """,
        [list(contact_ids), list(channels), list(granted), source[:100], source[:100], user_id, source[:100]],
    )
    changes, changed_ids = cursor.fetchone()
    if changes:
        contacts_changed_send(changed_ids, deferred=True, sender=consents_record, changes=[CHANGED_CONSENT])
    return changes


# --- owner (the lead's holder) ------------------------------------------------------------------
class OwnerChangeRefused(Exception):
    pass


def user_label(user) -> str:
    if user is None:
        return _("Nobody")
    return user.get_full_name() or user.username


def contact_owner_set(contact: Contact, *, owner_id: int | None, user) -> Contact:
    """Set the contact's owner — the holder of the lead — by the same rule as the lead actions:
    marketers and admins assign anyone or no one; a Sales user may take an unassigned lead and give
    up their own, never take one another seller holds nor hand one to someone else.

    The holder is checked in the UPDATE itself, so two sellers racing for the same lead cannot both
    win. Raises ``OwnerChangeRefused`` with a message for the user."""
    manager = has_role(user, MARKETER)
    if not manager and owner_id not in (None, user.pk):
        raise OwnerChangeRefused(_("Only marketers and admins may assign leads to other people."))
    owner = get_user_model().objects.get(pk=owner_id) if owner_id is not None else None
    contacts = Contact.objects.filter(pk=contact.pk)
    if not manager:
        contacts = contacts.filter(Q(owner__isnull=True) | Q(owner=user))
    changed = contacts.assign_owner(owner)
    contact.refresh_from_db(fields=["owner", "updated_at"])
    if not changed and contact.owner_id != owner_id:
        raise OwnerChangeRefused(_("%(name)s holds this lead; only they or a manager may reassign it.")
                                 % {"name": user_label(contact.owner)})
    return contact


# --- what the API shows -------------------------------------------------------------------------
def contact_representation(contact: Contact) -> dict:
    """The contact as ``GET /api/v1/contacts/{email}`` returns it: its own fields and tags, then
    what the areas above add (``contacts.registry``: leads' score, temperature and stages,
    loyalty's tiers) — a few small indexed queries."""
    tags = ContactTag.objects.filter(contact=contact).order_by("-score", "tag__name").values_list("tag__name", "score")
    data = {
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "phone": contact.phone,
        "country": contact.country,
        "city": contact.city,
        "birth_date": contact.birth_date.isoformat() if contact.birth_date else None,
        "properties": contact.properties,
        "consents": dict(Consent.objects.filter(contact=contact).order_by("channel").values_list("channel", "granted")),
        "tags": [{"name": name, "score": score} for name, score in tags],
    }
    for part in CONTACT_PARTS.representation:
        data.update(part(contact))
    return data


# --- GDPR ---------------------------------------------------------------------------------------
def _json_rows(queryset, *fields) -> list[dict]:
    return [
        {field: (value.isoformat() if isinstance(value, dt.date | dt.datetime) else value)
         for field, value in zip(fields, row, strict=True)}
        for row in queryset.values_list(*fields)
    ]


def contact_export(contact: Contact) -> dict:
    """Everything stored about one contact, as JSON-ready data (the GDPR right of access); the
    areas above add their histories (``contacts.registry``)."""
    data = contact_representation(contact)
    data.update({
        "created_at": contact.created_at.isoformat(),
        "last_activity_at": contact.last_activity_at.isoformat() if contact.last_activity_at else None,
        "owner": contact.owner.get_username() if contact.owner_id else None,
        "lead_status": contact.lead_status,
        "tag_history": _json_rows(TagScoreChange.objects.filter(contact=contact).order_by("created_at", "id"),
                                  "tag__name", "delta", "score_after", "source", "created_at"),
        "notes": _json_rows(Note.objects.filter(contact=contact).order_by("created_at"), "text", "created_at"),
        "consent_history": _json_rows(ConsentChange.objects.filter(contact=contact).order_by("created_at", "id"),
                                      "channel", "granted", "source", "created_at"),
        "events": _json_rows(Event.objects.filter(contact=contact).order_by("occurred_at"),
                             "event_id", "type", "occurred_at", "properties"),
    })
    for part in CONTACT_PARTS.export:
        data.update(part(contact))
    data["exported_at"] = timezone.now().isoformat()
    return data


def contact_erase(contact: Contact, *, user=None) -> None:
    """GDPR erasure: the contact, its events, notes, consents, tags and every history row go; a
    suppression record (the email's hash) stops ingestion from silently re-creating it; saved
    segment counts are kept correct."""
    with transaction.atomic(), pghistory.context(action="gdpr_erasure"):
        Suppression.objects.update_or_create(
            email_hash=email_hash(contact.email), defaults={"created_at": timezone.now(), "reason": "gdpr_erasure"}
        )
        # Figures the areas above derive from this contact (saved segment counts) are corrected
        # while its rows still exist.
        contacts_erasing.send(sender=Contact, contact_ids=[contact.pk])
        ContactOwnerEvent.objects.filter(pgh_obj_id=contact.pk).delete()
        # The world hears of the erasure by the email's hash only; messages still waiting to be sent
        # about this contact go without its snapshot (it is read when they are sent).
        OutboxMessage.objects.create(
            type="contact.erased", contact_id=contact.pk,
            data={"email_sha256": email_hash(contact.email)},
        )
        outbox_written_send(contact_erase)
        # The collector deletes dependent rows with one DELETE … WHERE contact_id IN (…) per table.
        Contact.objects.filter(pk=contact.pk).delete()


# --- tags ---------------------------------------------------------------------------------------
class TagNameTaken(ValueError):
    pass


def tag_rename(tag: Tag, *, name: str) -> Tag:
    """Rename a tag (a new spelling of the same key, or a new key nobody else uses)."""
    name = clean_tag_name(name)
    key = tag_key(name)
    if Tag.objects.filter(key=key).exclude(pk=tag.pk).exists():
        raise TagNameTaken(_("A tag named %(name)r already exists: merge the two instead.") % {"name": name})
    tag.name, tag.key = name, key
    tag.save(update_fields=["name", "key"])
    return tag


def tag_merge(source: Tag, target: Tag, *, user=None) -> int:
    """Merge ``source`` into ``target``: on every contact the scores add up, the history moves to
    the target, and ``source`` is deleted. Set-based. Returns the contacts that had ``source``."""
    if source.pk == target.pk:
        raise ValueError(_("A tag cannot be merged into itself."))
    user_id = getattr(user, "pk", None)
    with transaction.atomic(), pghistory.context(merged_into=target.name, merged_tag=source.name), \
            connection.cursor() as cursor:
        pghistory.create_event(source, label="merged")
        cursor.execute(
            """
            WITH moved AS (
                INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
                SELECT contact_id, %(target)s, score, first_assigned_at, last_assigned_at
                FROM contacts_contacttag WHERE tag_id = %(source)s ORDER BY contact_id
                ON CONFLICT (contact_id, tag_id) DO UPDATE
                    SET score = ct.score + EXCLUDED.score,
                        first_assigned_at = least(ct.first_assigned_at, EXCLUDED.first_assigned_at),
                        last_assigned_at = greatest(ct.last_assigned_at, EXCLUDED.last_assigned_at)
                RETURNING ct.contact_id, ct.score
            ),
            history AS (
                INSERT INTO contacts_tagscorechange
                    (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
                SELECT m.contact_id, %(target)s, old.score, m.score, 'merge', NULL, %(user_id)s, NULL, now()
                FROM moved m JOIN contacts_contacttag old ON old.contact_id = m.contact_id AND old.tag_id = %(source)s
                RETURNING 1
            )
            SELECT count(*) FROM moved
            """,
            {"source": source.pk, "target": target.pk, "user_id": user_id},
        )
        merged = cursor.fetchone()[0]
        cursor.execute("UPDATE contacts_tagscorechange SET tag_id = %s WHERE tag_id = %s", [target.pk, source.pk])
        cursor.execute("DELETE FROM contacts_contacttag WHERE tag_id = %s", [source.pk])
        source.delete()
        if TagStats.objects.filter(tag=target).exists():  # the Tags page reads a snapshot: keep it right
            tag_stats_refresh(tag_ids=[target.pk])
    return merged


def tag_delete(tag: Tag) -> int:
    """Delete a tag from every contact and its history, set-based. Returns the contacts that lost it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM contacts_contacttag WHERE tag_id = %s", [tag.pk])
        removed = cursor.rowcount
        cursor.execute("DELETE FROM contacts_tagscorechange WHERE tag_id = %s", [tag.pk])
        tag.delete()
    return removed


# One pass over the contact-tags: per tag its contacts, total score and how many contact-tags
# fall in each of SCORE_BANDS (a score ≤ 0 removes the tag, so every score is ≥ 1).
_TAG_STATS_SELECT = """
SELECT t.id AS tag_id, count(ct.tag_id) AS contact_count, coalesce(sum(ct.score), 0) AS total_score,
       ARRAY[count(*) FILTER (WHERE ct.score = 1), count(*) FILTER (WHERE ct.score = 2),
             count(*) FILTER (WHERE ct.score = 3), count(*) FILTER (WHERE ct.score = 4),
             count(*) FILTER (WHERE ct.score BETWEEN 5 AND 9), count(*) FILTER (WHERE ct.score BETWEEN 10 AND 19),
             count(*) FILTER (WHERE ct.score >= 20)] AS score_bands
FROM contacts_tag t LEFT JOIN contacts_contacttag ct ON ct.tag_id = t.id
     AND ct.contact_id NOT IN (SELECT id FROM contacts_contact WHERE is_anonymous)
{where}
GROUP BY t.id
"""


def tag_stats_refresh(*, tag_ids: list[int] | None = None) -> int:
    """Recount every tag (or those of ``tag_ids``) into the TagStats snapshot, in one statement.
    Returns the tags counted."""
    select = _TAG_STATS_SELECT.format(where="" if tag_ids is None else "WHERE t.id = ANY(%s::bigint[])")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO contacts_tagstats (tag_id, contact_count, total_score, score_bands, computed_at)
            SELECT tag_id, contact_count, total_score, score_bands, now()
            FROM ({select}) AS counted ORDER BY tag_id
            ON CONFLICT (tag_id) DO UPDATE SET contact_count = EXCLUDED.contact_count,
                total_score = EXCLUDED.total_score, score_bands = EXCLUDED.score_bands,
                computed_at = EXCLUDED.computed_at
            """,
            [] if tag_ids is None else [list(tag_ids)],
        )
        return cursor.rowcount


def tag_stats_counted_live() -> bool:
    """Whether the Tags page counts live: when the planner's estimate of contact-tags is at most
    ``MH_TAG_STATS_LIVE_MAX_ROWS`` (a count that takes well under a second)."""
    return table_rows_estimate("contacts_contacttag") <= settings.MH_TAG_STATS_LIVE_MAX_ROWS


@dataclass
class TagOverview:
    """The Tags page's numbers: tags (each with ``contact_count``, ``total_score``,
    ``average_score``; None when not counted yet), the score bands over all tags, and when they
    were counted (None: counted live, now)."""

    tags: list
    bands: list[int]
    counted_at: dt.datetime | None
    uncounted: int = 0
    page: Page | None = None  # the page of tags shown (``tags`` are its rows)


TAGS_PER_PAGE = 50


def tag_overview(*, search: str = "", page: int | str | None = 1, per_page: int = TAGS_PER_PAGE) -> TagOverview:
    """The most used tags first (those matching ``search``), a page of ``per_page`` at a time,
    live on a small database, from the TagStats snapshot (LIMIT/OFFSET in SQL) on a large one."""
    tags = Tag.objects.all()
    if search:
        tags = tags.filter(key__contains=tag_key(search))
    if tag_stats_counted_live():
        with connection.cursor() as cursor:
            cursor.execute(_TAG_STATS_SELECT.format(where=""))
            counted = {row[0]: row[1:] for row in cursor.fetchall()}
        bands = [sum(row[2][index] for row in counted.values()) for index in range(len(SCORE_BANDS))]
        rows = list(tags)
        for tag in rows:
            tag.contact_count, tag.total_score, _ = counted.get(tag.pk, (0, 0, None))
            tag.average_score = tag.total_score / tag.contact_count if tag.contact_count else None
        rows.sort(key=lambda tag: (-tag.contact_count, tag.name))
        shown = Paginator(rows, per_page).get_page(page)
        return TagOverview(tags=list(shown.object_list), bands=bands, counted_at=None, page=shown)
    shown = Paginator(
        tags.annotate(
            contact_count=F("stats__contact_count"), total_score=F("stats__total_score"),
            average_score=Cast("stats__total_score", FloatField()) / NullIf(Cast("stats__contact_count", FloatField()), 0.0),
        ).order_by(F("contact_count").desc(nulls_last=True), "name", "pk"),
        per_page,
    ).get_page(page)
    rows = list(shown.object_list)
    snapshot = TagStats.objects.aggregate(counted_at=Min("computed_at"), **{
        f"band{index}": Sum(F(f"score_bands__{index}")) for index in range(len(SCORE_BANDS))})
    bands = [snapshot[f"band{index}"] or 0 for index in range(len(SCORE_BANDS))]
    uncounted = tags.filter(stats__isnull=True).count()
    return TagOverview(tags=rows, bands=bands, counted_at=snapshot["counted_at"], uncounted=uncounted, page=shown)
