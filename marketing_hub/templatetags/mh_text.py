"""`{{ path|field_label }}`: an error path such as ``trigger.where.0.property`` in words.

Validation reports the JSON path of a bad field (the API contract needs it); people reading the
rule editor think in "condition 1" and "action 2", counted from one. The words are translated
(the paths themselves stay English in the API); a name not listed here is shown as it is spelt.
"""

from __future__ import annotations

import re

from django import template
from django.utils.translation import pgettext_lazy

register = template.Library()

# Context "rule field": the same English words ("score", "name") mean other things in other catalogues.
# A list's name followed by an index: "where.0" -> "condition 1".
_NUMBERED = {
    "where": pgettext_lazy("rule field", "condition %(number)s"),
    "conditions": pgettext_lazy("rule field", "condition %(number)s"),
    "actions": pgettext_lazy("rule field", "action %(number)s"),
    "rows": pgettext_lazy("rule field", "row %(number)s"),
}
# The fields of a rule, its trigger, conditions and actions (automation/rules.py, core/conditions.py).
_WORDS = {
    "trigger": pgettext_lazy("rule field", "trigger"),
    "event_type": pgettext_lazy("rule field", "event type"),
    "where": pgettext_lazy("rule field", "conditions"),
    "actions": pgettext_lazy("rule field", "actions"),
    "name": pgettext_lazy("rule field", "name"),
    "description": pgettext_lazy("rule field", "description"),
    "active": pgettext_lazy("rule field", "active"),
    "once_per_contact": pgettext_lazy("rule field", "once per contact"),
    "max_points_per_contact": pgettext_lazy("rule field", "max points per contact"),
    "property": pgettext_lazy("rule field", "property"),
    "op": pgettext_lazy("rule field", "operator"),
    "value": pgettext_lazy("rule field", "value"),
    "type": pgettext_lazy("rule field", "type"),
    "tag": pgettext_lazy("rule field", "tag"),
    "score": pgettext_lazy("rule field", "score"),
    "points": pgettext_lazy("rule field", "points"),
    "funnel": pgettext_lazy("rule field", "funnel"),
    "stage": pgettext_lazy("rule field", "stage"),
}


@register.filter
def field_label(path: str) -> str:
    parts = [part for part in str(path).split(".") if part and part != "trigger"]
    words: list[str] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        following = parts[index + 1] if index + 1 < len(parts) else ""
        if re.fullmatch(r"\d+", following):
            number = int(following) + 1
            numbered = _NUMBERED.get(part)
            words.append(str(numbered % {"number": number}) if numbered else f"{part.rstrip('s')} {number}")
            index += 2
            continue
        words.append(str(_WORDS.get(part, part.replace("_", " "))))
        index += 1
    if not words:
        return str(_WORDS.get(str(path), path))
    return ": ".join(words)
