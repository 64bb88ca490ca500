"""Validation of a segment definition (the API contract's ``Node`` JSON), done once before a
definition is previewed, saved or compiled.

Errors name the node path the way a person would point at it in the tree:
``all[1].any[0].value: must be a number``. A root-level problem has the empty path ``""``.

What is *not* an error, on purpose:
- an unknown tag, funnel, stage, programme or tier name — the condition simply matches nobody
  (a segment may be built before the first event carrying that tag arrives);
- an empty ``all`` (matches everyone) or an empty ``any`` (matches nobody).

What is checked against the database: ``segment`` references must name an existing saved
segment and must not lead back to the segment being saved (a cycle).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.translation import gettext as _

from contacts.models import EVENT_TYPES
from core.conditions import ConditionError, validate_conditions
from core.validators import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from segments.models import Segment

LEAF_TYPES = (
    "has_tag",
    "tag_score",
    "score",
    "temperature",
    "event_count",
    "inactive_days",
    "purchase_total",
    "attribute",
    "age",
    "consent",
    "segment",
    "stage",
    "tier",
)
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "contains", "is_empty", "not_empty")
NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in")
TEXT_COLUMN_OPS = ("eq", "ne", "in", "contains", "is_empty", "not_empty")
PROPERTY_OPS = OPS
ATTRIBUTE_COLUMNS = ("country", "city", "email", "first_name", "last_name", "phone")
TEMPERATURES = ("cold", "warm", "hot")
PROPERTY_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")

MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST = 500
MAX_NUMBER = 10**12
MAX_DAYS = 36500
MAX_AGE = 150
MAX_TEXT = 200

# Fields each leaf type may carry besides "type"; anything else is a typo worth reporting.
LEAF_FIELDS: dict[str, set[str]] = {
    "has_tag": {"tag"},
    "tag_score": {"tag", "op", "value"},
    "score": {"op", "value"},
    "temperature": {"value"},
    "event_count": {"event_type", "where", "within_days", "op", "value"},
    "inactive_days": {"value"},
    "purchase_total": {"within_days", "op", "value"},
    "attribute": {"name", "op", "value"},
    "age": {"op", "value"},
    "consent": {"channel", "value"},
    "segment": {"segment_id"},
    "stage": {"funnel", "stage"},
    "tier": {"program", "tier"},
}


@dataclass(frozen=True)
class DefinitionProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionError(ValueError):
    """An invalid definition; ``problems`` lists every problem found, each with its node path."""

    def __init__(self, problems: list[DefinitionProblem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems

    def as_api_errors(self, prefix: str = "definition") -> list[dict]:
        """The contract's ``{"errors": [{"field", "message"}]}`` items, fields prefixed."""
        return [
            {"field": f"{prefix}.{problem.path}" if problem.path else prefix, "message": problem.message}
            for problem in self.problems
        ]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def join_path(path: str, part: str) -> str:
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"


