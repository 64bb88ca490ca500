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
from django.utils.translation import gettext, ngettext, ngettext_lazy, npgettext_lazy, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from core.conditions import describe_condition
from segments.compiler import Compiler
from segments.models import Segment
from segments.validation import segment_references

# Comparisons, in words. Each table is used in one kind of sentence; "other than" is told apart
# by context because Polish inflects it to fit the noun it describes.
OP_WORDS = {  # a score: "with a score of at least 3"
    "eq": _("of exactly %(value)s"),
    "gt": _("above %(value)s"),
    "gte": _("of at least %(value)s"),
    "lt": _("below %(value)s"),
    "lte": _("of at most %(value)s"),
    "between": _("between %(low)s and %(high)s"),
    "in": _("of %(value)s"),
}
COUNT_WORDS = {  # a number of events or an amount: "at least 3 purchases", "spent at least 1000"
    "eq": _("exactly %(value)s"),
    "gt": _("more than %(value)s"),
    "gte": _("at least %(value)s"),
    "lt": _("fewer than %(value)s"),
    "lte": _("at most %(value)s"),
    "between": _("between %(low)s and %(high)s"),
    "in": "%(value)s",
}
AGE_WORDS = {  # "are aged at least 25 years"
    "eq": _("exactly %(value)s"),
    "gt": _("above %(value)s"),
    "gte": _("at least %(value)s"),
    "lt": _("below %(value)s"),
    "lte": _("at most %(value)s"),
    "between": _("between %(low)s and %(high)s"),
    "in": "%(value)s",
}
OTHER_THAN = {
    "tag score": pgettext_lazy("tag score", "other than %(value)s"),
    "contact score": pgettext_lazy("contact score", "other than %(value)s"),
    "event count": pgettext_lazy("event count", "other than %(value)s"),
    "amount": pgettext_lazy("amount", "other than %(value)s"),
    "age": pgettext_lazy("age", "other than %(value)s"),
}
ATTRIBUTE_WORDS = {
    "eq": _("is %(value)s"),
    "ne": _("is not %(value)s"),
    "gt": _("is above %(value)s"),
    "gte": _("is at least %(value)s"),
    "lt": _("is below %(value)s"),
    "lte": _("is at most %(value)s"),
    "between": _("is between %(low)s and %(high)s"),
    "in": _("is one of %(value)s"),
    "contains": _("contains %(value)s"),
    "is_empty": _("is empty"),
    "not_empty": _("is not empty"),
}
# Each event type counted, as (noun, noun after a negation) choosing its form by "count"; Polish puts
# the noun after a negation in the genitive ("mają 3 zakupy", "nie mają 3 zakupów").
EVENT_NOUNS = {
    "page_view": (ngettext_lazy("page view", "page views", "count"),
                  npgettext_lazy("negated", "page view", "page views", "count")),
    "product_view": (ngettext_lazy("product view", "product views", "count"),
                     npgettext_lazy("negated", "product view", "product views", "count")),
    "add_to_cart": (ngettext_lazy("add-to-cart event", "add-to-cart events", "count"),
                    npgettext_lazy("negated", "add-to-cart event", "add-to-cart events", "count")),
    "cart_abandon": (ngettext_lazy("abandoned cart", "abandoned carts", "count"),
                     npgettext_lazy("negated", "abandoned cart", "abandoned carts", "count")),
    "purchase": (ngettext_lazy("purchase", "purchases", "count"),
                 npgettext_lazy("negated", "purchase", "purchases", "count")),
    "email_open": (ngettext_lazy("email open", "email opens", "count"),
                   npgettext_lazy("negated", "email open", "email opens", "count")),
    "email_click": (ngettext_lazy("email click", "email clicks", "count"),
                    npgettext_lazy("negated", "email click", "email clicks", "count")),
    "form_submit": (ngettext_lazy("form submission", "form submissions", "count"),
                    npgettext_lazy("negated", "form submission", "form submissions", "count")),
    "newsletter_signup": (ngettext_lazy("newsletter sign-up", "newsletter sign-ups", "count"),
                          npgettext_lazy("negated", "newsletter sign-up", "newsletter sign-ups", "count")),
    "custom": (ngettext_lazy("custom event", "custom events", "count"),
               npgettext_lazy("negated", "custom event", "custom events", "count")),
}
# Whole phrases per contact field and consent channel: Polish inflects the field's name.
ATTRIBUTE_PHRASES = {
    "country": (_("have a country that %(condition)s"), _("do not have a country that %(condition)s")),
    "city": (_("have a city that %(condition)s"), _("do not have a city that %(condition)s")),
    "email": (_("have an email that %(condition)s"), _("do not have an email that %(condition)s")),
    "first_name": (_("have a first name that %(condition)s"), _("do not have a first name that %(condition)s")),
    "last_name": (_("have a last name that %(condition)s"), _("do not have a last name that %(condition)s")),
    "phone": (_("have a phone that %(condition)s"), _("do not have a phone that %(condition)s")),
}
CONSENT_PHRASES = {
    "email": (_("have given email consent"), _("have not given email consent")),
    "sms": (_("have given SMS consent"), _("have not given SMS consent")),
    "push": (_("have given push consent"), _("have not given push consent")),
}
TEMPERATURE_PHRASES = {
    "cold": (_("are cold leads"), _("are not cold leads")),
    "warm": (_("are warm leads"), _("are not warm leads")),
    "hot": (_("are hot leads"), _("are not hot leads")),
}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}".replace(",", " ") if isinstance(value, int) and abs(value) >= 10000 else str(value)


