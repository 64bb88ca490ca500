"""Anonymous profiles merged or purged (``contacts.merging``): the points ledger and the score move
to the contact, a funnel keeps the further of the two stages, and what only makes sense for a
known person (hot-lead alerts, trends, status history) is not carried over."""

from __future__ import annotations

from typing import Any

from contacts.merging import rows_delete, rows_move
from leads.funnels import transition_stays_recompute
from leads.models import TemperatureSettings
from leads.notifications import hot_transitions_notify

_DERIVED = ("leads_scoretrend", "leads_hotlead", "leads_notification")


def on_contacts_merging(sender: Any, *, cursor: Any, pairs_sql: str, params: dict, **kwargs: Any) -> None:
    # The score adds up; a contact it makes hot alerts sales as any other rise would.
    cursor.execute(
        f"""
        UPDATE contacts_contact c SET score = c.score + a.score
        FROM (SELECT m.contact_id, sum(p.score)::int AS score
              FROM ({pairs_sql}) m JOIN contacts_contact p ON p.id = m.profile_id GROUP BY 1) a
        WHERE c.id = a.contact_id AND a.score <> 0
        RETURNING c.id, c.score - a.score, c.score
        """,
        params,
    )
    raised = cursor.fetchall()
    if raised:
        thresholds = TemperatureSettings.current()
        hot_transitions_notify(
            cursor,
            """
            SELECT id AS contact_id,
                   CASE WHEN before >= %(hot)s THEN 'hot' WHEN before >= %(warm)s THEN 'warm' ELSE 'cold' END
                       AS from_temperature,
                   CASE WHEN after >= %(hot)s THEN 'hot' WHEN after >= %(warm)s THEN 'warm' ELSE 'cold' END
                       AS to_temperature,
                   after AS score
            FROM unnest(%(ids)s::bigint[], %(before)s::int[], %(after)s::int[]) AS r(id, before, after)
            """,
            {"ids": [r[0] for r in raised], "before": [r[1] for r in raised], "after": [r[2] for r in raised],
             "hot": thresholds.hot, "warm": thresholds.warm},
        )
    cursor.execute(
        f"""
        INSERT INTO leads_contactstage AS cs (contact_id, funnel_id, stage_id, entered_at)
        SELECT DISTINCT ON (m.contact_id, p.funnel_id) m.contact_id, p.funnel_id, p.stage_id, p.entered_at
        FROM ({pairs_sql}) m JOIN leads_contactstage p ON p.contact_id = m.profile_id
        JOIN leads_stage s ON s.id = p.stage_id
        ORDER BY m.contact_id, p.funnel_id, s.position DESC
        ON CONFLICT (contact_id, funnel_id) DO UPDATE SET stage_id = EXCLUDED.stage_id, entered_at = EXCLUDED.entered_at
        WHERE (SELECT position FROM leads_stage WHERE id = EXCLUDED.stage_id)
            > (SELECT position FROM leads_stage WHERE id = cs.stage_id)
        """,
        params,
    )
    rows_delete(cursor, ("leads_contactstage", *_DERIVED),
                contact_ids=params["profiles"])
    rows_move(cursor, ("leads_scorechange", "leads_stagetransition", "leads_leadstatuschange"),
              pairs_sql=pairs_sql, params=params)
    # the profile's moves now interleave with the contact's: their stays end at other moves
    cursor.execute(f"SELECT DISTINCT contact_id FROM ({pairs_sql}) m", params)
    transition_stays_recompute(cursor, contact_ids=[row[0] for row in cursor.fetchall()])


def on_contacts_purging(sender: Any, *, cursor: Any, contact_ids: list[int], **kwargs: Any) -> None:
    rows_delete(cursor, ("leads_scorechange", "leads_stagetransition", "leads_leadstatuschange", "leads_contactstage",
                         *_DERIVED), contact_ids=contact_ids)
