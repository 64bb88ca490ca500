"""Rules as data: validation (with field paths for the API and the editor), tag-name templates,
plain-language summaries, and the API shape of a rule.

A rule's trigger is an event type plus conditions (``core.conditions``); its actions are
``add_tag`` (tag may be a template such as ``"{category}"``), ``remove_tag``, ``add_score`` and
``set_stage``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from automation.models import Rule
from contacts.models import EVENT_TYPE_LABELS, EVENT_TYPES
from core.conditions import PROPERTY_NAME, ConditionError, describe_condition, validate_conditions
from core.validators import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from leads.funnels import funnel_find, stage_find

ACTION_TYPES = ("add_tag", "remove_tag", "add_score", "set_stage")
ACTION_LABELS = {
    "add_tag": _("Add tag"),
    "remove_tag": _("Remove tag"),
    "add_score": _("Add points"),
    "set_stage": _("Move to funnel stage"),
}


@dataclass(frozen=True)
class ExtraAction:
    """A rule action that a higher layer contributes (registered from its ``AppConfig.ready()``;
    this area never imports it): ``send_webhook`` comes from the webhooks area. ``clean`` returns
    the cleaned action or appends (path, message) errors; ``choices`` lists the editor's targets
    as (value, label); ``field`` names the action's one target field."""

    label: str | Promise
    field: str
    clean: Callable[[dict, str, list], dict | None]
    describe: Callable[[dict], str]
    choices: Callable[[], list[tuple[int, str]]]


EXTRA_ACTIONS: dict[str, ExtraAction] = {}


def action_register(kind: str, action: ExtraAction) -> None:
    EXTRA_ACTIONS[kind] = action
    ACTION_LABELS[kind] = action.label


def action_types() -> tuple[str, ...]:
    return ACTION_TYPES + tuple(EXTRA_ACTIONS)


