"""The starter scoring model from the seeds (SALESmanago-style): category views tag the category,
purchases tag PURCHASE and add points (more for big orders), email opens and visits to the premium
"diamonds" page add points, a newsletter sign-up tags the contact. Installed by ``seed_demo`` and by
the "Install starter rules" button; idempotent by rule name."""

from __future__ import annotations

from django.db import transaction

from automation.models import Rule
from automation.rules import rule_save, validate_rule

STARTER_RULES: list[dict] = [
    {
        "name": "Category view → tag the category",
        "description": "Every product view adds 1 to the tag named after the product's category.",
        "trigger": {"event_type": "product_view", "where": []},
        "actions": [{"type": "add_tag", "tag": "{category}", "score": 1}],
    },
    {
        "name": "Purchase (up to 1000) → PURCHASE +1, +25 points",
        "description": "Any order counts towards the PURCHASE tag and is worth 25 points.",
        "trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "lte", "value": 1000}]},
        "actions": [{"type": "add_tag", "tag": "PURCHASE", "score": 1}, {"type": "add_score", "points": 25}],
    },
    {
        "name": "Purchase over 1000 → PURCHASE +1, +50 points",
        "description": "A big order is worth 50 points instead of 25.",
        "trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "gt", "value": 1000}]},
        "actions": [{"type": "add_tag", "tag": "PURCHASE", "score": 1}, {"type": "add_score", "points": 50}],
    },
    {
        "name": "Newsletter open → +10 points",
        "description": "Each opened email shows interest.",
        "trigger": {"event_type": "email_open", "where": []},
        "actions": [{"type": "add_score", "points": 10}],
    },
    {
        "name": "Diamonds page visit → +30 points",
        "description": "A visit to the premium /diamenty pages signals a high-value lead.",
        "trigger": {"event_type": "page_view", "where": [{"property": "url", "op": "contains", "value": "/diamenty"}]},
        "actions": [{"type": "add_score", "points": 30}],
    },
    {
        "name": "Newsletter sign-up → tag newsletter",
        "description": "Marks subscribers.",
        "trigger": {"event_type": "newsletter_signup", "where": []},
        "actions": [{"type": "add_tag", "tag": "newsletter", "score": 1}],
    },
]


def install_starter_rules() -> list[Rule]:
    """Create the starter rules that do not exist yet (matched by name); return all of them."""
    installed = []
    with transaction.atomic():
        existing = {rule.name: rule for rule in Rule.objects.filter(name__in=[r["name"] for r in STARTER_RULES])}
        for definition in STARTER_RULES:
            rule = existing.get(definition["name"])
            if rule is None:
                rule = rule_save(Rule(), validate_rule({**definition, "active": True}))
            installed.append(rule)
    return installed