def _quoted(text: Any) -> str:
    return gettext("“%(value)s”") % {"value": text}


def _both(first: str, second: str, joiner: str = "and") -> str:
    if joiner == "or":
        return gettext("%(first)s or %(second)s") % {"first": first, "second": second}
    return gettext("%(first)s and %(second)s") % {"first": first, "second": second}


def _joined(parts: list[str], joiner: str = "and") -> str:
    text = parts[0]
    for part in parts[1:]:
        text = _both(text, part, joiner)
    return text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return gettext("true") if value else gettext("false")
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list):
        if not value:
            return ""
        if len(value) == 1:
            return _shown(value[0])
        return _both(", ".join(_shown(item) for item in value[:-1]), _shown(value[-1]), "or")
    return _quoted(value)


def _words(table: dict, op: str, value: Any, context: str = "") -> str:
    template = OTHER_THAN[context] if op == "ne" and context else table.get(op, "%(value)s")
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return str(template) % {"low": _shown(value[0]), "high": _shown(value[1])}
    return str(template) % {"value": _shown(value)}


def _count_for_noun(op: str, value: Any) -> int:
    """The number a counted noun agrees with: the value itself, the last of a list, and "many"
    for a range ("between 2 and 4 purchases"; Polish: "od 2 do 4 zakupów")."""
    if op == "in" and isinstance(value, list) and value:
        value = value[-1]
    if op == "between" or not isinstance(value, int | float) or isinstance(value, bool) or value != int(value):
        return 5
    return abs(int(value))


def _window(leaf: dict) -> str:
    days = leaf.get("within_days")
    if days is None:
        return gettext("ever")
    if days == 1:
        return gettext("in the last day")
    return ngettext("in the last %(days)s day", "in the last %(days)s days", days) % {"days": _number(days)}


