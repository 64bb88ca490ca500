"""Rule conditions on an event's properties: validation, the SQL compiler and a plain-Python
evaluator with the same semantics (the hypothesis test in tests/automation proves they agree).

A condition is ``{"property": "category", "op": "eq", "value": "kurtki"}``; all conditions of a
rule must hold. The semantics, written once here and implemented twice below:

- A property that is missing or JSON ``null`` fails every condition, ``ne`` included.
- ``eq`` / ``ne`` with a **string** value compare case-insensitively with a string property only
  (a number property never equals a string value, so ``ne`` holds for it).
- ``eq`` / ``ne`` with a **number** value compare numerically with a number property or a string
  property that spells a plain decimal number (``"199.99"``: shops send prices as text).
- ``eq`` / ``ne`` with a **boolean** value compare with a boolean property.
- ``gt gte lt lte`` take a number and hold only for numeric properties (as above).
- ``in`` takes a non-empty list of scalars: ``eq`` with any of them.
- ``contains`` takes a string: a case-insensitive substring of a string property.

Case folding is the database's ``lower()`` and Python's ``str.lower()``; they agree on Latin
scripts (Polish included), which is what shops send.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.validators import CONTROL_CHARACTERS_MESSAGE, has_control_characters

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains")
OP_LABELS = {
    "eq": "=",
    "ne": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "in": gettext_lazy("is one of"),
    "contains": gettext_lazy("contains"),
}
NUMERIC_OPS = ("gt", "gte", "lt", "lte")
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
# What counts as a number written as text: plain decimals only. The same pattern in SQL.
NUMERIC_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
NUMERIC_TEXT_SQL = r"^-?[0-9]+(\.[0-9]+)?$"
MAX_IN_VALUES = 500


class ConditionError(ValueError):
    """Invalid conditions; ``errors`` is a list of (field path, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def validate_conditions(conditions: Any, *, field: str = "where") -> list[dict]:
    """Return the conditions normalised (property trimmed), or raise ConditionError with field
    paths such as ``where.1.value``."""
    if conditions is None:
        return []
    if not isinstance(conditions, list):
        raise ConditionError([(field, _("must be a list of conditions"))])
    errors: list[tuple[str, str]] = []
    cleaned: list[dict] = []
    for index, condition in enumerate(conditions):
        path = f"{field}.{index}"
        errors_before = len(errors)
        if not isinstance(condition, dict):
            errors.append((path, _("must be an object with property, op and value")))
            continue
        unknown = set(condition) - {"property", "op", "value"}
        if unknown:
            errors.append((f"{path}.{sorted(unknown)[0]}", _("unknown field")))
        prop = condition.get("property")
        if not isinstance(prop, str) or not prop.strip():
            errors.append((f"{path}.property", _("is required (the name of an event property, e.g. category)")))
        elif not PROPERTY_NAME.match(prop.strip()):
            errors.append((f"{path}.property", _("must be a property name: letters, digits, _ . - (at most 64)")))
        op = condition.get("op")
        if op not in OPS:
            errors.append((f"{path}.op", _("must be one of %(ops)s") % {"ops": ", ".join(OPS)}))
            continue
        if "value" not in condition:
            errors.append((f"{path}.value", _("is required")))
            continue
        value = condition["value"]
        if op in NUMERIC_OPS and not _is_number(value):
            errors.append((f"{path}.value", _("must be a number for %(op)s") % {"op": op}))
        elif op == "in":
            if not isinstance(value, list) or not value:
                errors.append((f"{path}.value", _("must be a non-empty list for in")))
            elif len(value) > MAX_IN_VALUES:
                errors.append((f"{path}.value", _("may hold at most %(count)s values") % {"count": MAX_IN_VALUES}))
            elif not all(_is_scalar(item) for item in value):
                errors.append((f"{path}.value", _("must list strings, numbers or true/false")))
        elif op == "contains" and (not isinstance(value, str) or value == ""):
            errors.append((f"{path}.value", _("must be a non-empty text for contains")))
        elif op in ("eq", "ne") and not _is_scalar(value):
            errors.append((f"{path}.value", _("must be a text, a number or true/false for %(op)s") % {"op": op}))
        elif isinstance(value, float) and value != value:  # NaN
            errors.append((f"{path}.value", _("must be a number")))
        if isinstance(value, str) and len(value) > 500:
            errors.append((f"{path}.value", _("may be at most 500 characters")))
        elif any(isinstance(item, str) and has_control_characters(item)
                 for item in (value if isinstance(value, list) else [value])):
            errors.append((f"{path}.value", CONTROL_CHARACTERS_MESSAGE))
        if len(errors) == errors_before:
            cleaned.append({"property": prop.strip(), "op": op, "value": value})
    if errors:
        raise ConditionError(errors)
    return cleaned


# --- Python ---------------------------------------------------------------------------------------
def _number_of(value: Any) -> Decimal | None:
    """The numeric value of a property, or None (bools and non-numeric text are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr is the shortest text that round-trips: what json.dumps wrote and PostgreSQL parsed.
        return Decimal(repr(value)) if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str) and NUMERIC_TEXT.fullmatch(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            return None
    return None


def _equals(prop: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return isinstance(prop, bool) and prop is value
    if _is_number(value):
        number = _number_of(prop)
        return number is not None and number == _number_of(value)
    return isinstance(prop, str) and prop.lower() == str(value).lower()


def condition_matches(condition: dict, properties: dict) -> bool:
    prop = properties.get(condition["property"]) if isinstance(properties, dict) else None
    if prop is None:
        return False
    op, value = condition["op"], condition["value"]
    if op == "eq":
        return _equals(prop, value)
    if op == "ne":
        return not _equals(prop, value)
    if op == "in":
        return any(_equals(prop, item) for item in value)
    if op == "contains":
        return isinstance(prop, str) and str(value).lower() in prop.lower()
    number = _number_of(prop)
    if number is None:
        return False
    target = _number_of(value)
    return {
        "gt": number > target,
        "gte": number >= target,
        "lt": number < target,
        "lte": number <= target,
    }[op]


# --- SQL ------------------------------------------------------------------------------------------
def _sql_literal(text: str) -> str:
    """A property name as an SQL string literal. Names are validated (letters, digits, ``_.-``)
    before they get here; quoting and doubling ``%`` keep even an unvalidated name inert."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _sql_numeric(prop_sql: str) -> str:
    text = f"({prop_sql} #>> '{{}}')"
    return (
        f"(CASE jsonb_typeof({prop_sql}) WHEN 'number' THEN {text}::numeric "
        f"WHEN 'string' THEN CASE WHEN {text} ~ '{NUMERIC_TEXT_SQL}' THEN {text}::numeric END END)"
    )


def _sql_equals(prop_sql: str, value: Any, params: list) -> str:
    if isinstance(value, bool):
        params.append("true" if value else "false")
        return f"coalesce({prop_sql} = %s::jsonb, false)"
    if _is_number(value):
        params.append(str(_number_of(value)))
        return f"coalesce({_sql_numeric(prop_sql)} = %s::numeric, false)"
    params.append(str(value))
    return f"coalesce(jsonb_typeof({prop_sql}) = 'string' AND lower({prop_sql} #>> '{{}}') = lower(%s), false)"


def compile_condition(condition: dict, *, properties_sql: str = "properties") -> tuple[str, list]:
    """One condition as a boolean SQL expression over the jsonb column ``properties_sql``.

    Never NULL: every branch is wrapped so that a missing property yields false, which keeps
    ``NOT`` and the Python evaluator in step.
    """
    params: list = []
    prop_sql = f"({properties_sql} -> {_sql_literal(condition['property'])})"
    op, value = condition["op"], condition["value"]
    if op == "eq":
        return _sql_equals(prop_sql, value, params), params
    if op == "ne":
        present = f"coalesce(jsonb_typeof({prop_sql}) <> 'null', false)"
        return f"({present} AND NOT {_sql_equals(prop_sql, value, params)})", params
    if op == "in":
        parts = [_sql_equals(prop_sql, item, params) for item in value]
        return "(" + " OR ".join(parts) + ")", params
    if op == "contains":
        params.append(str(value))
        return (
            f"coalesce(jsonb_typeof({prop_sql}) = 'string' "
            f"AND strpos(lower({prop_sql} #>> '{{}}'), lower(%s)) > 0, false)",
            params,
        )
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    params.append(str(_number_of(value)))
    return f"coalesce({_sql_numeric(prop_sql)} {symbol} %s::numeric, false)", params


def compile_conditions(conditions: list[dict], *, properties_sql: str = "properties") -> tuple[str, list]:
    """All conditions ANDed; ``TRUE`` when there are none."""
    if not conditions:
        return "TRUE", []
    parts, params = [], []
    for condition in conditions:
        sql, condition_params = compile_condition(condition, properties_sql=properties_sql)
        parts.append(sql)
        params.extend(condition_params)
    return "(" + " AND ".join(parts) + ")", params


def describe_condition(condition: dict) -> str:
    """Plain words: ``category = kurtki``, ``value > 1000``, ``url contains /diamenty``."""
    value = condition.get("value")
    if isinstance(value, list):
        shown = ", ".join(str(item) for item in value)
    elif isinstance(value, bool):
        shown = _("true") if value else _("false")
    else:
        shown = str(value)
    return f"{condition.get('property')} {OP_LABELS.get(condition.get('op'), condition.get('op'))} {shown}"
