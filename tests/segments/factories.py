"""Small builders for the segment tests (events, consents, saved segments)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from contacts.models import Consent, Contact, Event
from segments.models import Segment

_events = iter(range(1, 10**9))


def consent(contact: Contact, channel: str = "email", granted: bool = True) -> Consent:
    return Consent.objects.update_or_create(contact=contact, channel=channel, defaults={"granted": granted})[0]


def add_event(contact: Contact, event_type: str = "page_view", *, days_ago: float = 0, value: Decimal | None = None,
              **properties) -> Event:
    """An event in the past, keeping ``last_activity_at`` as ingestion does."""
    occurred = timezone.now() - dt.timedelta(days=days_ago)
    with connection.cursor() as cursor:
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [occurred, occurred])
    if value is not None:
        properties["value"] = float(value)
    event = Event.objects.create(
        event_id=f"seg-test-{next(_events)}", contact=contact, type=event_type, occurred_at=occurred,
        properties=properties, value=value,
    )
    if contact.last_activity_at is None or occurred > contact.last_activity_at:
        contact.last_activity_at = occurred
        Contact.objects.filter(pk=contact.pk).update(last_activity_at=occurred)
    return event


def make_segment(definition: dict, name: str = "Segment", **fields) -> Segment:
    return Segment.objects.create(name=name, definition=definition, **fields)
