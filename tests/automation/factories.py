"""Rules, events and helpers for the automation tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.utils import timezone

from automation.models import Rule
from automation.rules import rule_save, validate_rule

_counter = itertools.count(1)

# The rule editor's form as the browser posts it: "When a product view with category = kurtki
# happens, add tag KURTKI +1."
JACKETS_FORM = {
    "name": "Jackets", "event_type": "product_view", "active": "on",
    "cond-0-property": "category", "cond-0-op": "eq", "cond-0-value": "kurtki",
    "act-0-type": "add_tag", "act-0-tag": "KURTKI", "act-0-score": "1",
}


def make_rule(
    name: str | None = None,
    *,
    event_type: str = "product_view",
    where: list | None = None,
    actions: list | None = None,
    active: bool = True,
    activated_at: datetime | None = None,
    **options,
) -> Rule:
    """A rule created the way the API does (validated), activated in the past by default so
    events ingested in the test apply."""
    cleaned = validate_rule(
        {
            "name": name or f"rule {next(_counter)}",
            "active": active,
            "trigger": {"event_type": event_type, "where": where or []},
            "actions": actions or [{"type": "add_tag", "tag": "{category}", "score": 1}],
            **options,
        }
    )
    rule = rule_save(Rule(), cleaned)
    if active:
        rule.activated_at = activated_at or timezone.now() - timedelta(hours=1)
        rule.save(update_fields=["activated_at"])
    return rule


def event(event_id: str | None = None, *, email: str = "anna@example.com", type: str = "product_view",
          occurred_at: datetime | None = None, **properties) -> dict:
    """One event as the API takes it."""
    return {
        "event_id": event_id or f"ev-{next(_counter)}",
        "email": email,
        "type": type,
        "occurred_at": (occurred_at or timezone.now() - timedelta(minutes=1)).isoformat(),
        "properties": properties,
    }


def process_all() -> dict:
    """Run the engine in-process (the task's body) until nothing is pending."""
    from automation.engine import events_process_pending

    return events_process_pending(time_budget=60)


def tags_of(email: str) -> dict[str, int]:
    from contacts.models import ContactTag

    return {
        row.tag.name: row.score
        for row in ContactTag.objects.filter(contact__email=email).select_related("tag")
    }


def score_of(email: str) -> int:
    from contacts.models import Contact

    return Contact.objects.get(email=email).score
