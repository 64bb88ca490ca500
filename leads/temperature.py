"""Lead temperature: derived from ``Contact.score`` and the thresholds, never stored, so changing
the thresholds re-classifies every contact at once. Filters are range conditions on the score,
which the ``contact_score_idx`` index answers."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from leads.models import TemperatureSettings

TEMPERATURES = ("cold", "warm", "hot")
# Scores are int4: thresholds outside this range could never be reached anyway.
THRESHOLD_LIMIT = 1_000_000_000


def temperature_q(temperature: str, thresholds: TemperatureSettings | None = None, *, prefix: str = "") -> Q:
    """The score range of ``temperature`` as a Q on contacts (``prefix`` for related lookups)."""
    thresholds = thresholds or TemperatureSettings.current()
    field = f"{prefix}score"
    if temperature == "hot":
        return Q(**{f"{field}__gte": thresholds.hot})
    if temperature == "warm":
        return Q(**{f"{field}__gte": thresholds.warm, f"{field}__lt": thresholds.hot})
    if temperature == "cold":
        return Q(**{f"{field}__lt": thresholds.warm})
    raise ValueError(f"unknown temperature {temperature!r}")


def temperature_counts(warm: int, hot: int) -> dict[str, int]:
    """How many contacts each temperature would hold with these thresholds: one scan, three
    counts (``COUNT(*) FILTER``), used by the settings preview and the dashboard."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE score < %(warm)s),
                   count(*) FILTER (WHERE score >= %(warm)s AND score < %(hot)s),
                   count(*) FILTER (WHERE score >= %(hot)s)
            FROM contacts_contact
            """,
            {"warm": warm, "hot": hot},
        )
        cold_count, warm_count, hot_count = cursor.fetchone()
    return {"cold": cold_count, "warm": warm_count, "hot": hot_count}


def thresholds_errors(warm, hot) -> list[dict]:
    """Validation shared by the API and the settings form: ``[{"field", "message"}]``."""
    errors: list[dict] = []
    for field, value in (("warm", warm), ("hot", hot)):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append({"field": field, "message": "Must be a whole number."})
        elif abs(value) > THRESHOLD_LIMIT:
            errors.append({"field": field, "message": f"Must be between -{THRESHOLD_LIMIT:,} and {THRESHOLD_LIMIT:,}."})
    if not errors and warm >= hot:
        errors.append({"field": "hot", "message": f"Hot ({hot}) must be greater than warm ({warm})."})
    return errors


def thresholds_save(*, warm: int, hot: int, user=None) -> TemperatureSettings:
    """Save new thresholds (validated by the caller). The audit trail is the settings history."""
    from django.utils import timezone

    settings_row = TemperatureSettings.current()
    TemperatureSettings.objects.filter(pk=settings_row.pk).update(
        warm=warm, hot=hot, updated_by=user if getattr(user, "is_authenticated", False) else None,
        updated_at=timezone.now(),
    )
    settings_row.refresh_from_db()
    return settings_row
