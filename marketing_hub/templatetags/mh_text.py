"""`{{ path|field_label }}`: an error path such as ``trigger.where.0.property`` in words.

Validation reports the JSON path of a bad field (the API contract needs it); people reading the
rule editor think in "condition 1" and "action 2", counted from one.
"""

from __future__ import annotations

import re

from django import template

register = template.Library()

_NAMES = {"where": "condition", "actions": "action", "conditions": "condition", "rows": "row"}


@register.filter
def field_label(path: str) -> str:
    parts = [part for part in str(path).split(".") if part and part != "trigger"]
    words: list[str] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        following = parts[index + 1] if index + 1 < len(parts) else ""
        if re.fullmatch(r"\d+", following):
            words.append(f"{_NAMES.get(part, part.rstrip('s'))} {int(following) + 1}")
            index += 2
            continue
        words.append(part.replace("_", " "))
        index += 1
    return ": ".join(words) if words else str(path)