class _Validator:
    def __init__(self) -> None:
        self.problems: list[DefinitionProblem] = []
        self.nodes = 0
        # (path of the reference, segment id) for the database checks after the walk.
        self.segment_refs: list[tuple[str, int]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(DefinitionProblem(path, message))

    # --- groups -----------------------------------------------------------------------------
    def node(self, node: Any, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.add(path, _("a definition may hold at most %(count)s conditions and groups") % {"count": MAX_NODES})
            return
        if depth > MAX_DEPTH:
            self.add(path, _("groups may be nested at most %(count)s levels deep") % {"count": MAX_DEPTH})
            return
        if not isinstance(node, dict):
            self.add(path, _("must be a group ({\"all\": [...]}, {\"any\": [...]}, {\"not\": ...}) or a condition"))
            return
        group_keys = [key for key in ("all", "any", "not") if key in node]
        if "type" in node:
            if group_keys:
                self.add(path, _("a condition cannot also be a group (%(key)s)") % {"key": group_keys[0]})
                return
            self.leaf(node, path)
            return
        if not group_keys:
            self.add(path, _("must be a group (all, any or not) or a condition with a type"))
            return
        if len(group_keys) > 1 or len(node) > 1:
            extra = sorted(set(node) - {group_keys[0]}) or group_keys[1:]
            self.add(join_path(path, extra[0]), _("a group has exactly one key: all, any or not"))
            return
        key = group_keys[0]
        children = node[key]
        if key == "not":
            self.node(children, join_path(path, "not"), depth + 1)
            return
        if not isinstance(children, list):
            self.add(join_path(path, key), _("must be a list of conditions and groups"))
            return
        for index, child in enumerate(children):
            self.node(child, join_path(path, f"{key}[{index}]"), depth + 1)

    # --- leaves -----------------------------------------------------------------------------
    def leaf(self, leaf: dict, path: str) -> None:
        leaf_type = leaf.get("type")
        if leaf_type not in LEAF_TYPES:
            self.add(join_path(path, "type"), _("must be one of %(choices)s") % {"choices": ", ".join(LEAF_TYPES)})
            return
        for key in sorted(set(leaf) - LEAF_FIELDS[leaf_type] - {"type"}):
            self.add(join_path(path, key), _("unknown field for a %(type)s condition") % {"type": leaf_type})
        getattr(self, f"leaf_{leaf_type}")(leaf, path)

    def text(self, leaf: dict, key: str, path: str, what: str) -> str | None:
        value = leaf.get(key)
        if not isinstance(value, str) or not value.strip():
            self.add(join_path(path, key), _("is required (%(what)s)") % {"what": what})
            return None
        if len(value) > MAX_TEXT:
            self.add(join_path(path, key), _("may be at most %(count)s characters") % {"count": MAX_TEXT})
            return None
        if has_control_characters(value):
            self.add(join_path(path, key), CONTROL_CHARACTERS_MESSAGE)
            return None
        return value

    def number(self, value: Any, path: str, *, integer: bool = False, low: float | None = None,
               high: float = MAX_NUMBER) -> bool:
        if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            self.add(path, _("must be a whole number") if integer else _("must be a number"))
            return False
        if integer and value != int(value):
            self.add(path, _("must be a whole number"))
            return False
        if low is not None and value < low:
            self.add(path, _("must be at least %(low)s") % {"low": f"{low:g}"})
            return False
        if abs(value) > high:
            self.add(path, _("must be between -%(high)s and %(high)s") % {"high": intcomma(high)} if low is None
                     else _("must be at most %(high)s") % {"high": intcomma(high)})
            return False
        return True

    def numeric_comparison(self, leaf: dict, path: str, *, integer: bool = False, low: float | None = None,
                           high: float = MAX_NUMBER) -> None:
        op = leaf.get("op")
        op_path, value_path = join_path(path, "op"), join_path(path, "value")
        if op not in NUMBER_OPS:
            self.add(op_path, _("must be one of %(choices)s") % {"choices": ", ".join(NUMBER_OPS)})
            return
        if "value" not in leaf:
            self.add(value_path, _("is required"))
            return
        value = leaf["value"]
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                self.add(value_path, _("must be a list of two numbers [low, high]"))
                return
            ok = all(
                self.number(item, f"{value_path}[{index}]", integer=integer, low=low, high=high)
                for index, item in enumerate(value)
            )
            if ok and value[0] > value[1]:
                self.add(value_path, _("the low end must not be above the high end"))
            return
        if op == "in":
            if not isinstance(value, list) or not value:
                self.add(value_path, _("must be a non-empty list of numbers"))
                return
            if len(value) > MAX_LIST:
                self.add(value_path, _("may hold at most %(count)s values") % {"count": MAX_LIST})
                return
            for index, item in enumerate(value):
                self.number(item, f"{value_path}[{index}]", integer=integer, low=low, high=high)
            return
        self.number(value, value_path, integer=integer, low=low, high=high)

    def window(self, leaf: dict, path: str) -> None:
        if leaf.get("within_days") is None:
            return  # all time
        self.number(leaf["within_days"], join_path(path, "within_days"), integer=True, low=1, high=MAX_DAYS)

    def leaf_has_tag(self, leaf: dict, path: str) -> None:
        self.text(leaf, "tag", path, _("a tag name"))

    def leaf_tag_score(self, leaf: dict, path: str) -> None:
        self.text(leaf, "tag", path, _("a tag name"))
        self.numeric_comparison(leaf, path)

    def leaf_score(self, leaf: dict, path: str) -> None:
        self.numeric_comparison(leaf, path)

    def leaf_temperature(self, leaf: dict, path: str) -> None:
        if leaf.get("value") not in TEMPERATURES:
            self.add(join_path(path, "value"), _("must be one of cold, warm, hot"))

    def leaf_event_count(self, leaf: dict, path: str) -> None:
        if leaf.get("event_type") not in EVENT_TYPES:
            self.add(join_path(path, "event_type"), _("must be one of %(choices)s") % {"choices": ", ".join(EVENT_TYPES)})
        if leaf.get("where") is not None:
            try:
                validate_conditions(leaf["where"], field="where")
            except ConditionError as exc:
                for field, message in exc.errors:
                    # automation writes "where.1.value"; the tree's own style is "where[1].value"
                    field = re.sub(r"^where\.(\d+)", r"where[\1]", field)
                    self.add(join_path(path, field), message)
        self.window(leaf, path)
        self.numeric_comparison(leaf, path, low=0)

    def leaf_inactive_days(self, leaf: dict, path: str) -> None:
        if "value" not in leaf:
            self.add(join_path(path, "value"), _("is required (a number of days)"))
            return
        self.number(leaf["value"], join_path(path, "value"), integer=True, low=1, high=MAX_DAYS)

    def leaf_purchase_total(self, leaf: dict, path: str) -> None:
        self.window(leaf, path)
        self.numeric_comparison(leaf, path)

    def leaf_attribute(self, leaf: dict, path: str) -> None:
        name = leaf.get("name")
        name_path, op_path, value_path = (join_path(path, key) for key in ("name", "op", "value"))
        is_property = isinstance(name, str) and name.startswith("properties.")
        if is_property:
            if not PROPERTY_KEY.match(name.removeprefix("properties.")):
                self.add(name_path, _("properties.<key>: the key may hold letters, digits, _ . - (at most 64)"))
                return
        elif name not in ATTRIBUTE_COLUMNS:
            self.add(name_path, _("must be one of %(choices)s or properties.<key>") % {"choices": ", ".join(ATTRIBUTE_COLUMNS)})
            return
        op = leaf.get("op")
        allowed = PROPERTY_OPS if is_property else TEXT_COLUMN_OPS
        if op not in allowed:
            self.add(op_path, _("must be one of %(choices)s") % {"choices": ", ".join(allowed)} if is_property
                     else _("must be one of %(choices)s for %(name)s") % {"choices": ", ".join(allowed), "name": name})
            return
        if op in ("is_empty", "not_empty"):
            if leaf.get("value") is not None:
                self.add(value_path, _("takes no value for %(op)s") % {"op": op})
            return
        if "value" not in leaf:
            self.add(value_path, _("is required"))
            return
        value = leaf["value"]
        if op == "contains":
            if not isinstance(value, str) or not value:
                self.add(value_path, _("must be a non-empty text for contains"))
            elif len(value) > MAX_TEXT:
                self.add(value_path, _("may be at most %(count)s characters") % {"count": MAX_TEXT})
            elif has_control_characters(value):
                self.add(value_path, CONTROL_CHARACTERS_MESSAGE)
            return
        if op in ("gt", "gte", "lt", "lte"):
            self.number(value, value_path)
            return
        if op == "between":
            self.numeric_comparison(leaf, path)
            return
        items = value if op == "in" else [value]
        if op == "in":
            if not isinstance(value, list) or not value:
                self.add(value_path, _("must be a non-empty list"))
                return
            if len(value) > MAX_LIST:
                self.add(value_path, _("may hold at most %(count)s values") % {"count": MAX_LIST})
                return
        for index, item in enumerate(items):
            item_path = f"{value_path}[{index}]" if op == "in" else value_path
            if isinstance(item, str) and has_control_characters(item):
                self.add(item_path, CONTROL_CHARACTERS_MESSAGE)
                continue
            if is_property:
                if isinstance(item, str | bool):
                    if isinstance(item, str) and len(item) > MAX_TEXT:
                        self.add(item_path, _("may be at most %(count)s characters") % {"count": MAX_TEXT})
                elif not self.number(item, item_path):
                    continue
            elif not isinstance(item, str) or not item.strip():
                self.add(item_path, _("must be a non-empty text (use is_empty for missing values)"))
            elif len(item) > MAX_TEXT:
                self.add(item_path, _("may be at most %(count)s characters") % {"count": MAX_TEXT})

    def leaf_age(self, leaf: dict, path: str) -> None:
        self.numeric_comparison(leaf, path, integer=True, low=0, high=MAX_AGE)

    def leaf_consent(self, leaf: dict, path: str) -> None:
        self.text(leaf, "channel", path, _("a consent channel, e.g. email"))
        if not isinstance(leaf.get("value"), bool):
            self.add(join_path(path, "value"), _("must be true or false"))

    def leaf_segment(self, leaf: dict, path: str) -> None:
        segment_id = leaf.get("segment_id")
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id <= 0:
            self.add(join_path(path, "segment_id"), _("must be the id of a saved segment"))
            return
        if segment_id > 2**63 - 1:
            self.add(join_path(path, "segment_id"), _("segment %(id)s does not exist") % {"id": segment_id})
            return
        self.segment_refs.append((join_path(path, "segment_id"), segment_id))

    def leaf_stage(self, leaf: dict, path: str) -> None:
        self.text(leaf, "funnel", path, _("a funnel name"))
        self.text(leaf, "stage", path, _("a stage name"))

    def leaf_tier(self, leaf: dict, path: str) -> None:
        self.text(leaf, "program", path, _("a loyalty programme name"))
        self.text(leaf, "tier", path, _("a tier name"))


def segment_references(node: Any) -> list[int]:
    """Ids of the saved segments a (valid) definition refers to directly."""
    found: list[int] = []

    def walk(item: Any) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "segment" and isinstance(item.get("segment_id"), int):
            found.append(item["segment_id"])
        for key in ("all", "any"):
            if isinstance(item.get(key), list):
                for child in item[key]:
                    walk(child)
        if "not" in item:
            walk(item["not"])

    walk(node)
    return found


def _check_references(validator: _Validator, segment_id: int | None) -> None:
    """Every referenced segment exists, and following references never reaches ``segment_id``
    (the one being saved) or loops among the others."""
    if not validator.segment_refs:
        return

    definitions: dict[int, Any] = {}

    def load(ids: set[int]) -> None:
        missing = ids - set(definitions)
        if missing:
            for pk, definition in Segment.objects.filter(pk__in=missing).values_list("pk", "definition"):
                definitions[pk] = definition
            for pk in missing - set(definitions):
                definitions[pk] = None

    load({ref for _path, ref in validator.segment_refs})

    def reaches_cycle(start: int) -> list[int] | None:
        """The chain of ids from ``start`` that comes back to the segment being saved or
        repeats itself, or None."""
        stack: list[tuple[int, list[int]]] = [(start, [start])]
        while stack:
            current, chain = stack.pop()
            refs = segment_references(definitions.get(current))
            load(set(refs))
            for ref in refs:
                if ref == segment_id or ref in chain:
                    return [*chain, ref]
                if definitions.get(ref) is not None:
                    stack.append((ref, [*chain, ref]))
        return None

    for path, ref in validator.segment_refs:
        if definitions.get(ref) is None:
            validator.add(path, _("segment %(id)s does not exist") % {"id": ref})
        elif segment_id is not None and ref == segment_id:
            validator.add(path, _("a segment cannot contain itself"))
        else:
            chain = reaches_cycle(ref)
            if chain:
                shown = " → ".join(f"#{pk}" for pk in chain)
                validator.add(path, _("segment %(id)s leads back in a cycle (%(chain)s)") % {"id": ref, "chain": shown})


def definition_problems(definition: Any, *, segment_id: int | None = None) -> list[DefinitionProblem]:
    """Every problem of ``definition`` (empty when it is valid). ``segment_id`` is the saved
    segment being edited, for the cycle check."""
    validator = _Validator()
    if definition is None:
        return [DefinitionProblem("", _("is required"))]
    validator.node(definition, "", 0)
    if not validator.problems:
        _check_references(validator, segment_id)
    return validator.problems


def validate_definition(definition: Any, *, segment_id: int | None = None) -> None:
    """Raise ``DefinitionError`` listing every problem, or return quietly."""
    problems = definition_problems(definition, segment_id=segment_id)
    if problems:
        raise DefinitionError(problems)
