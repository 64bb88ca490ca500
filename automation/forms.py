"""Editor forms. The rule editor has rows added with HTMX (conditions, actions), so it parses its
POST data itself into the API's rule shape and validates with ``automation.rules.validate_rule`` —
one validator for the API and the browser, errors keyed by the same field paths."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automation.models import Rule, SegmentationMatrix
from automation.rules import (
    ACTION_LABELS,
    ACTION_TYPES,
    EXTRA_ACTIONS,
    RuleError,
    rule_summary,
    validate_actions,
    validate_rule,
)
from contacts.models import EVENT_TYPE_CHOICES
from core.conditions import OP_LABELS, OPS, PROPERTY_NAME
from segments.models import Segment

_ROW_KEY = re.compile(r"^(cond|act|row)-(\d+)-(\w+)$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
OP_CHOICES = [(op, OP_LABELS[op]) for op in OPS]
ACTION_CHOICES = [(kind, ACTION_LABELS[kind]) for kind in ACTION_TYPES]


def action_choices(*, extras: bool = True) -> list[tuple[str, str]]:
    """The editor's action types: the built-in ones, plus the higher layers' (``send_webhook``)
    for rules — not for ad-hoc runs, which have no event to send."""
    return ACTION_CHOICES + ([(kind, extra.label) for kind, extra in EXTRA_ACTIONS.items()] if extras else [])


def extra_actions_context() -> dict[str, dict]:
    """kind → {"label", "choices"} for the editor rows of the higher layers' actions."""
    return {kind: {"label": extra.label, "choices": [(str(value), label) for value, label in extra.choices()]}
            for kind, extra in EXTRA_ACTIONS.items()}


def _rows(data: QueryDict, prefix: str) -> list[tuple[int, dict[str, str]]]:
    """``cond-3-op=eq`` … → [(3, {"op": "eq", …}), …] in index order."""
    rows: dict[int, dict[str, str]] = {}
    for key in data:
        match = _ROW_KEY.match(key)
        if match and match.group(1) == prefix:
            rows.setdefault(int(match.group(2)), {})[match.group(3)] = data.get(key, "").strip()
    return sorted(rows.items())


def parse_value(op: str, text: str) -> Any:
    """What the user typed → the condition's JSON value (numbers where numbers are meant)."""
    text = text.strip()
    if op == "in":
        items = [item.strip() for item in text.split(",") if item.strip()]
        return [float(item) if "." in item else int(item) if _NUMBER.match(item) else item for item in items]
    if op in ("gt", "gte", "lt", "lte", "eq", "ne") and _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    return text


def value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _funnel_stage(values: dict[str, str]) -> dict[str, str]:
    """The editor's one select "Funnel::Stage" → funnel and stage."""
    funnel, _sep, stage = values.get("funnel_stage", "").partition("::")
    return {"funnel": funnel, "stage": stage}


def _action_from_row(values: dict) -> dict:
    """One action row of the rule editor or the ad-hoc form as the contract's Action JSON."""
    kind = values.get("type", "")
    if kind == "add_tag":
        return {"type": kind, "tag": values.get("tag", ""), "score": _int_or_text(values.get("score", "") or "1")}
    if kind == "remove_tag":
        return {"type": kind, "tag": values.get("tag", "")}
    if kind == "add_score":
        return {"type": kind, "points": _int_or_text(values.get("points", ""))}
    if kind == "set_stage":
        return {"type": kind, **_funnel_stage(values)}
    if kind in EXTRA_ACTIONS:
        return {"type": kind, EXTRA_ACTIONS[kind].field: _int_or_text(values.get("target", ""))}
    return {"type": kind}


def _action_values(action: dict) -> dict[str, str]:
    values = {key: value_text(value) for key, value in action.items()}
    if action.get("type") == "set_stage":
        values["funnel_stage"] = f"{action.get('funnel', '')}::{action.get('stage', '')}"
    if action.get("type") in EXTRA_ACTIONS:
        values["target"] = value_text(action.get(EXTRA_ACTIONS[action["type"]].field, ""))
    return values


