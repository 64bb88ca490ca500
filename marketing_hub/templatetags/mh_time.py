"""`{{ when|ago }}`: the largest unit only ("3 months ago"), for narrow table columns.

Django's `naturaltime` gives two units ("2 months, 4 weeks ago"), which wraps or widens lists;
the exact moment stays available in a `title` attribute next to it.

Translated: the units come from Django's humanize catalogue, whose "naturaltime" strings are
declined for "… ago" / "in …" (Polish "1 godzinę temu", "za 3 dni", not the nominative
"1 godzina" that plain timesince gives); the frame ("%(delta)s ago") is ours.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django import template
from django.contrib.humanize.templatetags.humanize import NaturalTimeFormatter
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext

register = template.Library()


@register.filter(expects_localtime=False)
def ago(value: datetime | date | None) -> str:
    if not value:
        return ""
    now = timezone.now() if isinstance(value, datetime) and timezone.is_aware(value) else datetime.now()
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=now.tzinfo)
    delta = now - value
    if abs(delta) < timedelta(minutes=1):
        return gettext("just now")
    if delta < timedelta(0):
        future = timesince(now, value, time_strings=NaturalTimeFormatter.future_substrings, depth=1)
        return gettext("in %(delta)s") % {"delta": future}
    past = timesince(value, now, time_strings=NaturalTimeFormatter.past_substrings, depth=1)
    return gettext("%(delta)s ago") % {"delta": past}
