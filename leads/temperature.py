"""Lead temperature: derived from ``Contact.score`` and the thresholds, never stored, so changing
the thresholds re-classifies every contact at once. Filters are range conditions on the score,
which the ``contact_score_idx`` index answers."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q
from django.utils.translation import gettext as _

from core.outbox import OUTBOX_TABLE, outbox_written_send
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
            FROM contacts_contact WHERE NOT is_anonymous
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
            errors.append({"field": field, "message": _("Must be a whole number.")})
        elif not 0 <= value <= THRESHOLD_LIMIT:
            # Below 0 a "cold" contact could not exist for new contacts (they start at 0).
            errors.append({"field": field, "message": _("Must be between 0 and %(max)s.") % {"max": f"{THRESHOLD_LIMIT:,}"}})
    if not errors and warm >= hot:
        errors.append({"field": "hot", "message": _("Hot (%(hot)s) must be greater than warm (%(warm)s).") % {"hot": hot, "warm": warm}})
    return errors


def thresholds_save(*, warm: int, hot: int, user=None) -> TemperatureSettings:
    """Save new thresholds (validated by the caller). The audit trail is the settings history."""
    from django.db import transaction
    from django.utils import timezone

    settings_row = TemperatureSettings.current()
    with transaction.atomic():
        old = TemperatureSettings.objects.select_for_update().values_list("warm", "hot").get(pk=settings_row.pk)
        TemperatureSettings.objects.filter(pk=settings_row.pk).update(
            warm=warm, hot=hot, updated_by=user if getattr(user, "is_authenticated", False) else None,
            updated_at=timezone.now(),
        )
        temperature_changes_record(old=old, new=(warm, hot))
    settings_row.refresh_from_db()
    return settings_row


def temperature_changes_record(*, old: tuple[int, int], new: tuple[int, int]) -> int:
    """Tell the world (``core.outbox``) about every contact whose temperature a threshold change
    moves: ONE ``INSERT … SELECT`` over the score range between the old and new thresholds (the
    only scores that can change class; ``contact_score_idx`` answers it). Call it in the
    transaction that saves the thresholds. Returns the messages written."""
    (old_warm, old_hot), (new_warm, new_hot) = old, new
    if (old_warm, old_hot) == (new_warm, new_hot):
        return 0
    low, high = min(old_warm, old_hot, new_warm, new_hot), max(old_warm, old_hot, new_warm, new_hot)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {OUTBOX_TABLE} (type, contact_id, data)
            SELECT 'lead.temperature_changed', id, jsonb_build_object('from', t_from, 'to', t_to, 'score', score)
            FROM (
                SELECT c.id, c.score,
                       CASE WHEN c.score >= %(old_hot)s THEN 'hot' WHEN c.score >= %(old_warm)s THEN 'warm'
                            ELSE 'cold' END AS t_from,
                       CASE WHEN c.score >= %(new_hot)s THEN 'hot' WHEN c.score >= %(new_warm)s THEN 'warm'
                            ELSE 'cold' END AS t_to
                FROM contacts_contact c
                WHERE c.score >= %(low)s AND c.score < %(high)s AND NOT c.is_anonymous
            ) moved
            WHERE t_from <> t_to
            ORDER BY id
            """,
            {"old_warm": old_warm, "old_hot": old_hot, "new_warm": new_warm, "new_hot": new_hot,
             "low": low, "high": high},
        )
        told = cursor.rowcount
        if told:
            outbox_written_send(temperature_changes_record)
        # The contacts this change makes hot alert sales in the same transaction.
        from leads.notifications import hot_alerts_on_thresholds  # local import: notifications → scoring → temperature

        hot_alerts_on_thresholds(cursor, old_warm=old_warm, old_hot=old_hot, new_warm=new_warm, new_hot=new_hot)
        return told
