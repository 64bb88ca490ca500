"""`{{ when|ago }}`: the largest unit only ("3 months ago"), for narrow table columns.

Django's `naturaltime` gives two units ("2 months, 4 weeks ago"), which wraps or widens lists;
the exact moment stays available in a `title` attribute next to it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter(expects_localtime=False)
def ago(value: datetime | date | None) -> str:
    if not value:
        return ""
    now = timezone.now() if isinstance(value, datetime) and timezone.is_aware(value) else datetime.now()
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=now.tzinfo)
    delta = now - value
    if timedelta(0) <= delta < timedelta(minutes=1):
        return "just now"
    if delta < timedelta(0):
        return f"in {timesince(now, value, depth=1)}"
    return f"{timesince(value, now, depth=1)} ago"