MAX_CONDITIONS = 20
MAX_ACTIONS = 20
MAX_AMOUNT = 1_000_000
# The column is an int4.
MAX_POINTS_CAP = 2**31 - 1
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class RuleError(ValueError):
    """Invalid rule input: ``errors`` is a list of (dotted field path, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors

    def as_api(self) -> dict:
        return {"errors": [{"field": field, "message": message} for field, message in self.errors]}


# --- tag-name templates ---------------------------------------------------------------------------
def template_parts(template: str) -> list[tuple[str, str]]:
    """``"Lubi {category}!"`` → ``[("text", "Lubi "), ("property", "category"), ("text", "!")]``.

    Raises ValueError for unbalanced braces or a placeholder that is not a property name.
    """
    parts: list[tuple[str, str]] = []
    position = 0
    for match in PLACEHOLDER.finditer(template):
        literal = template[position : match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(gettext("has an unbalanced { or }"))
        if literal:
            parts.append(("text", literal))
        name = match.group(1).strip()
        if not PROPERTY_NAME.match(name):
            raise ValueError(gettext("placeholder %(placeholder)s must name an event property, e.g. {category}")
                             % {"placeholder": "{" + match.group(1) + "}"})
        parts.append(("property", name))
        position = match.end()
    rest = template[position:]
    if "{" in rest or "}" in rest:
        raise ValueError(gettext("has an unbalanced { or }"))
    if rest:
        parts.append(("text", rest))
    return parts


def template_sql(template: str, *, properties_sql: str = "properties") -> str:
    """The same fill in SQL: NULL when a placeholder's value is missing or blank.

    Only for validated templates (placeholder names are property names, quoted as literals).
    """
    pieces, guards = [], []
    for kind, text in template_parts(template):
        literal = "'" + text.replace("'", "''").replace("%", "%%") + "'"
        if kind == "text":
            pieces.append(literal)
            continue
        value = f"({properties_sql} ->> {literal})"
        guards.append(
            f"jsonb_typeof({properties_sql} -> {literal}) IN ('string', 'number', 'boolean') "
            f"AND btrim({value}) <> ''"
        )
        pieces.append(value)
    if not guards:
        return "'" + template.replace("'", "''").replace("%", "%%") + "'"
    return f"(CASE WHEN {' AND '.join(guards)} THEN concat({', '.join(pieces)}) END)"


# --- validation -----------------------------------------------------------------------------------
def _int_field(value: Any, path: str, errors: list, *, allow_zero: bool = False) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not value.is_integer()):
        errors.append((path, gettext("must be a whole number")))
        return None
    value = int(value)
    if abs(value) > MAX_AMOUNT:
        errors.append((path, gettext("must be between -%(high)s and %(high)s") % {"high": intcomma(MAX_AMOUNT)}))
        return None
    if value == 0 and not allow_zero:
        errors.append((path, gettext("must not be 0")))
        return None
    return value


def _tag_field(value: Any, path: str, errors: list) -> str | None:
    if not isinstance(value, str) or not value.strip():
        errors.append((path, gettext("is required (a tag name, or a template such as {category})")))
        return None
    tag = " ".join(value.split())
    if has_control_characters(tag):
        errors.append((path, CONTROL_CHARACTERS_MESSAGE))
        return None
    if len(tag) > 100:
        errors.append((path, gettext("may be at most 100 characters")))
        return None
    try:
        template_parts(tag)
    except ValueError as exc:
        errors.append((path, str(exc)))
        return None
    return tag


def validate_actions(actions: Any, *, field: str = "actions") -> list[dict]:
    errors: list[tuple[str, str]] = []
    if not isinstance(actions, list) or not actions:
        raise RuleError([(field, gettext("must be a non-empty list of actions"))])
    if len(actions) > MAX_ACTIONS:
        raise RuleError([(field, gettext("may hold at most %(count)s actions") % {"count": MAX_ACTIONS})])
    cleaned: list[dict] = []
    for index, action in enumerate(actions):
        path = f"{field}.{index}"
        if not isinstance(action, dict):
            errors.append((path, gettext("must be an object with a type")))
            continue
        kind = action.get("type")
        if kind in EXTRA_ACTIONS:
            extra = EXTRA_ACTIONS[kind]
            for key in sorted(set(action) - {"type", extra.field}):
                errors.append((f"{path}.{key}", gettext("is not a field of %(kind)s") % {"kind": kind}))
            cleaned_extra = extra.clean(action, path, errors)
            if cleaned_extra is not None:
                cleaned.append(cleaned_extra)
            continue
        if kind not in ACTION_TYPES:
            errors.append((f"{path}.type", gettext("must be one of %(choices)s") % {"choices": ", ".join(action_types())}))
            continue
        allowed = {
            "add_tag": {"type", "tag", "score"},
            "remove_tag": {"type", "tag"},
            "add_score": {"type", "points"},
            "set_stage": {"type", "funnel", "stage"},
        }[kind]
        for key in sorted(set(action) - allowed):
            errors.append((f"{path}.{key}", gettext("is not a field of %(kind)s") % {"kind": kind}))
        if kind == "add_tag":
            tag = _tag_field(action.get("tag"), f"{path}.tag", errors)
            score = _int_field(action.get("score", 1), f"{path}.score", errors)
            if tag is not None and score is not None:
                cleaned.append({"type": kind, "tag": tag, "score": score})
        elif kind == "remove_tag":
            tag = _tag_field(action.get("tag"), f"{path}.tag", errors)
            if tag is not None:
                cleaned.append({"type": kind, "tag": tag})
        elif kind == "add_score":
            if "points" not in action:
                errors.append((f"{path}.points", gettext("is required")))
                continue
            points = _int_field(action.get("points"), f"{path}.points", errors)
            if points is not None:
                cleaned.append({"type": kind, "points": points})
        else:
            funnel, stage = action.get("funnel"), action.get("stage")
            if not isinstance(funnel, str) or not funnel.strip():
                errors.append((f"{path}.funnel", gettext("is required")))
                continue
            if not isinstance(stage, str) or not stage.strip():
                errors.append((f"{path}.stage", gettext("is required")))
                continue
            if has_control_characters(funnel) or has_control_characters(stage):
                errors.append((f"{path}.{'funnel' if has_control_characters(funnel) else 'stage'}", CONTROL_CHARACTERS_MESSAGE))
                continue

            found = stage_find(funnel, stage)
            if found is None:
                if funnel_find(funnel) is None:
                    errors.append((f"{path}.funnel", gettext("no funnel named %(funnel)s") % {"funnel": repr(funnel.strip())}))
                else:
                    errors.append((f"{path}.stage", gettext("funnel %(funnel)s has no stage %(stage)s") % {
                        "funnel": repr(funnel.strip()), "stage": repr(stage.strip())}))
                continue
            cleaned.append({"type": kind, "funnel": found.funnel.name, "stage": found.name})
    if errors:
        raise RuleError(errors)
    return cleaned


def rule_points(actions: list[dict]) -> int:
    return sum(action.get("points", 0) for action in actions if action.get("type") == "add_score")


RULE_FIELDS = {"name", "description", "active", "trigger", "actions", "once_per_contact", "max_points_per_contact"}


def validate_rule(data: Any, *, partial: bool = False) -> dict:
    """API/editor input → model field values. ``partial`` (PATCH) validates only what is given.

    Raises RuleError with dotted field paths (``trigger.where.0.value``, ``actions.1.tag``).
    """
    if not isinstance(data, dict):
        raise RuleError([("body", gettext("must be a JSON object"))])
    errors: list[tuple[str, str]] = []
    cleaned: dict = {}
    for key in sorted(set(data) - RULE_FIELDS - {"id"}):
        errors.append((key, gettext("is not a field of a rule")))
    if not partial or "name" in data:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(("name", gettext("is required")))
        elif len(name.strip()) > 200:
            errors.append(("name", gettext("may be at most 200 characters")))
        elif has_control_characters(name):
            errors.append(("name", CONTROL_CHARACTERS_MESSAGE))
        else:
            cleaned["name"] = name.strip()
    if "description" in data:
        if not isinstance(data["description"], str):
            errors.append(("description", gettext("must be a text")))
        elif has_control_characters(data["description"]):
            errors.append(("description", CONTROL_CHARACTERS_MESSAGE))
        else:
            cleaned["description"] = data["description"].strip()[:2000]
    for flag in ("active", "once_per_contact"):
        if flag in data:
            if not isinstance(data[flag], bool):
                errors.append((flag, gettext("must be true or false")))
            else:
                cleaned[flag] = data[flag]
    if "max_points_per_contact" in data:
        cap = data["max_points_per_contact"]
        if cap is None:
            cleaned["max_points_per_contact"] = None
        elif isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
            errors.append(("max_points_per_contact", gettext("must be a positive whole number or null")))
        elif cap > MAX_POINTS_CAP:
            errors.append(("max_points_per_contact", gettext("must be at most %(high)s") % {"high": intcomma(MAX_POINTS_CAP)}))
        else:
            cleaned["max_points_per_contact"] = cap
    if not partial or "trigger" in data:
        trigger = data.get("trigger")
        if not isinstance(trigger, dict):
            errors.append(("trigger", gettext("is required: {\"event_type\": ..., \"where\": [...]}")))
        else:
            for key in sorted(set(trigger) - {"event_type", "where"}):
                errors.append((f"trigger.{key}", gettext("is not a field of a trigger")))
            event_type = trigger.get("event_type")
            if event_type not in EVENT_TYPES:
                errors.append(("trigger.event_type", gettext("must be one of %(choices)s") % {"choices": ", ".join(EVENT_TYPES)}))
            else:
                cleaned["event_type"] = event_type
            where = trigger.get("where", [])
            if isinstance(where, list) and len(where) > MAX_CONDITIONS:
                errors.append(("trigger.where", gettext("may hold at most %(count)s conditions") % {"count": MAX_CONDITIONS}))
            else:
                try:
                    cleaned["conditions"] = validate_conditions(where, field="trigger.where")
                except ConditionError as exc:
                    errors.extend(exc.errors)
    if not partial or "actions" in data:
        try:
            cleaned["actions"] = validate_actions(data.get("actions"))
        except RuleError as exc:
            errors.extend(exc.errors)
    if errors:
        raise RuleError(errors)
    return cleaned


def rule_check_options(rule: Rule) -> None:
    """Checks across fields, after a partial update is merged into the rule."""
    if rule.max_points_per_contact is not None and rule_points(rule.actions) <= 0:
        raise RuleError(
            [("max_points_per_contact", gettext("a cap on points needs an add_score action with positive points"))]
        )


def rule_save(rule: Rule, cleaned: dict, *, user=None) -> Rule:
    """Apply validated fields and save. Switching a rule on (or creating it on) sets
    ``activated_at``: it applies to events accepted from then on; older ones need a backfill."""
    was_active = rule.active if rule.pk else False
    for key, value in cleaned.items():
        setattr(rule, key, value)
    rule_check_options(rule)
    now = timezone.now()
    if rule.active and (not was_active or rule.activated_at is None):
        rule.activated_at = now
    rule.updated_at = now
    if not rule.pk and user is not None and getattr(user, "is_authenticated", False):
        rule.created_by = user
    rule.save()
    return rule


# --- words and shapes -----------------------------------------------------------------------------
def _signed(number: int) -> str:
    return f"{'+' if number >= 0 else '−'}{abs(number)}"


def describe_action(action: dict) -> str:
    kind = action.get("type")
    if kind == "add_tag":
        return gettext("add tag %(tag)s %(score)s") % {"tag": action.get("tag"), "score": _signed(action.get("score", 1))}
    if kind == "remove_tag":
        return gettext("remove tag %(tag)s") % {"tag": action.get("tag")}
    if kind == "add_score":
        points = action.get("points", 0)
        if points >= 0:
            return ngettext("add %(points)s point", "add %(points)s points", points) % {"points": points}
        return ngettext("take away %(points)s point", "take away %(points)s points", abs(points)) % {
            "points": abs(points)}
    if kind == "set_stage":
        return gettext("move to stage %(stage)s of funnel %(funnel)s") % {
            "stage": action.get("stage"), "funnel": action.get("funnel")}
    if kind in EXTRA_ACTIONS:
        return EXTRA_ACTIONS[kind].describe(action)
    return str(kind)


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return gettext("%(first)s and %(second)s") % {"first": ", ".join(words[:-1]), "second": words[-1]}


def event_phrase(event_type: str) -> str:
    """The event type in a sentence, by its human label: "a product view", "an email open"."""
    if event_type == "custom":
        return gettext("a custom event")
    label = str(EVENT_TYPE_LABELS.get(event_type, event_type or "…")).lower()
    if label[:1] in "aeiou":
        return gettext("an %(event)s") % {"event": label}
    return gettext("a %(event)s") % {"event": label}


def rule_summary(
    *,
    event_type: str,
    conditions: list[dict],
    actions: list[dict],
    once_per_contact: bool = False,
    max_points_per_contact: int | None = None,
) -> str:
    """"When a product view with category = kurtki happens, add tag KURTKI +1." """
    values = {
        "event": event_phrase(event_type),
        "actions": _join([describe_action(action) for action in actions]) or gettext("do nothing"),
    }
    if conditions:
        values["conditions"] = _join_all([describe_condition(condition) for condition in conditions])
        text = gettext("When %(event)s with %(conditions)s happens, %(actions)s") % values
    else:
        text = gettext("When %(event)s happens, %(actions)s") % values
    extras = []
    if once_per_contact:
        extras.append(gettext("only the first time for each contact"))
    if max_points_per_contact:
        extras.append(ngettext("at most %(points)s point per contact in total",
                               "at most %(points)s points per contact in total",
                               max_points_per_contact) % {"points": max_points_per_contact})
    if extras:
        text += " (" + "; ".join(extras) + ")"
    return text + "."


def _join_all(words: list[str]) -> str:
    """Conditions that must all hold: "a and b and c"."""
    text = words[0]
    for word in words[1:]:
        text = gettext("%(first)s and %(second)s") % {"first": text, "second": word}
    return text


def rule_to_api(rule: Rule) -> dict:
    return {
        "id": rule.pk,
        "name": rule.name,
        "description": rule.description,
        "active": rule.active,
        "trigger": {"event_type": rule.event_type, "where": rule.conditions},
        "actions": rule.actions,
        "once_per_contact": rule.once_per_contact,
        "max_points_per_contact": rule.max_points_per_contact,
        "activated_at": rule.activated_at.isoformat() if rule.activated_at else None,
        "created_at": rule.created_at.isoformat(),
        "updated_at": rule.updated_at.isoformat(),
        "summary": rule.summary,
    }
