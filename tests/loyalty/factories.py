"""Loyalty test helpers: programmes with tiers, purchases as events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from loyalty.models import Program
from loyalty.services import TierSpec, program_recompute, program_save

# The seeds' example programme as the API takes it (a PURCHASE score club, two tiers). Read-only:
# tests copy it ({**SEEDS_EXAMPLE, …}) to change a field.
SEEDS_EXAMPLE = {
    "name": "PURCHASE club",
    "metric": {"type": "tag_score", "tag": "PURCHASE"},
    "tiers": [
        {"name": "Bronze", "min": 0, "benefits": {"discount_percent": 5}},
        {"name": "Silver", "min": 6, "benefits": {"discount_percent": 7}},
    ],
}


def make_program(
    name: str = "PURCHASE club",
    *,
    metric: dict | None = None,
    tiers: list[tuple[str, float | int, dict | None]] | None = None,
    downgrade_policy: str = Program.Downgrade.IMMEDIATE,
    grace_days: int = 0,
    recompute: bool = True,
) -> Program:
    """The seeds' example by default: 5% while PURCHASE ≤ 5, 7% above (integer scores)."""
    tiers = tiers if tiers is not None else [
        ("Bronze", 0, {"discount_percent": 5}),
        ("Silver", 6, {"discount_percent": 7}),
    ]
    program = program_save(
        None,
        name=name,
        metric=metric or {"type": "tag_score", "tag": "PURCHASE"},
        downgrade_policy=downgrade_policy,
        grace_days=grace_days,
        tiers=[TierSpec(name=tier_name, min=Decimal(str(minimum)), benefits=benefits or {}) for tier_name, minimum, benefits in tiers],
    )
    if recompute:
        program_recompute(program)
    return program


def add_purchase(contact, value: float | int, *, occurred_at: datetime | None = None, event_id: str | None = None) -> None:
    """A purchase event row (set-up only: bypasses ingestion and the rules)."""
    occurred_at = occurred_at or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT mh_ensure_event_partitions(%s, %s)", [occurred_at, occurred_at])
        cursor.execute(
            "INSERT INTO automation_event (event_id, contact_id, type, occurred_at, received_at, properties, value) "
            "VALUES (%s, %s, 'purchase', %s, now(), %s::jsonb, %s)",
            [event_id or f"p-{contact.pk}-{occurred_at.timestamp()}-{value}", contact.pk, occurred_at,
             f'{{"value": {value}}}', Decimal(str(value))],
        )


def tier_of(program: Program, contact) -> str | None:
    from loyalty.models import ContactTier

    row = ContactTier.objects.filter(program=program, contact=contact).select_related("tier").first()
    return row.tier.name if row and row.tier else None
