"""Factories for the contacts area's tests: events with effects, notes, consents."""

from __future__ import annotations

import datetime as dt
import itertools

from django.db import connection
from django.utils import timezone

from contacts.models import Event

_event_ids = itertools.count(1)


def ensure_event_partitions(start: dt.datetime, end: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [start, end])


def make_event(contact, type: str = "page_view", *, properties: dict | None = None, ago: dt.timedelta | None = None,
               value=None) -> Event:
    occurred_at = timezone.now() - (ago or dt.timedelta(minutes=next(_event_ids)))
    ensure_event_partitions(occurred_at - dt.timedelta(days=1), occurred_at + dt.timedelta(days=1))
    return Event.objects.create(event_id=f"evt-{next(_event_ids)}", contact=contact, type=type,
                                occurred_at=occurred_at, properties=properties or {}, value=value)
