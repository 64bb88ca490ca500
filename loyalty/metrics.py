"""Loyalty metrics: their validation, their description in words, and the SQL that computes them.

A metric is JSON, as in the API contract::

    {"type": "tag_score", "tag": "PURCHASE"}          the contact's score of that tag (absent = 0)
    {"type": "purchase_count", "within_days": null}   number of purchase events (all time or last N days)
    {"type": "purchase_total", "within_days": 365}    sum of the purchases' value
    {"type": "score"}                                 the contact (lead) score

``metric_sql`` returns ONE set-based query producing ``(contact_id, metric_value)`` for the
contacts in scope; contacts without any data get 0 (the caller left-joins it to contacts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from contacts.models import Tag, tag_key

METRIC_TYPES = {
    "tag_score": gettext_lazy("Score of a tag"),
    "purchase_count": gettext_lazy("Number of purchases"),
    "purchase_total": gettext_lazy("Purchase total"),
    "score": gettext_lazy("Contact score"),
}
WINDOWED = {"purchase_count", "purchase_total"}
MAX_WITHIN_DAYS = 3650


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


def metric_clean(raw, *, field: str = "metric") -> tuple[dict | None, list[FieldError]]:
    """The normalised metric JSON, or the errors (each naming the field)."""
    if not isinstance(raw, dict):
        return None, [FieldError(field, _("must be an object such as %(example)s")
                                  % {"example": '{"type": "tag_score", "tag": "PURCHASE"}'})]
    metric_type = raw.get("type")
    if metric_type not in METRIC_TYPES:
        choices = ", ".join(METRIC_TYPES)
        return None, [FieldError(f"{field}.type", _("must be one of %(choices)s") % {"choices": choices})]
    errors: list[FieldError] = []
    unknown = set(raw) - {"type", "tag", "within_days"}
    if unknown:
        errors.append(FieldError(f"{field}.{sorted(unknown)[0]}", _("is not a metric setting")))
    metric: dict = {"type": metric_type}
    if metric_type == "tag_score":
        tag = raw.get("tag")
        if not isinstance(tag, str) or not tag.strip():
            errors.append(FieldError(f"{field}.tag", _("is required for a tag_score metric (the tag's name)")))
        elif len(tag.strip()) > 100:
            errors.append(FieldError(f"{field}.tag", _("is longer than 100 characters")))
        else:
            metric["tag"] = " ".join(tag.split())
    elif raw.get("tag") not in (None, ""):
        errors.append(FieldError(f"{field}.tag", _("applies only to a tag_score metric")))
    within_days = raw.get("within_days")
    if metric_type in WINDOWED:
        if within_days is not None and (
            isinstance(within_days, bool) or not isinstance(within_days, int) or not 1 <= within_days <= MAX_WITHIN_DAYS
        ):
            errors.append(FieldError(f"{field}.within_days", _("must be null (all time) or a whole number of days from 1 to %(max)s")
                                      % {"max": MAX_WITHIN_DAYS}))
        else:
            metric["within_days"] = within_days
    elif within_days is not None:
        errors.append(FieldError(f"{field}.within_days", _("applies only to purchase_count and purchase_total")))
    return (None if errors else metric), errors


def metric_describe(metric: dict) -> str:
    """The metric in words, for pages."""
    metric_type = metric.get("type")
    window = metric.get("within_days")
    if metric_type == "tag_score":
        return _("Score of the tag “%(tag)s”") % {"tag": metric.get("tag", "")}
    if metric_type == "purchase_count":
        if window:
            return ngettext("Number of purchases in the last %(days)s day", "Number of purchases in the last %(days)s days",
                            window) % {"days": window}
        return _("Number of purchases (all time)")
    if metric_type == "purchase_total":
        if window:
            return ngettext("Purchase total in the last %(days)s day", "Purchase total in the last %(days)s days",
                            window) % {"days": window}
        return _("Purchase total (all time)")
    if metric_type == "score":
        return _("Contact score")
    return _("Unknown metric")


def metric_unit(metric: dict) -> str:
    """How a distance to the next tier reads: '3 more points of PURCHASE', '2 more purchases'."""
    return {
        "tag_score": _("points of %(tag)s") % {"tag": metric.get("tag", "")},
        "purchase_count": _("purchases"),
        "purchase_total": _("in purchases"),
        "score": _("score points"),
    }.get(metric.get("type", ""), "")


def metric_distance(metric: dict, distance: Decimal) -> str:
    """The way to the next tier in words, with the number in the page's language and the noun in
    the right plural form: '3 more points of PURCHASE', '1 more purchase', '120.50 more in purchases'."""
    whole = distance == distance.to_integral_value()
    shown = number_format(int(distance) if whole else distance, decimal_pos=None if whole else 2, force_grouping=True)
    # fractions take the "many" form in the catalogues' plural rules; only whole numbers pick 1 or 2–4
    count = int(distance) if whole else 5
    metric_type = metric.get("type", "")
    if metric_type == "tag_score":
        return ngettext("%(count)s more point of %(tag)s", "%(count)s more points of %(tag)s", count) % {
            "count": shown, "tag": metric.get("tag", "")}
    if metric_type == "purchase_count":
        return ngettext("%(count)s more purchase", "%(count)s more purchases", count) % {"count": shown}
    if metric_type == "purchase_total":
        return _("%(count)s more in purchases") % {"count": shown}
    if metric_type == "score":
        return ngettext("%(count)s more score point", "%(count)s more score points", count) % {"count": shown}
    return shown


def metric_is_whole(metric: dict) -> bool:
    return metric.get("type") in {"tag_score", "purchase_count", "score"}


def metric_sql(metric: dict, *, scope_sql: str, now: datetime) -> tuple[str | None, dict]:
    """``SELECT contact_id, metric_value`` for contacts that have data, restricted by ``scope_sql``
    (a condition on ``{col}``, e.g. ``{col} = ANY(%(scope_ids)s)`` or ``TRUE``). Returned with its
    parameters (named, prefixed ``m_``). ``None`` for the contact score: it is a column of the
    contact row itself, so the caller reads it without a join."""
    metric_type = metric["type"]
    params: dict = {}
    if metric_type == "tag_score":
        tag_id = Tag.objects.filter(key=tag_key(metric["tag"])).values_list("id", flat=True).first()
        if tag_id is None:
            return "SELECT NULL::bigint AS contact_id, NULL::numeric AS metric_value WHERE FALSE", params
        params["m_tag_id"] = tag_id
        sql = (
            "SELECT ct.contact_id, ct.score::numeric AS metric_value FROM contacts_contacttag ct "
            f"WHERE ct.tag_id = %(m_tag_id)s AND ({scope_sql.format(col='ct.contact_id')})"
        )
        return sql, params
    if metric_type in WINDOWED:
        aggregate = "count(*)::numeric" if metric_type == "purchase_count" else "COALESCE(sum(e.value), 0)"
        window = ""
        if metric.get("within_days"):
            params["m_since"] = now - timedelta(days=int(metric["within_days"]))
            window = "AND e.occurred_at >= %(m_since)s "
        # event_purchase_idx: (contact_id, occurred_at) INCLUDE (value) WHERE type = 'purchase'
        sql = (
            f"SELECT e.contact_id, {aggregate} AS metric_value FROM automation_event e "
            f"WHERE e.type = 'purchase' {window}AND ({scope_sql.format(col='e.contact_id')}) "
            "GROUP BY e.contact_id"
        )
        return sql, params
    if metric_type == "score":
        return None, params
    raise ValueError(f"unknown metric type {metric_type!r}")
