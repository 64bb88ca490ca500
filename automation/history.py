"""The change history of rules and segmentation matrices: who created, changed, switched or deleted
them, what changed, and what each version said in words. Read from the pghistory event tables
(``RuleEvent``, ``SegmentationMatrixEvent``) that the models' triggers write."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from automation.models import Rule, SegmentationMatrix
from automation.rules import event_phrase, rule_summary
from contacts.models import EVENT_TYPE_LABELS
from core.audit import actors_name

HEADLINES = {"insert": _("Created"), "delete": _("Deleted"), "recorded": _("History starts")}


def matrix_summary(*, event_type: str, property: str, match: str, rows: list[dict]) -> str:
    """"On a product view, category equals: kurtki → KURTKI +1, buty → BUTY +2 and 10 more." """
    how = dict(SegmentationMatrix.Match.choices).get(match, match)
    shown = ", ".join(f"{row.get('value')} → {row.get('tag')} +{row.get('score', 1)}" for row in rows[:3])
    if len(rows) > 3:
        shown = ngettext("%(rows)s and %(count)s more", "%(rows)s and %(count)s more", len(rows) - 3) % {
            "rows": shown, "count": len(rows) - 3}
    return gettext("On %(event)s, %(property)s %(match)s: %(rows)s.") % {
        "event": event_phrase(event_type), "property": property, "match": how, "rows": shown or gettext("no rows")}


# A switch is told as the headline of its entry ("Switched off"), not as one of its changes.
SWITCHED_ON = _("switched on")
SWITCHED_OFF = _("switched off")


def _event_label(event_type: str) -> str:
    return str(EVENT_TYPE_LABELS.get(event_type, event_type))


def _cap(value: int | None) -> str:
    return ngettext("%(count)s point", "%(count)s points", value) % {"count": value} if value else gettext("no cap")


def _rule_changes(old: Any, new: Any) -> list[str]:
    changes = []
    if old.active != new.active:
        changes.append(str(SWITCHED_ON if new.active else SWITCHED_OFF))
    if old.name != new.name:
        changes.append(gettext("renamed from “%(name)s”") % {"name": old.name})
    if old.event_type != new.event_type:
        changes.append(gettext("trigger %(old)s → %(new)s") % {"old": _event_label(old.event_type),
                                                                "new": _event_label(new.event_type)})
    if old.conditions != new.conditions:
        changes.append(gettext("conditions changed"))
    if old.actions != new.actions:
        changes.append(gettext("actions changed"))
    if old.once_per_contact != new.once_per_contact:
        changes.append(gettext("once per contact") if new.once_per_contact else gettext("repeatable"))
    if old.max_points_per_contact != new.max_points_per_contact:
        changes.append(gettext("points cap %(old)s → %(new)s") % {"old": _cap(old.max_points_per_contact),
                                                                    "new": _cap(new.max_points_per_contact)})
    if old.description != new.description:
        changes.append(gettext("description changed"))
    return changes


def _matrix_changes(old: Any, new: Any) -> list[str]:
    changes = []
    if old.active != new.active:
        changes.append(str(SWITCHED_ON if new.active else SWITCHED_OFF))
    if old.name != new.name:
        changes.append(gettext("renamed from “%(name)s”") % {"name": old.name})
    if (old.event_type, old.property, old.match) != (new.event_type, new.property, new.match):
        changes.append(gettext("now matches %(event)s %(property)s (%(match)s)") % {
            "event": _event_label(new.event_type), "property": new.property,
            "match": dict(SegmentationMatrix.Match.choices).get(new.match, new.match)})
    if old.rows != new.rows:
        changes.append(gettext("rows changed (%(old)s → %(new)s)") % {"old": len(old.rows), "new": len(new.rows)}
                       if len(old.rows) != len(new.rows) else gettext("rows changed"))
    return changes


def _rule_version_summary(version: Any) -> str:
    return rule_summary(event_type=version.event_type, conditions=version.conditions or [],
                        actions=version.actions or [], once_per_contact=version.once_per_contact,
                        max_points_per_contact=version.max_points_per_contact)


def _matrix_version_summary(version: Any) -> str:
    return matrix_summary(event_type=version.event_type, property=version.property, match=version.match,
                          rows=version.rows or [])


@dataclass(frozen=True)
class _Kind:
    """What is audited: rules or matrices, with how a version is told in words and compared."""

    label: str | Promise
    model: type
    url_name: str
    url_kwarg: str
    summary: Callable[[Any], str]
    changes: Callable[[Any, Any], list[str]]
    plural: str | Promise = ""

    @property
    def events(self):
        return self.model.pgh_event_models["insert"].objects  # RuleEvent / SegmentationMatrixEvent


RULE = _Kind(_("Rule"), Rule, "automation:rule_edit", "rule_id", _rule_version_summary, _rule_changes)
MATRIX = _Kind(_("Matrix"), SegmentationMatrix, "automation:matrix_edit", "matrix_id", _matrix_version_summary,
               _matrix_changes)
KINDS = {"rule": RULE, "matrix": MATRIX}
# A higher layer's audited model joins the page from its AppConfig.ready() (webhooks do): its
# pghistory event model needs ``name`` and ``active`` fields.
HistoryKind = _Kind


def kind_register(key: str, kind: _Kind) -> None:
    KINDS[key] = kind


def _entries(kind: _Kind, events: list[Any]) -> list[dict]:
    """History entries for ``events`` (each annotated with ``previous_id``), two queries in all:
    the previous versions and the objects that still exist."""
    previous = kind.events.in_bulk([event.previous_id for event in events if event.previous_id])
    existing = set(kind.model.objects.filter(pk__in={event.pgh_obj_id for event in events}).values_list("pk", flat=True))
    entries = []
    for event in events:
        before = previous.get(event.previous_id)
        icon = "edit"
        if event.pgh_label == "update":
            changes = kind.changes(before, event) if before is not None else []
            headline = gettext("Changed")
            if changes and changes[0] in (str(SWITCHED_ON), str(SWITCHED_OFF)):
                headline, icon = capfirst(changes.pop(0)), "zap"
        else:
            changes, headline = [], str(HEADLINES.get(event.pgh_label, event.pgh_label))
            icon = "plus" if event.pgh_label in ("insert", "recorded") else "edit"
        entries.append({
            "at": event.pgh_created_at, "kind": kind.label, "name": event.name, "headline": headline, "icon": icon,
            "changes": changes, "summary": kind.summary(event), "active": event.active,
            "url": reverse(kind.url_name, kwargs={kind.url_kwarg: event.pgh_obj_id})
            if event.pgh_obj_id in existing else None,
            "context": event.pgh_context.metadata if event.pgh_context else {},
        })
    return entries


def _with_previous(queryset):
    events = queryset.model.objects
    return queryset.select_related("pgh_context").annotate(previous_id=Subquery(
        events.filter(pgh_obj_id=OuterRef("pgh_obj_id"), pgh_id__lt=OuterRef("pgh_id")).order_by("-pgh_id").values("pgh_id")[:1]
    ))


def object_history(kind: _Kind, object_id: int, *, limit: int = 10) -> list[dict]:
    """The latest changes of one rule or matrix, newest first."""
    events = list(_with_previous(kind.events.filter(pgh_obj_id=object_id)).order_by("-pgh_id")[:limit])
    entries = _entries(kind, events)
    actors_name(entries)
    return entries


def recent_changes(*, kind: str = "", page: int = 1, per_page: int = 50) -> tuple[list[dict], bool]:
    """All rule and matrix changes, newest first, a page at a time (paginated in SQL across both
    tables), and whether there is a next page."""
    kinds = {name: value for name, value in KINDS.items() if not kind or name == kind}
    union = " UNION ALL ".join(
        f"SELECT %s AS kind, pgh_id, pgh_created_at FROM {value.events.model._meta.db_table}" for value in kinds.values()
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT kind, pgh_id FROM ({union}) AS changes ORDER BY pgh_created_at DESC, pgh_id DESC "
                       "LIMIT %s OFFSET %s", [*kinds, per_page + 1, (page - 1) * per_page])
        rows = cursor.fetchall()
    has_next = len(rows) > per_page
    rows = rows[:per_page]
    entries: list[dict] = []
    order = {(name, pgh_id): position for position, (name, pgh_id) in enumerate(rows)}
    for name, value in kinds.items():
        ids = [pgh_id for row_kind, pgh_id in rows if row_kind == name]
        if ids:
            events = list(_with_previous(value.events.filter(pgh_id__in=ids)))
            for entry, event in zip(_entries(value, events), events, strict=True):
                entry["position"] = order[(name, event.pgh_id)]
                entries.append(entry)
    entries.sort(key=lambda entry: entry["position"])
    actors_name(entries)
    return entries, has_next
