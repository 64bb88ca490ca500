"""Why a lead is hot: the causes in its points ledger (``ScoreChange``) that gave it the most
points, for the card's header and the hot-leads list's "why" column.

A cause is a rule (by name; "Deleted rule" once it is gone) or, for points no rule gave, the
ledger's reason ("Manual", "Decay", …). One query for a whole page of leads, never one per row:
the ledger is read through scorechange_contact_idx (contact, created_at) for just those ids."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import connection
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

WHY_LIMIT = 3

# Ledger reasons written by the app itself (identifiers), named for people; other reasons are data.
REASON_LABELS = {"decay": _("Decay"), "manual": _("Manual change"), "Manual": _("Manual change")}


def reason_label(reason: str | None) -> str:
    """A ledger reason as pages show it."""
    return str(REASON_LABELS.get(reason or "", reason or ""))

# Rule names come from automation's table by SQL (leads may not import automation); a rule
# deleted since keeps its points under "Deleted rule".
_CAUSES_SQL = """
SELECT contact_id, rule_id, name, points, times FROM (
    SELECT s.contact_id, s.rule_id,
           coalesce(r.name, max(s.reason) FILTER (WHERE s.rule_id IS NULL), '') AS name,
           sum(s.delta) AS points, count(*) AS times,
           row_number() OVER (PARTITION BY s.contact_id ORDER BY sum(s.delta) DESC, s.rule_id NULLS LAST) AS rank
    FROM leads_scorechange s LEFT JOIN automation_rule r ON r.id = s.rule_id
    WHERE s.contact_id = ANY(%(contact_ids)s::bigint[])
    GROUP BY s.contact_id, s.rule_id, r.name, CASE WHEN s.rule_id IS NULL THEN s.reason END
    HAVING sum(s.delta) > 0
) ranked
WHERE rank <= %(limit)s
ORDER BY contact_id, rank
"""


@dataclass(frozen=True)
class ScoreCause:
    rule_id: int | None
    name: str
    points: int
    times: int

    @property
    def label(self) -> str:
        if self.name:
            return self.name if self.rule_id is not None else reason_label(self.name)
        return gettext("Manual change") if self.rule_id is None else gettext("Deleted rule")


def score_causes(contact_ids: list[int], limit: int = WHY_LIMIT) -> dict[int, list[ScoreCause]]:
    """The ``limit`` causes that gave each contact the most points (positive totals only), best
    first; one query for all the ids."""
    if not contact_ids:
        return {}
    causes: dict[int, list[ScoreCause]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(_CAUSES_SQL, {"contact_ids": list(contact_ids), "limit": limit})
        for contact_id, rule_id, name, points, times in cursor.fetchall():
            causes[contact_id].append(ScoreCause(rule_id=rule_id, name=name, points=points, times=times))
    return dict(causes)
