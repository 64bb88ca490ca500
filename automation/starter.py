"""The starter scoring model from the seeds (SALESmanago-style): category views tag the category,
purchases tag PURCHASE and add points (more for big orders), email opens and visits to the premium
"diamonds" page add points, a newsletter sign-up tags the contact. Installed by ``seed_demo`` and by
the "Install starter rules" button; idempotent by rule name."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from automation.models import Rule
from automation.rules import rule_save, validate_rule

STARTER_RULES: list[dict] = [
    {
        "name": _("Category view → tag the category"),
        "description": _("Every product view adds 1 to the tag named after the product's category."),
        "trigger": {"event_type": "product_view", "where": []},
        "actions": [{"type": "add_tag", "tag": "{category}", "score": 1}],
    },
    {
        "name": _("Purchase (up to 1000) → PURCHASE +1, +25 points"),
        "description": _("Any order counts towards the PURCHASE tag and is worth 25 points."),
        "trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "lte", "value": 1000}]},
        "actions": [{"type": "add_tag", "tag": "PURCHASE", "score": 1}, {"type": "add_score", "points": 25}],
    },
    {
        "name": _("Purchase over 1000 → PURCHASE +1, +50 points"),
        "description": _("A big order is worth 50 points instead of 25."),
        "trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "gt", "value": 1000}]},
        "actions": [{"type": "add_tag", "tag": "PURCHASE", "score": 1}, {"type": "add_score", "points": 50}],
    },
    {
        "name": _("Newsletter open → +10 points"),
        "description": _("Each opened email shows interest."),
        "trigger": {"event_type": "email_open", "where": []},
        "actions": [{"type": "add_score", "points": 10}],
    },
    {
        "name": _("Diamonds page visit → +30 points"),
        "description": _("A visit to the premium /diamenty pages signals a high-value lead."),
        "trigger": {"event_type": "page_view", "where": [{"property": "url", "op": "contains", "value": "/diamenty"}]},
        "actions": [{"type": "add_score", "points": 30}],
    },
    {
        "name": _("Newsletter sign-up → tag newsletter"),
        "description": _("Marks subscribers."),
        "trigger": {"event_type": "newsletter_signup", "where": []},
        "actions": [{"type": "add_tag", "tag": "newsletter", "score": 1}],
    },
]


def _names_in_every_language(name: str | Promise) -> list[str]:
    """A starter rule's name as it may have been installed: in any of the site's languages."""
    names = []
    for code, _label in settings.LANGUAGES:
        with translation.override(code):
            names.append(str(name))
    return list(dict.fromkeys(names))


def install_starter_rules() -> list[Rule]:
    """Create the starter rules that do not exist yet (matched by name, in any language); return all
    of them. A new rule gets its name and description in the active language (they are data then)."""
    installed = []
    with transaction.atomic():
        names = {index: _names_in_every_language(definition["name"]) for index, definition in enumerate(STARTER_RULES)}
        existing = {rule.name: rule for rule in
                    Rule.objects.filter(name__in=[name for variants in names.values() for name in variants])}
        for index, definition in enumerate(STARTER_RULES):
            rule = next((existing[name] for name in names[index] if name in existing), None)
            if rule is None:
                data = {**definition, "name": str(definition["name"]), "description": str(definition["description"])}
                rule = rule_save(Rule(), validate_rule({**data, "active": True}))
            installed.append(rule)
    return installed