def _int_or_text(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return text or None


@dataclass
class EditorRow:
    """One condition or action row as the editor shows it (values as typed, errors by field)."""

    index: int
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class RuleEditor:
    """The rule editor's state: what was typed, the parsed rule, and errors by field path."""

    values: dict[str, Any]
    conditions: list[EditorRow]
    actions: list[EditorRow]
    data: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    cleaned: dict | None = None

    @property
    def next_condition(self) -> int:
        return max((row.index for row in self.conditions), default=-1) + 1

    @property
    def next_action(self) -> int:
        return max((row.index for row in self.actions), default=-1) + 1

    @property
    def is_valid(self) -> bool:
        return self.cleaned is not None

    @property
    def summary(self) -> str:
        """The rule in words from what is typed now, valid or not (for the live summary)."""
        trigger = self.data.get("trigger") or {}
        conditions = [c for c in trigger.get("where") or [] if c.get("property")]
        actions = []
        for action in self.data.get("actions") or []:
            action = dict(action)
            for key in ("score", "points"):
                if key in action and not isinstance(action[key], int):
                    action[key] = 1 if key == "score" else 0
            if action.get("type") in ("add_tag", "remove_tag") and not action.get("tag"):
                action["tag"] = "…"
            actions.append(action)
        cap = self.data.get("max_points_per_contact")
        return rule_summary(
            event_type=trigger.get("event_type") or "…",
            conditions=conditions,
            actions=actions,
            once_per_contact=bool(self.data.get("once_per_contact")),
            max_points_per_contact=cap if isinstance(cap, int) else None,
        )

    @property
    def general_errors(self) -> list[str]:
        shown = {"name", "description", "trigger.event_type", "max_points_per_contact", "once_per_contact", "active"}
        return [
            f"{path}: {message}" if path not in ("actions", "trigger.where", "body") else message
            for path, message in self.errors.items()
            if path not in shown and not re.match(r"^(trigger\.where|actions)\.\d+", path)
        ]

    @classmethod
    def for_rule(cls, rule: Rule | None) -> RuleEditor:
        if rule is None:
            return cls(
                values={"name": "", "description": "", "event_type": "product_view", "active": True,
                        "once_per_contact": False, "max_points_per_contact": ""},
                conditions=[],
                actions=[EditorRow(0, {"type": "add_tag", "tag": "", "score": "1"})],
                data={"trigger": {"event_type": "product_view", "where": []},
                      "actions": [{"type": "add_tag", "tag": "", "score": 1}]},
            )
        return cls(
            values={
                "name": rule.name,
                "description": rule.description,
                "event_type": rule.event_type,
                "active": rule.active,
                "once_per_contact": rule.once_per_contact,
                "max_points_per_contact": rule.max_points_per_contact or "",
            },
            conditions=[
                EditorRow(index, {"property": c["property"], "op": c["op"], "value": value_text(c["value"])})
                for index, c in enumerate(rule.conditions or [])
            ],
            actions=[EditorRow(index, _action_values(action)) for index, action in enumerate(rule.actions or [])],
            data={
                "trigger": {"event_type": rule.event_type, "where": rule.conditions or []},
                "actions": rule.actions or [],
                "once_per_contact": rule.once_per_contact,
                "max_points_per_contact": rule.max_points_per_contact,
            },
        )

    @classmethod
    def from_post(cls, data: QueryDict) -> RuleEditor:
        """Parse the editor's POST data and validate it (``cleaned`` is set when valid)."""
        values = {
            "name": data.get("name", "").strip(),
            "description": data.get("description", "").strip(),
            "event_type": data.get("event_type", ""),
            "active": data.get("active") in ("on", "true", "1"),
            "once_per_contact": data.get("once_per_contact") in ("on", "true", "1"),
            "max_points_per_contact": data.get("max_points_per_contact", "").strip(),
        }
        condition_rows = [EditorRow(index, row) for index, row in _rows(data, "cond")]
        action_rows = [EditorRow(index, row) for index, row in _rows(data, "act")]
        conditions = [
            {"property": row.values.get("property", ""), "op": row.values.get("op", ""),
             "value": parse_value(row.values.get("op", ""), row.values.get("value", ""))}
            for row in condition_rows
        ]
        actions = [_action_from_row(row.values) for row in action_rows]
        cap_text = values["max_points_per_contact"]
        cap: Any = None
        if cap_text:
            cap = int(cap_text) if re.fullmatch(r"\d+", cap_text) else cap_text
        rule_data = {
            "name": values["name"],
            "description": values["description"],
            "active": values["active"],
            "trigger": {"event_type": values["event_type"], "where": conditions},
            "actions": actions,
            "once_per_contact": values["once_per_contact"],
            "max_points_per_contact": cap,
        }
        editor = cls(values=values, conditions=condition_rows, actions=action_rows, data=rule_data)
        try:
            editor.cleaned = validate_rule(rule_data)
        except RuleError as exc:
            editor.add_errors(exc.errors)
        return editor

    def add_errors(self, errors: list[tuple[str, str]]) -> None:
        """Keep the first message per field path and hang row errors on their rows."""
        self.cleaned = None
        for path, message in errors:
            self.errors.setdefault(path, message)
            match = re.match(r"^(trigger\.where|actions)\.(\d+)(?:\.(\w+))?$", path)
            if not match:
                continue
            rows = self.conditions if match.group(1) == "trigger.where" else self.actions
            position = int(match.group(2))
            if position < len(rows):
                rows[position].errors.setdefault(match.group(3) or "row", message)

    def error(self, path: str) -> str:
        return self.errors.get(path, "")


def default_since() -> datetime:
    return timezone.localtime(timezone.now() - timedelta(days=30)).replace(second=0, microsecond=0)


class RunForm(forms.Form):
    since = forms.DateTimeField(
        label=_("Run on events since"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text=_("In the site's time zone. Pairs the rule already applied are skipped."),
    )

    def clean_since(self) -> datetime:
        since = self.cleaned_data["since"]
        if since > timezone.now():
            raise forms.ValidationError(_("Pick a moment in the past."))
        return since


class MatrixForm(forms.ModelForm):
    """The matrix's own fields; its rows are parsed from ``row-N-value/tag/score`` inputs."""

    class Meta:
        model = SegmentationMatrix
        fields = ["name", "active", "event_type", "property", "match"]
        widgets = {"event_type": forms.Select(choices=EVENT_TYPE_CHOICES)}
        labels = {"name": _("Name"), "event_type": _("Event type"), "property": _("Property"), "match": _("Match")}
        help_texts = {"property": _("The event property to read, e.g. category or url.")}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.row_list: list[EditorRow] = []
        self.row_errors: list[str] = []
        if self.instance.pk:
            self.row_list = [
                EditorRow(index, {"value": str(row.get("value", "")), "tag": str(row.get("tag", "")),
                                  "score": str(row.get("score", 1))})
                for index, row in enumerate(self.instance.rows or [])
            ]
        if self.data:
            self.row_list = [EditorRow(index, row) for index, row in _rows(self.data, "row")]

    @property
    def next_row(self) -> int:
        return max((row.index for row in self.row_list), default=-1) + 1

    def clean_property(self) -> str:
        value = self.cleaned_data["property"].strip()
        if not PROPERTY_NAME.match(value):
            raise forms.ValidationError(_("Use a property name such as category or url (letters, digits, _ . -)."))
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        rows = []
        seen = set()
        for row in self.row_list:
            value, tag, score = row.values.get("value", ""), row.values.get("tag", ""), row.values.get("score", "") or "1"
            if not value and not tag:
                continue  # an empty row is ignored
            if not value:
                row.errors["value"] = _("Enter the property value to match.")
            if not tag:
                row.errors["tag"] = _("Enter the tag to add.")
            elif len(tag) > 100 or "{" in tag or "}" in tag:
                row.errors["tag"] = _("A tag name of at most 100 characters, without { }.")
            if not re.fullmatch(r"-?\d+", score) or int(score) == 0 or abs(int(score)) > 1_000_000:
                row.errors["score"] = _("A whole number other than 0.")
            if value and value.lower() in seen:
                row.errors["value"] = _("This value is already in the table.")
            seen.add(value.lower())
            if not row.errors:
                rows.append({"value": value, "tag": " ".join(tag.split()), "score": int(score)})
        if any(row.errors for row in self.row_list):
            raise forms.ValidationError(_("Some rows need attention (see below)."))
        if not rows:
            raise forms.ValidationError(_("Add at least one row: a value and the tag it gives."))
        if len(rows) > 2000:
            raise forms.ValidationError(_("A matrix may have at most 2,000 rows."))
        cleaned["rows"] = rows
        return cleaned


class AdhocForm(forms.Form):
    """Run actions once over a saved segment or the contact list's current filter."""

    TARGETS = [("segment", _("A saved segment")), ("filter", _("Contacts matching a contact-list filter"))]
    target = forms.ChoiceField(choices=TARGETS, widget=forms.RadioSelect, initial="segment")
    segment = forms.ModelChoiceField(queryset=None, required=False, empty_label=_("— choose a segment —"))
    query = forms.CharField(required=False, label=_("Contact-list filter"),
                            help_text=_("The contact list's query string, e.g. tag=kurtki&temperature=hot."))
    title = forms.CharField(max_length=150, required=False, label=_("Name of this run"),
                            help_text=_("Shown on the Jobs page, e.g. “Winter promo”."))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["segment"].queryset = Segment.objects.order_by("name")
        self.action_rows: list[EditorRow] = []
        self.actions: list[dict] = []
        if self.data:
            self.action_rows = [EditorRow(index, row) for index, row in _rows(self.data, "act")]
        else:
            self.action_rows = [EditorRow(0, {"type": "add_tag", "tag": "", "score": "1"})]

    @property
    def next_action(self) -> int:
        return max((row.index for row in self.action_rows), default=-1) + 1

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("target") == "segment" and not cleaned.get("segment"):
            self.add_error("segment", _("Choose the segment to run the actions on."))
        if cleaned.get("target") == "filter" and not (cleaned.get("query") or "").strip():
            self.add_error("query", _("Open the contact list, filter it, and use “Run actions” there (or paste its query "
                                      "string)."))
        actions = [_action_from_row(row.values) for row in self.action_rows]
        for row, action in zip(self.action_rows, actions, strict=True):
            if action.get("type") in EXTRA_ACTIONS:
                row.errors["type"] = _("This action needs an event: use it in a rule.")
                self.add_error(None, _("Some actions need attention (see below)."))
        try:
            self.actions = validate_actions(actions)
        except RuleError as exc:
            for path, message in exc.errors:
                match = re.match(r"^actions\.(\d+)(?:\.(\w+))?$", path)
                if match and int(match.group(1)) < len(self.action_rows):
                    self.action_rows[int(match.group(1))].errors.setdefault(match.group(2) or "row", message)
                else:
                    self.add_error(None, message)
            if not self.errors:
                self.add_error(None, _("Some actions need attention (see below)."))
        for index, action in enumerate(self.actions):
            if action["type"] in ("add_tag", "remove_tag") and "{" in action["tag"]:
                self.action_rows[index].errors["tag"] = _("Templates such as {category} need an event; use a plain tag "
                                                          "name here.")
                self.add_error(None, _("Some actions need attention (see below)."))
        return cleaned

