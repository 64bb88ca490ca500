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

from contacts.models import Tag, tag_key

METRIC_TYPES = {
    "tag_score": "Score of a tag",
    "purchase_count": "Number of purchases",
    "purchase_total": "Purchase total",
    "score": "Contact score",
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
        return None, [FieldError(field, "must be an object such as {\"type\": \"tag_score\", \"tag\": \"PURCHASE\"}")]
    metric_type = raw.get("type")
    if metric_type not in METRIC_TYPES:
        choices = ", ".join(METRIC_TYPES)
        return None, [FieldError(f"{field}.type", f"must be one of {choices}")]
    errors: list[FieldError] = []
    unknown = set(raw) - {"type", "tag", "within_days"}
    if unknown:
        errors.append(FieldError(f"{field}.{sorted(unknown)[0]}", "is not a metric setting"))
    metric: dict = {"type": metric_type}
    if metric_type == "tag_score":
        tag = raw.get("tag")
        if not isinstance(tag, str) or not tag.strip():
            errors.append(FieldError(f"{field}.tag", "is required for a tag_score metric (the tag's name)"))
        elif len(tag.strip()) > 100:
            errors.append(FieldError(f"{field}.tag", "is longer than 100 characters"))
        else:
            metric["tag"] = " ".join(tag.split())
    elif raw.get("tag") not in (None, ""):
        errors.append(FieldError(f"{field}.tag", "applies only to a tag_score metric"))
    within_days = raw.get("within_days")
    if metric_type in WINDOWED:
        if within_days is not None and (
            isinstance(within_days, bool) or not isinstance(within_days, int) or not 1 <= within_days <= MAX_WITHIN_DAYS
        ):
            errors.append(FieldError(f"{field}.within_days", f"must be null (all time) or a whole number of days from 1 to {MAX_WITHIN_DAYS}"))
        else:
            metric["within_days"] = within_days
    elif within_days is not None:
        errors.append(FieldError(f"{field}.within_days", "applies only to purchase_count and purchase_total"))
    return (None if errors else metric), errors


def metric_describe(metric: dict) -> str:
    """The metric in words, for pages."""
    metric_type = metric.get("type")
    window = metric.get("within_days")
    suffix = f" in the last {window} days" if window else " (all time)"
    if metric_type == "tag_score":
        return f"Score of the tag “{metric.get('tag', '')}”"
    if metric_type == "purchase_count":
        return "Number of purchases" + suffix
    if metric_type == "purchase_total":
        return "Purchase total" + suffix
    if metric_type == "score":
        return "Contact score"
    return "Unknown metric"


def metric_unit(metric: dict) -> str:
    """How a distance to the next tier reads: '3 more points of PURCHASE', '2 more purchases'."""
    return {
        "tag_score": f"points of {metric.get('tag', '')}",
        "purchase_count": "purchases",
        "purchase_total": "in purchases",
        "score": "score points",
    }.get(metric.get("type", ""), "")


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
