"""Read-side queries of the contacts screens: what the list, the card and the tag autocomplete
show, each in a fixed, small number of queries (never one per row)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts.models import (
    EVENT_TYPE_CHOICES,
    SYSTEM_EVENT_TYPE_CHOICES,
    Contact,
    ContactTag,
    Event,
    Note,
    Tag,
    TagScoreChange,
    tag_key,
)
from contacts.registry import TIMELINE_SOURCES, TimelineEffect, rule_label, rule_names

TIMELINE_PER_PAGE = 20
# Properties of an event worth a word on the timeline, in the order they are shown.
SUMMARY_PROPERTIES = ("product_name", "category", "brand", "url", "campaign", "name")


def top_tags_by_contact(contact_ids: list[int], limit: int = 3) -> dict[int, list[dict]]:
    """The strongest ``limit`` tags of each contact, in one query."""
    if not contact_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT contact_id, name, score, colour FROM (
                SELECT ct.contact_id, t.name, ct.score, t.colour,
                       row_number() OVER (PARTITION BY ct.contact_id ORDER BY ct.score DESC, t.name) AS rank
                FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id
                WHERE ct.contact_id = ANY(%s::bigint[])
            ) ranked WHERE rank <= %s ORDER BY contact_id, rank
            """,
            [contact_ids, limit],
        )
        result: dict[int, list[dict]] = defaultdict(list)
        for contact_id, name, score, colour in cursor.fetchall():
            result[contact_id].append({"name": name, "score": score, "colour": colour})
    return result


def contact_tags(contact: Contact) -> list[dict]:
    """The contact's tags, strongest first; the strongest (all of them on a tie) marked."""
    rows = list(
        ContactTag.objects.filter(contact=contact).order_by("-score", "tag__name")
        .values("tag_id", "tag__name", "tag__colour", "score", "last_assigned_at")
    )
    strongest = rows[0]["score"] if rows else None
    return [{"id": row["tag_id"], "name": row["tag__name"], "colour": row["tag__colour"], "score": row["score"],
             "last_assigned_at": row["last_assigned_at"], "strongest": row["score"] == strongest} for row in rows]


def tag_changes(contact: Contact, tag: Tag, *, limit: int = 50) -> list[TagScoreChange]:
    """The latest changes of one tag's score on the contact, each with ``rule_name`` ("" if none)."""
    changes = list(TagScoreChange.objects.filter(contact=contact, tag=tag).select_related("user")
                   .order_by("-created_at", "-id")[:limit])
    names = rule_names(change.rule_id for change in changes)
    for change in changes:
        change.rule_name = rule_label(names, change.rule_id)  # type: ignore[attr-defined]  # shown by the template
    return changes


def tag_names_matching(text: str, *, limit: int = 8) -> list[str]:
    """Tag names starting with ``text``, then containing it, A→Z within each."""
    key = tag_key(text)
    if not key:
        return []
    starts = list(Tag.objects.filter(key__startswith=key).order_by("key").values_list("name", flat=True)[:limit])
    if len(starts) >= limit:
        return starts
    more = (Tag.objects.filter(key__contains=key).exclude(key__startswith=key).order_by("key")
            .values_list("name", flat=True)[: limit - len(starts)])
    return starts + list(more)


def contact_notes(contact: Contact, *, reader_id: int | None, limit: int = 30) -> list[Note]:
    """The latest notes, each with ``editable`` (written by the reader) and ``was_edited``."""
    return list(
        Note.objects.filter(contact=contact).select_related("author").annotate(
            editable=ExpressionWrapper(Q(author_id=reader_id), output_field=BooleanField()),
            # created_at and updated_at both default to now() on insert, microseconds apart: only a
            # later save is an edit
            was_edited=ExpressionWrapper(Q(updated_at__gt=F("created_at") + dt.timedelta(seconds=1)),
                                         output_field=BooleanField()),
        )[:limit]
    )


@dataclass
class TimelinePage:
    events: list[dict] = field(default_factory=list)
    has_next: bool = False


def _tag_effects(contact: Contact, event_pks: list[int]) -> Iterator[TimelineEffect]:
    for event_pk, name, delta, rule_id in TagScoreChange.objects.filter(
            event_pk__in=event_pks, contact=contact).values_list("event_pk", "tag__name", "delta", "rule_id"):
        yield TimelineEffect(event_pk, "tag", f"{delta:+d} {name}", rule_id)


