"""The visual builder's form: the definition tree as structured field names, and back.

Every node of the tree has a path (``r`` is the root group, ``r-0`` its first child,
``r-0-2`` the third child of that, …) and posts its fields as ``<path>.<field>``:
``r-0.kind`` (group|leaf), ``r-0.negate``, groups ``r-0.join`` (all|any), conditions
``r-0.type``, ``r-0.tag``, ``r-0.op``, ``r-0.value``, ``r-0.value2`` (between), …, and event
``where`` rows as ``r-0.where-1.property``. The server parses the whole form into
:class:`UINode` objects, applies the structural operation (add, remove, negate, change
type) and renders the tree again; the same objects turn into the contract's JSON definition.

Values typed into the inputs are converted to numbers where the contract wants numbers; a value
that does not convert stays a string, so validation reports "must be a number" on its row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from core.conditions import OP_LABELS as CONDITION_OP_LABELS
from core.conditions import OPS as CONDITION_OPS
from segments.validation import ATTRIBUTE_COLUMNS, LEAF_TYPES, NUMBER_OPS, OPS, DefinitionProblem

LEAF_LABELS = {
    "has_tag": _("Has tag"),
    "tag_score": _("Tag score"),
    "score": _("Contact score"),
    "temperature": _("Temperature"),
    "event_count": _("Number of events"),
    "inactive_days": _("Inactive for"),
    "purchase_total": _("Purchase total"),
    "attribute": _("Contact data"),
    "age": _("Age"),
    "consent": _("Consent"),
    "segment": _("In segment"),
    "stage": _("Funnel stage"),
    "tier": _("Loyalty tier"),
}
# The leaves' operators: those of the shared condition language (an event's "where" uses exactly
# those) plus ranges and emptiness.
OP_LABELS = {**CONDITION_OP_LABELS, "between": _("between"), "is_empty": _("is empty"), "not_empty": _("is not empty")}
WHERE_OPS = CONDITION_OPS
TEXT_OPS = ("eq", "ne", "in", "contains", "is_empty", "not_empty")
PATH = re.compile(r"^r(-\d+)*$")
NUMBER = re.compile(r"^\s*-?\d+([.,]\d+)?\s*$")

# A new condition of each type starts with values that already make sense.
LEAF_DEFAULTS: dict[str, dict] = {
    "has_tag": {"tag": ""},
    "tag_score": {"tag": "", "op": "gte", "value": 3},
    "score": {"op": "gte", "value": 100},
    "temperature": {"value": "hot"},
    "event_count": {"event_type": "product_view", "op": "gte", "value": 1, "within_days": 30},
    "inactive_days": {"value": 365},
    "purchase_total": {"op": "gte", "value": 1000, "within_days": 365},
    "attribute": {"name": "city", "op": "eq", "value": ""},
    "age": {"op": "between", "value": [25, 35]},
    "consent": {"channel": "email", "value": True},
    "segment": {"segment_id": None},
    "stage": {"funnel": "", "stage": ""},
    "tier": {"program": "", "tier": ""},
}


@dataclass
class UINode:
    path: str
    kind: str = "leaf"  # "group" or "leaf"
    negate: bool = False
    join: str = "all"
    children: list[UINode] = field(default_factory=list)
    type: str = "has_tag"
    values: dict[str, str] = field(default_factory=dict)  # leaf inputs as typed
    where: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    json_path: str = ""
    autofocus: bool = False

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def depth(self) -> int:
        return self.path.count("-")

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    # template conveniences
    @property
    def op(self) -> str:
        return self.values.get("op", "")

    @property
    def ops(self) -> list[tuple[str, str]]:
        if self.type == "attribute":
            names = OPS if self.values.get("name", "") == "properties" else TEXT_OPS
        else:
            names = NUMBER_OPS
        return [(op, OP_LABELS[op]) for op in names]

    @property
    def takes_value(self) -> bool:
        return self.op not in ("is_empty", "not_empty")

    @property
    def label(self) -> str:
        return LEAF_LABELS.get(self.type, self.type)


# --- form data → nodes --------------------------------------------------------------------------
def _fields_by_path(data) -> dict[str, dict[str, str]]:
    by_path: dict[str, dict[str, str]] = {}
    for key in data:
        path, _sep, name = key.partition(".")
        if name and PATH.match(path):
            by_path.setdefault(path, {})[name] = data.get(key)
    return by_path


def _children_paths(path: str, paths) -> list[str]:
    prefix = f"{path}-"
    found = [other for other in paths if other.startswith(prefix) and "-" not in other[len(prefix):]]
    return sorted(found, key=lambda other: int(other[len(prefix):]))


def nodes_from_post(data) -> UINode:
    """The tree as posted (paths may have gaps after removals; order is by index)."""
    by_path = _fields_by_path(data)

    def build(path: str) -> UINode:
        fields = by_path.get(path, {})
        node = UINode(path=path, kind=fields.get("kind", "group" if path == "r" else "leaf"))
        node.negate = fields.get("negate") in ("on", "true", "1")
        if node.is_group:
            node.join = "any" if fields.get("join") == "any" else "all"
            node.children = [build(child) for child in _children_paths(path, by_path)]
            return node
        node.type = fields.get("type") if fields.get("type") in LEAF_TYPES else "has_tag"
        where: dict[int, dict[str, str]] = {}
        for name, value in fields.items():
            match = re.match(r"^where-(\d+)\.(property|op|value)$", name)
            if match:
                where.setdefault(int(match.group(1)), {})[match.group(2)] = value
            elif name not in ("kind", "negate", "join", "type"):
                node.values[name] = value
        node.where = [where[index] for index in sorted(where)]
        return node

    root = build("r")
    root.kind = "group"
    return root


# --- nodes → definition ---------------------------------------------------------------------------
def _number(text: str) -> Any:
    """``"3"`` → 3, ``"2,5"`` → 2.5; anything else stays as typed (validation names it)."""
    if isinstance(text, str) and NUMBER.match(text):
        cleaned = text.strip().replace(",", ".")
        return float(cleaned) if "." in cleaned else int(cleaned)
    return text


def _scalar(text: str) -> Any:
    """For string comparisons: numbers typed as numbers compare numerically (contract)."""
    value = _number(text)
    return value if not isinstance(value, str) else text.strip()


def _list(text: str, convert) -> list:
    return [convert(item) for item in (text or "").split(",") if item.strip()]


def _comparison(node: UINode, convert=_number) -> dict:
    op = node.get("op", "gte")
    result: dict[str, Any] = {"op": op}
    if op == "between":
        result["value"] = [convert(node.get("value")), convert(node.get("value2"))]
    elif op == "in":
        result["value"] = _list(node.get("value"), convert)
    elif op not in ("is_empty", "not_empty"):
        result["value"] = convert(node.get("value"))
    return result


def _window(node: UINode) -> dict:
    text = (node.get("within_days") or "").strip()
    return {"within_days": _number(text)} if text else {}


def leaf_definition(node: UINode) -> dict:
    kind = node.type
    leaf: dict[str, Any] = {"type": kind}
    if kind == "has_tag":
        leaf["tag"] = node.get("tag").strip()
    elif kind == "tag_score":
        leaf["tag"] = node.get("tag").strip()
        leaf.update(_comparison(node))
    elif kind in ("score", "age"):
        leaf.update(_comparison(node))
    elif kind == "temperature":
        leaf["value"] = node.get("value", "hot")
    elif kind == "event_count":
        leaf["event_type"] = node.get("event_type", "product_view")
        where = []
        for row in node.where:
            op = row.get("op", "eq")
            value: Any = _list(row.get("value", ""), _scalar) if op == "in" else (
                _number(row.get("value", "")) if op in ("gt", "gte", "lt", "lte") else
                row.get("value", "").strip() if op == "contains" else _scalar(row.get("value", ""))
            )
            where.append({"property": row.get("property", "").strip(), "op": op, "value": value})
        if where:
            leaf["where"] = where
        leaf.update(_window(node))
        leaf.update(_comparison(node))
    elif kind == "inactive_days":
        leaf["value"] = _number(node.get("value"))
    elif kind == "purchase_total":
        leaf.update(_window(node))
        leaf.update(_comparison(node))
    elif kind == "attribute":
        name = node.get("name", "city")
        is_property = name == "properties"
        leaf["name"] = f"properties.{node.get('key').strip()}" if is_property else name
        op = node.get("op", "eq")
        if op in ("gt", "gte", "lt", "lte", "between"):
            leaf.update(_comparison(node))
        elif op == "contains":
            leaf.update({"op": op, "value": node.get("value")})
        elif is_property:
            leaf.update(_comparison(node, _scalar))
        else:
            leaf.update(_comparison(node, lambda text: text.strip()))
    elif kind == "consent":
        leaf["channel"] = node.get("channel", "email").strip() or "email"
        leaf["value"] = node.get("value", "true") != "false"
    elif kind == "segment":
        leaf["segment_id"] = _number(node.get("segment_id")) if node.get("segment_id") else None
    elif kind == "stage":
        funnel, _sep, stage = node.get("choice").partition("\u203a")
        leaf.update({"funnel": funnel.strip(), "stage": stage.strip()})
    elif kind == "tier":
        program, _sep, tier = node.get("choice").partition("\u203a")
        leaf.update({"program": program.strip(), "tier": tier.strip()})
    return leaf


def definition_from_nodes(root: UINode) -> Any:
    """The contract's JSON; records each node's JSON path for mapping errors back to rows."""

    def convert(node: UINode, json_path: str) -> Any:
        inner_path = f"{json_path}.not" if node.negate and json_path else ("not" if node.negate else json_path)
        node.json_path = inner_path
        if node.is_group:
            children = [
                convert(child, f"{inner_path}.{node.join}[{index}]" if inner_path else f"{node.join}[{index}]")
                for index, child in enumerate(node.children)
            ]
            body: Any = {node.join: children}
        else:
            body = leaf_definition(node)
        return {"not": body} if node.negate else body

    return convert(root, "")


# --- definition → nodes ---------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _leaf_values(leaf: dict) -> tuple[dict[str, str], list[dict[str, str]]]:
    values: dict[str, str] = {}
    for key in ("tag", "op", "event_type", "channel", "within_days", "segment_id"):
        if key in leaf:
            values[key] = _text(leaf[key])
    value = leaf.get("value")
    if leaf.get("op") == "between" and isinstance(value, list) and len(value) == 2:
        values["value"], values["value2"] = _text(value[0]), _text(value[1])
    elif isinstance(value, list):
        values["value"] = ", ".join(_text(item) for item in value)
    else:
        values["value"] = _text(value)
    if leaf.get("type") == "attribute":
        name = leaf.get("name", "city")
        if isinstance(name, str) and name.startswith("properties."):
            values["name"], values["key"] = "properties", name.removeprefix("properties.")
        else:
            values["name"] = name
    if leaf.get("type") == "stage":
        values["choice"] = f"{leaf.get('funnel', '')} \u203a {leaf.get('stage', '')}"
    if leaf.get("type") == "tier":
        values["choice"] = f"{leaf.get('program', '')} \u203a {leaf.get('tier', '')}"
    where = [
        {"property": _text(row.get("property")), "op": _text(row.get("op")),
         "value": ", ".join(_text(item) for item in row["value"]) if isinstance(row.get("value"), list)
         else _text(row.get("value"))}
        for row in leaf.get("where") or [] if isinstance(row, dict)
    ]
    return values, where


def nodes_from_definition(definition: Any) -> UINode:
    """The builder tree of a (valid) definition; the root is always a group."""

    def build(node: Any, path: str) -> UINode:
        negate = False
        if isinstance(node, dict) and "not" in node and not isinstance(node["not"], dict | None):
            node = {"all": []}
        if isinstance(node, dict) and "not" in node:
            inner = node["not"]
            if isinstance(inner, dict) and "not" in inner:
                # NOT NOT x: one negated group holding "NOT x"
                return UINode(path=path, kind="group", negate=True, join="all", children=[build(inner, f"{path}-0")])
            node, negate = inner, True
        if isinstance(node, dict) and ("all" in node or "any" in node):
            join = "all" if "all" in node else "any"
            children = node[join] if isinstance(node[join], list) else []
            return UINode(path=path, kind="group", negate=negate, join=join,
                          children=[build(child, f"{path}-{index}") for index, child in enumerate(children)])
        leaf = node if isinstance(node, dict) else {}
        values, where = _leaf_values(leaf)
        return UINode(path=path, kind="leaf", negate=negate, type=leaf.get("type", "has_tag"), values=values, where=where)

    root = build(definition if definition is not None else {"all": []}, "r")
    if not root.is_group:
        leaf = root
        leaf.path = "r-0"
        root = UINode(path="r", kind="group", join="all", children=[leaf])
    return root


def renumber(node: UINode, path: str = "r") -> None:
    node.path = path
    for index, child in enumerate(node.children):
        renumber(child, f"{path}-{index}")


def find(node: UINode, path: str) -> UINode | None:
    if node.path == path:
        return node
    for child in node.children:
        found = find(child, path)
        if found:
            return found
    return None


def find_parent(node: UINode, path: str) -> UINode | None:
    for child in node.children:
        if child.path == path:
            return node
        found = find_parent(child, path)
        if found:
            return found
    return None


def new_leaf(leaf_type: str = "tag_score") -> UINode:
    values, where = _leaf_values({"type": leaf_type, **LEAF_DEFAULTS.get(leaf_type, {})})
    return UINode(path="", kind="leaf", type=leaf_type, values=values, where=where)


def apply_operation(root: UINode, operation: str, target: str) -> str | None:
    """Apply one structural edit; returns the path to focus afterwards."""
    node = find(root, target) or root
    focus: str | None = None
    if operation == "add_condition" and node.is_group:
        child = new_leaf()
        child.autofocus = True
        node.children.append(child)
    elif operation == "add_group" and node.is_group:
        child = UINode(path="", kind="group", join="any" if node.join == "all" else "all", children=[new_leaf()])
        child.children[0].autofocus = True
        node.children.append(child)
    elif operation == "remove" and node is not root:
        parent = find_parent(root, node.path)
        if parent is not None:
            parent.children = [child for child in parent.children if child is not node]
            focus = parent.path
    elif operation == "negate":
        node.negate = not node.negate
    elif operation == "set_type" and not node.is_group:
        # keep what still applies (the tag when switching has_tag ↔ tag_score)
        fresh = new_leaf(node.type)
        for key in ("tag",):
            if node.values.get(key):
                fresh.values[key] = node.values[key]
        node.values, node.where = fresh.values, fresh.where
        node.autofocus = True
    elif operation == "where_add" and not node.is_group:
        node.where.append({"property": "category", "op": "eq", "value": ""})
    elif operation.startswith("where_remove_") and not node.is_group:
        index = int(operation.removeprefix("where_remove_") or 0)
        node.where = [row for number, row in enumerate(node.where) if number != index]
    renumber(root)
    return focus


def attach_errors(root: UINode, problems: list[DefinitionProblem]) -> list[str]:
    """Put each problem on the row whose JSON path is the longest prefix of the problem's path;
    returns the problems no row claimed (shown above the tree)."""
    nodes: list[UINode] = []

    def walk(node: UINode) -> None:
        nodes.append(node)
        for child in node.children:
            walk(child)

    walk(root)
    unclaimed: list[str] = []
    for problem in problems:
        best: UINode | None = None
        for node in nodes:
            prefix = node.json_path
            if prefix and problem.path != prefix and not problem.path.startswith((prefix + ".", prefix + "[")):
                continue
            if best is None or len(prefix) > len(best.json_path):
                best = node
        if best is None:
            unclaimed.append(str(problem))
            continue
        rest = problem.path[len(best.json_path):].lstrip(".")
        field_name = _FIELD_NAMES.get(rest.split("[")[0], rest) if rest else ""
        best.errors.append(f"{field_name}: {problem.message}" if field_name else str(problem.message))
    return unclaimed


_FIELD_NAMES = {
    "value": _("Value"),
    "op": _("Comparison"),
    "tag": _("Tag"),
    "within_days": _("Days"),
    "event_type": _("Event"),
    "name": _("Field"),
    "segment_id": _("Segment"),
    "channel": _("Channel"),
    "funnel": _("Funnel"),
    "stage": _("Stage"),
    "program": _("Programme"),
    "tier": _("Tier"),
    "where": _("Event condition"),
}


class SegmentMetaForm(forms.Form):
    """The parts of the builder that are not the tree."""

    name = forms.CharField(max_length=200, label=_("Name"))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label=_("Description"))
    for_sending = forms.BooleanField(
        required=False,
        label=_("For sending: exclude contacts without email consent"),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError(_("A segment needs a name."))
        return name


ATTRIBUTE_LABELS = {
    "country": _("Country"),
    "city": _("City"),
    "email": _("Email"),
    "first_name": _("First name"),
    "last_name": _("Last name"),
    "phone": _("Phone"),
}
ATTRIBUTE_CHOICES = [(name, ATTRIBUTE_LABELS.get(name, name)) for name in ATTRIBUTE_COLUMNS] + [
    ("properties", _("Property…"))
]