def leaf_phrase(leaf: dict, segment_names: dict[int, str] | None = None) -> tuple[str, str]:
    """(positive, negative) phrases completing "Contacts who …"."""
    kind = leaf.get("type")
    if kind == "has_tag":
        tag = {"tag": leaf["tag"]}
        return gettext("have the tag “%(tag)s”") % tag, gettext("do not have the tag “%(tag)s”") % tag
    if kind == "tag_score":
        values = {"tag": leaf["tag"], "comparison": _words(OP_WORDS, leaf["op"], leaf["value"], "tag score")}
        return (gettext("have the tag “%(tag)s” with a score %(comparison)s") % values,
                gettext("do not have the tag “%(tag)s” with a score %(comparison)s") % values)
    if kind == "score":
        values = {"comparison": _words(OP_WORDS, leaf["op"], leaf["value"], "contact score")}
        return (gettext("have a contact score %(comparison)s") % values,
                gettext("do not have a contact score %(comparison)s") % values)
    if kind == "temperature":
        if leaf["value"] in TEMPERATURE_PHRASES:
            positive, negative = TEMPERATURE_PHRASES[leaf["value"]]
            return str(positive), str(negative)
        return f"are {leaf['value']} leads", f"are not {leaf['value']} leads"
    if kind == "event_count":
        op, value = leaf["op"], leaf["value"]
        nouns = EVENT_NOUNS.get(leaf["event_type"], (leaf["event_type"], leaf["event_type"]))
        noun_number = {"count": _count_for_noun(op, value)}
        tail = []
        if leaf.get("where"):
            tail.append(gettext("where %(conditions)s") % {
                "conditions": _joined([describe_condition(condition) for condition in leaf["where"]])})
        tail.append(_window(leaf))
        count = _words(COUNT_WORDS, op, value, "event count")
        had = " ".join([count, str(nouns[0] % noun_number), *tail])
        had_not = " ".join([count, str(nouns[1] % noun_number), *tail])
        return (gettext("had %(events)s") % {"events": had},
                gettext("did not have %(events)s") % {"events": had_not})
    if kind == "inactive_days":
        days = leaf["value"]
        values = {"days": _number(days)}
        number = days if isinstance(days, int) else 5
        return (ngettext("have had no activity for %(days)s day", "have had no activity for %(days)s days",
                         number) % values,
                ngettext("were active in the last %(days)s day", "were active in the last %(days)s days",
                         number) % values)
    if kind == "purchase_total":
        values = {"amount": _words(COUNT_WORDS, leaf["op"], leaf["value"], "amount"), "window": _window(leaf)}
        return (gettext("spent %(amount)s on purchases %(window)s") % values,
                gettext("did not spend %(amount)s on purchases %(window)s") % values)
    if kind == "attribute":
        name = leaf["name"]
        values = {"condition": _words(ATTRIBUTE_WORDS, leaf["op"], leaf.get("value"))}
        if name in ATTRIBUTE_PHRASES:
            positive, negative = ATTRIBUTE_PHRASES[name]
            return str(positive) % values, str(negative) % values
        values["key"] = name.removeprefix("properties.")
        return (gettext("have a property “%(key)s” that %(condition)s") % values,
                gettext("do not have a property “%(key)s” that %(condition)s") % values)
    if kind == "age":
        op, value = leaf["op"], leaf["value"]
        values = {"age": _words(AGE_WORDS, op, value, "age")}
        number = _count_for_noun(op, value)
        return (ngettext("are aged %(age)s years", "are aged %(age)s years", number) % values,
                ngettext("are not aged %(age)s years", "are not aged %(age)s years", number) % values)
    if kind == "consent":
        channel = leaf["channel"]
        if channel in CONSENT_PHRASES:
            given, not_given = (str(phrase) for phrase in CONSENT_PHRASES[channel])
        else:
            values = {"channel": channel}
            given = gettext("have given %(channel)s consent") % values
            not_given = gettext("have not given %(channel)s consent") % values
        return (given, not_given) if leaf["value"] else (not_given, given)
    if kind == "segment":
        name = (segment_names or {}).get(leaf["segment_id"])
        values = {"segment": _quoted(name) if name else gettext("#%(id)s (deleted)") % {"id": leaf["segment_id"]}}
        return (gettext("are in the segment %(segment)s") % values,
                gettext("are not in the segment %(segment)s") % values)
    if kind == "stage":
        values = {"stage": leaf["stage"], "funnel": leaf["funnel"]}
        return (gettext("are at the stage “%(stage)s” of the funnel “%(funnel)s”") % values,
                gettext("are not at the stage “%(stage)s” of the funnel “%(funnel)s”") % values)
    if kind == "tier":
        values = {"tier": leaf["tier"], "program": leaf["program"]}
        return (gettext("are in the tier “%(tier)s” of “%(program)s”") % values,
                gettext("are not in the tier “%(tier)s” of “%(program)s”") % values)
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
            return gettext("(nobody)") if everyone == negated else gettext("(everybody)")
        if len(children) == 1:
            return _phrase(children[0], names, negated, nested)
        parts = [_phrase(child, names, False, True) for child in children]
        text = _joined(parts, "and" if key == "all" else "or")
        if negated:
            values = {"conditions": text}
            return (gettext("are not among those who (%(conditions)s)") if nested
                    else gettext("are not among those who %(conditions)s")) % values
        return f"({text})" if nested else text
    positive, negative = leaf_phrase(node, names)
    return negative if negated else positive


def describe(definition: Any, *, for_sending: bool = False) -> str:
    """The whole definition as one sentence."""
    names = _segment_names(definition)
    values = {"conditions": _phrase(definition, names)}
    if for_sending:
        return gettext("Contacts who %(conditions)s, and have given email consent (for sending).") % values
    return gettext("Contacts who %(conditions)s.") % values


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