def contact_timeline(contact: Contact, *, event_type: str = "", page: int = 1) -> TimelinePage:
    """One page of the contact's events, newest first, each with what it caused — its tag
    changes, then what the areas above record (``contacts.registry`` timeline sources) — grouped
    by the rule that caused it."""
    events = Event.objects.filter(contact=contact)
    if event_type:
        events = events.filter(type=event_type)
    offset = (page - 1) * TIMELINE_PER_PAGE
    rows: list[dict[str, Any]] = [dict(row) for row in events.order_by("-occurred_at").values(
        "id", "event_id", "type", "occurred_at", "properties", "value")[offset: offset + TIMELINE_PER_PAGE + 1]]
    has_next = len(rows) > TIMELINE_PER_PAGE
    rows = rows[:TIMELINE_PER_PAGE]
    pks = [row["id"] for row in rows]
    effects: dict[int | None, list[TimelineEffect]] = defaultdict(list)
    if pks:
        for source in (_tag_effects, *TIMELINE_SOURCES):
            for effect in source(contact, pks):
                effects[effect.event_pk].append(effect)
    names = rule_names(effect.rule_id for caused in effects.values() for effect in caused)
    type_labels = dict(EVENT_TYPE_CHOICES + SYSTEM_EVENT_TYPE_CHOICES)
    for row in rows:
        row["type_label"] = type_labels.get(row["type"], row["type"])
        by_rule: dict[int | None, list[dict]] = defaultdict(list)
        for effect in effects.get(row["id"], []):
            by_rule[effect.rule_id].append({"kind": effect.kind, "text": effect.text, "rule_id": effect.rule_id})
        row["effects"] = [
            {"items": items, "rule": rule_label(names, rule_id)}
            for rule_id, items in by_rule.items()
        ]
        properties = row["properties"] or {}
        row["summary"] = " · ".join(
            str(properties[key]) for key in SUMMARY_PROPERTIES if properties.get(key) not in (None, "")
        )[:160]
        if row["type"] == "visitor_merged":
            events = properties.get("events", 0)
            visitor = properties.get("visitor") or _("(no id)")
            row["summary"] = (ngettext("visitor %(visitor)s: %(count)d event", "visitor %(visitor)s: %(count)d events", events)
                              % {"visitor": visitor, "count": events}
                              + "".join(f", +{score} {name}" for name, score in (properties.get("tags") or {}).items()))[:160]
    return TimelinePage(events=rows, has_next=has_next)


def product_preferences(contact: Contact) -> dict:
    """Top categories and brands and the price band of the products this contact viewed (last 2000 views)."""
    with connection.cursor() as cursor:
        cursor.execute(
            r"""
            WITH views AS (
                SELECT properties ->> 'category' AS category, properties ->> 'brand' AS brand,
                       CASE WHEN properties ->> 'price' ~ '^\d{1,12}(\.\d+)?$' THEN (properties ->> 'price')::numeric END AS price
                FROM automation_event
                WHERE contact_id = %s AND type = 'product_view'
                ORDER BY occurred_at DESC LIMIT 2000
            )
            SELECT
                (SELECT coalesce(json_agg(c), '[]') FROM (
                    SELECT category AS name, count(*) AS views FROM views WHERE coalesce(category, '') <> ''
                    GROUP BY category ORDER BY views DESC, category LIMIT 5) c),
                (SELECT coalesce(json_agg(b), '[]') FROM (
                    SELECT brand AS name, count(*) AS views FROM views WHERE coalesce(brand, '') <> ''
                    GROUP BY brand ORDER BY views DESC, brand LIMIT 5) b),
                (SELECT json_build_object(
                    'low', percentile_cont(0.25) WITHIN GROUP (ORDER BY price),
                    'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY price),
                    'high', percentile_cont(0.75) WITHIN GROUP (ORDER BY price),
                    'priced', count(price), 'views', count(*)) FROM views)
            """,
            [contact.pk],
        )
        categories, brands, prices = cursor.fetchone()

    def decode(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    categories, brands, prices = decode(categories), decode(brands), decode(prices)
    top = max([item["views"] for item in categories + brands] or [1])
    for item in categories + brands:
        item["percent"] = round(100 * item["views"] / top)
    return {"categories": categories, "brands": brands, "prices": prices}
