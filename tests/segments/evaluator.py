"""A plain-Python evaluator of segment definitions: the oracle the SQL compiler is checked
against. It reads the small test world into memory and applies the API contract's words
literally, leaf by leaf, without sharing code with ``segments.compiler`` (except the rules'
own Python condition matcher, which is the definition of an event ``where`` condition)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from contacts.models import Consent, Contact, ContactTag, Event
from core.conditions import condition_matches
from leads.models import ContactStage, TemperatureSettings
from loyalty.models import ContactTier
from segments.models import Segment


@dataclass
class ContactView:
    contact: Contact
    tags: dict[str, int] = field(default_factory=dict)  # tag key -> score
    consents: dict[str, bool] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    stages: set[tuple[str, str]] = field(default_factory=set)  # (funnel, stage), lower-case
    tiers: set[tuple[str, str]] = field(default_factory=set)  # (program, tier), lower-case


def _decimal(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _compare(op: str, number: Any, value: Any) -> bool:
    number = _decimal(number)
    if op == "between":
        return _decimal(value[0]) <= number <= _decimal(value[1])
    if op == "in":
        return any(number == _decimal(item) for item in value)
    target = _decimal(value)
    return {
        "eq": number == target,
        "ne": number != target,
        "gt": number > target,
        "gte": number >= target,
        "lt": number < target,
        "lte": number <= target,
    }[op]


class World:
    """Everything the evaluator needs, loaded once."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.today = timezone.localdate(self.now)
        self.contacts = {contact.pk: ContactView(contact) for contact in Contact.objects.all()}
        for row in ContactTag.objects.select_related("tag"):
            self.contacts[row.contact_id].tags[row.tag.key] = row.score
        for consent in Consent.objects.all():
            self.contacts[consent.contact_id].consents[consent.channel] = consent.granted
        for event in Event.objects.all():
            self.contacts[event.contact_id].events.append(event)
        for stage in ContactStage.objects.select_related("funnel", "stage"):
            self.contacts[stage.contact_id].stages.add((stage.funnel.name.lower(), stage.stage.name.lower()))
        for tier in ContactTier.objects.select_related("program", "tier").filter(tier__isnull=False):
            self.contacts[tier.contact_id].tiers.add((tier.program.name.lower(), tier.tier.name.lower()))
        self.segments = {segment.pk: segment for segment in Segment.objects.all()}
        self.thresholds = TemperatureSettings.current()

    def members(self, definition: Any) -> set[int]:
        return {pk for pk, view in self.contacts.items() if self.holds(definition, view)}

    # --- the tree ---------------------------------------------------------------------------
    def holds(self, node: Any, view: ContactView, stack: tuple[int, ...] = ()) -> bool:
        if "all" in node:
            return all(self.holds(child, view, stack) for child in node["all"])
        if "any" in node:
            return any(self.holds(child, view, stack) for child in node["any"])
        if "not" in node:
            return not self.holds(node["not"], view, stack)
        return getattr(self, node["type"])(node, view, stack)

    # --- leaves -----------------------------------------------------------------------------
    def has_tag(self, leaf, view, stack) -> bool:
        return " ".join(leaf["tag"].split()).lower() in view.tags

    def tag_score(self, leaf, view, stack) -> bool:
        key = " ".join(leaf["tag"].split()).lower()
        return key in view.tags and _compare(leaf["op"], view.tags[key], leaf["value"])

    def score(self, leaf, view, stack) -> bool:
        return _compare(leaf["op"], view.contact.score, leaf["value"])

    def temperature(self, leaf, view, stack) -> bool:
        return self.thresholds.temperature_of(view.contact.score) == leaf["value"]

    def _in_window(self, event: Event, within_days) -> bool:
        return within_days is None or event.occurred_at >= self.now - dt.timedelta(days=within_days)

    def event_count(self, leaf, view, stack) -> bool:
        count = sum(
            1
            for event in view.events
            if event.type == leaf["event_type"]
            and self._in_window(event, leaf.get("within_days"))
            and all(condition_matches(condition, event.properties) for condition in leaf.get("where") or [])
        )
        return _compare(leaf["op"], count, leaf["value"])

    def inactive_days(self, leaf, view, stack) -> bool:
        # "no event at all in the last N days", read from the events themselves
        cutoff = self.now - dt.timedelta(days=leaf["value"])
        return not any(event.occurred_at >= cutoff for event in view.events)

    def purchase_total(self, leaf, view, stack) -> bool:
        total = sum(
            (event.value or Decimal(0))
            for event in view.events
            if event.type == "purchase" and self._in_window(event, leaf.get("within_days"))
        )
        return _compare(leaf["op"], total, leaf["value"])

    def attribute(self, leaf, view, stack) -> bool:
        name, op, value = leaf["name"], leaf["op"], leaf.get("value")
        if name.startswith("properties."):
            key = name.removeprefix("properties.")
            prop = view.contact.properties.get(key)
            if op == "is_empty":
                return prop is None or prop == ""
            if op == "not_empty":
                return not (prop is None or prop == "")
            if op == "between":
                return condition_matches({"property": key, "op": "gte", "value": value[0]}, view.contact.properties) \
                    and condition_matches({"property": key, "op": "lte", "value": value[1]}, view.contact.properties)
            return condition_matches({"property": key, "op": op, "value": value}, view.contact.properties)
        text = getattr(view.contact, name)
        if op == "is_empty":
            return text == ""
        if op == "not_empty":
            return text != ""
        if text == "":
            return False  # a missing value fails every comparison
        if op == "eq":
            return text.lower() == value.lower()
        if op == "ne":
            return text.lower() != value.lower()
        if op == "in":
            return any(text.lower() == item.lower() for item in value)
        return value.lower() in text.lower()  # contains

    def age(self, leaf, view, stack) -> bool:
        born = view.contact.birth_date
        if born is None:
            return False
        today = self.today
        years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        return _compare(leaf["op"], years, leaf["value"])

    def consent(self, leaf, view, stack) -> bool:
        granted = view.consents.get(leaf["channel"].strip().lower(), False)
        return granted if leaf["value"] else not granted

    def segment(self, leaf, view, stack) -> bool:
        segment = self.segments.get(leaf["segment_id"])
        if segment is None or segment.pk in stack:
            return False
        definition = segment.definition
        if segment.for_sending:
            definition = {"all": [definition, {"type": "consent", "channel": "email", "value": True}]}
        return self.holds(definition, view, (*stack, segment.pk))

    def stage(self, leaf, view, stack) -> bool:
        return (leaf["funnel"].strip().lower(), leaf["stage"].strip().lower()) in view.stages

    def tier(self, leaf, view, stack) -> bool:
        return (leaf["program"].strip().lower(), leaf["tier"].strip().lower()) in view.tiers
