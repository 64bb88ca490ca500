"""Segment definitions explained back to humans.

``describe(definition)`` — one plain-language sentence for the whole tree ("Contacts who have
the tag “kurtki” with a score of at least 3 and have given email consent").

``explain_for_contact(definition, contact_id)`` — the tree with each condition marked passed or
failed for one contact. All leaves are evaluated in ONE query (each leaf an annotation of that
contact's row, compiled restricted to the contact, so even event aggregates stay small), and the
groups are combined in Python with the same all/any/not rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper

from contacts.models import Contact
from core.conditions import describe_condition
from segments.compiler import Compiler
from segments.models import Segment
from segments.validation import segment_references

OP_WORDS = {
    "eq": "of exactly {v}",
    "ne": "other than {v}",
    "gt": "above {v}",
    "gte": "of at least {v}",
    "lt": "below {v}",
    "lte": "of at most {v}",
    "between": "between {a} and {b}",
    "in": "of {v}",
}
COUNT_WORDS = {
    "eq": "exactly {v}",
    "ne": "other than {v}",
    "gt": "more than {v}",
    "gte": "at least {v}",
    "lt": "fewer than {v}",
    "lte": "at most {v}",
    "between": "between {a} and {b}",
    "in": "{v}",
}
ATTRIBUTE_WORDS = {
    "eq": "is {v}",
    "ne": "is not {v}",
    "gt": "is above {v}",
    "gte": "is at least {v}",
    "lt": "is below {v}",
    "lte": "is at most {v}",
    "between": "is between {a} and {b}",
    "in": "is one of {v}",
    "contains": "contains {v}",
    "is_empty": "is empty",
    "not_empty": "is not empty",
}
EVENT_NOUNS = {
    "page_view": "page views",
    "product_view": "product views",
    "add_to_cart": "add-to-cart events",
    "cart_abandon": "abandoned carts",
    "purchase": "purchases",
    "email_open": "email opens",
    "email_click": "email clicks",
    "form_submit": "form submissions",
    "newsletter_signup": "newsletter sign-ups",
    "custom": "custom events",
}
ATTRIBUTE_NAMES = {
    "country": "country",
    "city": "city",
    "email": "email",
    "first_name": "first name",
    "last_name": "last name",
    "phone": "phone",
}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}".replace(",", " ") if isinstance(value, int) and abs(value) >= 10000 else str(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list):
        return ", ".join(_shown(item) for item in value[:-1]) + (" or " if len(value) > 1 else "") + _shown(value[-1])
    return f"“{value}”"


def _words(table: dict, op: str, value: Any) -> str:
    template = table.get(op, "{v}")
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return template.format(a=_shown(value[0]), b=_shown(value[1]), v="")
    return template.format(v=_shown(value), a="", b="")


def _window(leaf: dict) -> str:
    days = leaf.get("within_days")
    if days is None:
        return " ever"
    return " in the last day" if days == 1 else f" in the last {_number(days)} days"


def leaf_phrase(leaf: dict, segment_names: dict[int, str] | None = None) -> tuple[str, str]:
    """(positive, negative) phrases completing "Contacts who …"."""
    kind = leaf.get("type")
    if kind == "has_tag":
        return f"have the tag “{leaf['tag']}”", f"do not have the tag “{leaf['tag']}”"
    if kind == "tag_score":
        words = _words(OP_WORDS, leaf["op"], leaf["value"])
        return (f"have the tag “{leaf['tag']}” with a score {words}",
                f"do not have the tag “{leaf['tag']}” with a score {words}")
    if kind == "score":
        words = _words(OP_WORDS, leaf["op"], leaf["value"])
        return f"have a contact score {words}", f"do not have a contact score {words}"
    if kind == "temperature":
        return f"are {leaf['value']} leads", f"are not {leaf['value']} leads"
    if kind == "event_count":
        noun = EVENT_NOUNS.get(leaf["event_type"], leaf["event_type"])
        where = ""
        if leaf.get("where"):
            where = " where " + " and ".join(describe_condition(condition) for condition in leaf["where"])
        count = _words(COUNT_WORDS, leaf["op"], leaf["value"])
        if leaf["value"] == 1 and leaf["op"] in ("eq", "gte", "lte", "ne"):
            noun = noun[:-1] if noun.endswith("s") else noun  # "at least 1 purchase"
        text = f"{count} {noun}{where}{_window(leaf)}"
        return f"had {text}", f"did not have {text}"
    if kind == "inactive_days":
        days = _number(leaf["value"])
        return f"have had no activity for {days} days", f"were active in the last {days} days"
    if kind == "purchase_total":
        words = _words(COUNT_WORDS, leaf["op"], leaf["value"])
        return f"spent {words} on purchases{_window(leaf)}", f"did not spend {words} on purchases{_window(leaf)}"
    if kind == "attribute":
        name = leaf["name"]
        label = ATTRIBUTE_NAMES.get(name, f"property “{name.removeprefix('properties.')}”")
        words = _words(ATTRIBUTE_WORDS, leaf["op"], leaf.get("value"))
        return f"have a {label} that {words}", f"do not have a {label} that {words}"
    if kind == "age":
        words = _words(OP_WORDS, leaf["op"], leaf["value"]).replace("of ", "", 1) if leaf["op"] != "between" else \
            _words(OP_WORDS, leaf["op"], leaf["value"])
        return f"are aged {words} years", f"are not aged {words} years"
    if kind == "consent":
        channel = leaf["channel"]
        if leaf["value"]:
            return f"have given {channel} consent", f"have not given {channel} consent"
        return f"have not given {channel} consent", f"have given {channel} consent"
    if kind == "segment":
        name = (segment_names or {}).get(leaf["segment_id"])
        shown = f"“{name}”" if name else f"#{leaf['segment_id']} (deleted)"
        return f"are in the segment {shown}", f"are not in the segment {shown}"
    if kind == "stage":
        return (f"are at the stage “{leaf['stage']}” of the funnel “{leaf['funnel']}”",
                f"are not at the stage “{leaf['stage']}” of the funnel “{leaf['funnel']}”")
    if kind == "tier":
        return (f"are in the tier “{leaf['tier']}” of “{leaf['program']}”",
                f"are not in the tier “{leaf['tier']}” of “{leaf['program']}”")
    return str(leaf), f"not {leaf}"


def _segment_names(definition: Any) -> dict[int, str]:

    ids = segment_references(definition)
    return dict(Segment.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}


def _phrase(node: Any, names: dict[int, str], negated: bool = False, nested: bool = False) -> str:
    if "not" in node:
        return _phrase(node["not"], names, not negated, nested)
    if "all" in node or "any" in node:
        key = "all" if "all" in node else "any"
        children = node[key]
        if not children:
            everyone = key == "all"
            return "(nobody)" if everyone == negated else "(everybody)"
        if len(children) == 1:
            return _phrase(children[0], names, negated, nested)
        joiner = " and " if key == "all" else " or "
        parts = [_phrase(child, names, False, True) for child in children]
        text = joiner.join(parts)
        if negated:
            return f"are not among those who {text}" if not nested else f"are not among those who ({text})"
        return f"({text})" if nested else text
    positive, negative = leaf_phrase(node, names)
    return negative if negated else positive


def describe(definition: Any, *, for_sending: bool = False) -> str:
    """The whole definition as one sentence."""
    names = _segment_names(definition)
    text = f"Contacts who {_phrase(definition, names)}"
    if for_sending:
        text += ", and have given email consent (for sending)"
    return text + "."


# --- per contact --------------------------------------------------------------------------------
@dataclass
class ExplainedNode:
    kind: str  # "all", "any", "not" or "leaf"
    passed: bool
    text: str = ""
    children: list[ExplainedNode] = field(default_factory=list)


def explain_for_contact(definition: Any, contact_id: int) -> ExplainedNode | None:
    """Each condition of ``definition`` evaluated for one contact (None if the contact is gone)."""

    compiler = Compiler(contact_ids=[contact_id])
    compiler.prefetch([definition])
    leaves: list[dict] = []

    def collect(node: Any) -> None:
        if "not" in node:
            collect(node["not"])
        elif "all" in node or "any" in node:
            for child in node.get("all", node.get("any")):
                collect(child)
        else:
            leaves.append(node)

    collect(definition)
    annotations = {
        f"leaf_{index}": ExpressionWrapper(compiler.compile(leaf), output_field=BooleanField())
        for index, leaf in enumerate(leaves)
    }
    row = Contact.objects.filter(pk=contact_id).annotate(**annotations).values(*annotations).first() if annotations \
        else (Contact.objects.filter(pk=contact_id).values("pk").first())
    if row is None:
        return None
    names = _segment_names(definition)
    results = iter(bool(row.get(f"leaf_{index}")) for index in range(len(leaves)))

    def build(node: Any) -> ExplainedNode:
        if "not" in node:
            child = build(node["not"])
            return ExplainedNode("not", not child.passed, "not", [child])
        if "all" in node or "any" in node:
            key = "all" if "all" in node else "any"
            children = [build(child) for child in node[key]]
            passed = all(c.passed for c in children) if key == "all" else any(c.passed for c in children)
            return ExplainedNode(key, passed, "all of" if key == "all" else "any of", children)
        passed = next(results)
        return ExplainedNode("leaf", passed, leaf_phrase(node, names)[0])

    return build(definition)
