"""Moving contacts through funnels, set-based, and the funnel report.

:func:`stages_set` is the one writer of ``ContactStage``: the rules engine (``set_stage``), the API
(``PUT /contacts/{email}/stages``), the card and the bulk job all call it, so every real move —
forwards or backwards — is recorded as a ``StageTransition`` with its cause.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.signals import contacts_changed_send
from leads.models import Funnel, Stage

logger = logging.getLogger(__name__)

CAUSES = ("manual", "bulk", "rule", "api")
# How pages name a move's cause (the stored value is the identifier).
CAUSE_LABELS = {"manual": _("manual"), "bulk": _("bulk"), "rule": _("rule"), "api": _("API")}


def cause_label(cause: str) -> str:
    return str(CAUSE_LABELS.get(cause, cause))

# One statement: resolve names case-insensitively, keep the LAST request per (contact, funnel) in
# input order, upsert the current stage only where it really changes, and log each change.
# ``current`` reads the snapshot before the upsert, so it holds the stage being left.
_STAGES_SET_SQL = """
WITH input AS (
    SELECT t.contact_id, lower(btrim(t.funnel_name)) AS funnel_key, lower(btrim(t.stage_name)) AS stage_key,
           t.rule_id, t.event_pk, t.ord
    FROM unnest(%(contact_ids)s::bigint[], %(funnel_names)s::text[], %(stage_names)s::text[],
                %(rule_ids)s::bigint[], %(event_pks)s::bigint[]) WITH ORDINALITY
         AS t(contact_id, funnel_name, stage_name, rule_id, event_pk, ord)
), resolved AS (
    SELECT DISTINCT ON (i.contact_id, f.id) i.contact_id, f.id AS funnel_id, s.id AS stage_id, i.rule_id, i.event_pk
    FROM input i
    JOIN leads_funnel f ON lower(f.name) = i.funnel_key
    JOIN leads_stage s ON s.funnel_id = f.id AND lower(s.name) = i.stage_key
    JOIN contacts_contact c ON c.id = i.contact_id
    ORDER BY i.contact_id, f.id, i.ord DESC
), current AS (
    SELECT r.contact_id, r.funnel_id, cs.stage_id AS from_stage_id
    FROM resolved r
    LEFT JOIN leads_contactstage cs ON cs.contact_id = r.contact_id AND cs.funnel_id = r.funnel_id
), moved AS (
    INSERT INTO leads_contactstage AS cs (contact_id, funnel_id, stage_id, entered_at)
    SELECT contact_id, funnel_id, stage_id, %(now)s FROM resolved ORDER BY contact_id, funnel_id
    ON CONFLICT (contact_id, funnel_id) DO UPDATE
        SET stage_id = EXCLUDED.stage_id, entered_at = EXCLUDED.entered_at
        WHERE cs.stage_id <> EXCLUDED.stage_id
    RETURNING cs.contact_id, cs.funnel_id, cs.stage_id
), closed AS (
    -- the stay each move ends: the contact's one open transition in this funnel (the statement's
    -- snapshot does not hold the rows ``logged`` inserts)
    UPDATE leads_stagetransition t SET left_at = %(now)s
    FROM moved m
    WHERE t.contact_id = m.contact_id AND t.funnel_id = m.funnel_id AND t.left_at IS NULL
), logged AS (
    INSERT INTO leads_stagetransition
        (contact_id, funnel_id, from_stage_id, to_stage_id, cause, rule_id, user_id, event_pk, created_at,
         previous_entry_at)
    SELECT m.contact_id, m.funnel_id, cur.from_stage_id, m.stage_id, %(cause)s, r.rule_id, %(user_id)s,
           r.event_pk, %(now)s,
           (SELECT max(p.created_at) FROM leads_stagetransition p
            WHERE p.contact_id = m.contact_id AND p.funnel_id = m.funnel_id AND p.to_stage_id = m.stage_id)
    FROM moved m
    JOIN current cur ON cur.contact_id = m.contact_id AND cur.funnel_id = m.funnel_id
    JOIN resolved r ON r.contact_id = m.contact_id AND r.funnel_id = m.funnel_id
    RETURNING contact_id, funnel_id, from_stage_id, to_stage_id
), told AS (
    -- the world hears of each move (core.outbox) from the same statement
    INSERT INTO core_outboxmessage (type, contact_id, funnel_id, data)
    SELECT 'funnel.stage_changed', l.contact_id, l.funnel_id, jsonb_build_object('from', fs.name, 'to', ts.name)
    FROM logged l
    LEFT JOIN leads_stage fs ON fs.id = l.from_stage_id
    LEFT JOIN leads_stage ts ON ts.id = l.to_stage_id
    ORDER BY l.contact_id
)
SELECT DISTINCT contact_id FROM logged ORDER BY contact_id
"""

# Lock the current-stage rows first (id order) so that ``current`` above reads the committed
# state of a concurrent mover instead of an older snapshot.
_LOCK_SQL = """
SELECT 1 FROM leads_contactstage
WHERE contact_id = ANY(%s::bigint[])
ORDER BY contact_id, funnel_id
FOR UPDATE
"""

_UNKNOWN_SQL = """
SELECT DISTINCT t.funnel_name, t.stage_name
FROM unnest(%(funnel_names)s::text[], %(stage_names)s::text[]) AS t(funnel_name, stage_name)
WHERE NOT EXISTS (
    SELECT 1 FROM leads_funnel f JOIN leads_stage s ON s.funnel_id = f.id
    WHERE lower(f.name) = lower(btrim(t.funnel_name)) AND lower(s.name) = lower(btrim(t.stage_name))
)
"""


def stages_set(
    cursor,
    *,
    contact_ids: Sequence[int],
    funnel_names: Sequence[str],
    stage_names: Sequence[str],
    cause: str = "rule",
    rule_ids: Sequence[int | None] | None = None,
    event_pks: Sequence[int | None] | None = None,
    user_id: int | None = None,
) -> list[int]:
    """Put contact ``contact_ids[i]`` into stage ``stage_names[i]`` of funnel ``funnel_names[i]``.

    Names match case-insensitively. A pair naming an unknown funnel or stage is skipped (and
    logged as a warning: a rule may outlive a renamed stage). When one contact is moved several
    times in the same funnel within one call, the last request wins and one transition is logged.
    A request for the stage the contact is already in changes nothing. Returns the ids of the
    contacts that really moved, sorted.
    """
    count = len(contact_ids)
    if len(funnel_names) != count or len(stage_names) != count:
        raise ValueError("contact_ids, funnel_names and stage_names must have the same length")
    rule_ids = list(rule_ids) if rule_ids is not None else [None] * count
    event_pks = list(event_pks) if event_pks is not None else [None] * count
    if len(rule_ids) != count or len(event_pks) != count:
        raise ValueError("rule_ids and event_pks must match contact_ids in length")
    if cause not in CAUSES:
        raise ValueError(f"cause must be one of {', '.join(CAUSES)}")
    if not count:
        return []
    params = {
        "contact_ids": list(contact_ids),
        "funnel_names": [str(name) for name in funnel_names],
        "stage_names": [str(name) for name in stage_names],
        "rule_ids": rule_ids,
        "event_pks": event_pks,
        "cause": cause,
        "user_id": user_id,
    }
    with transaction.atomic(savepoint=False):
        cursor.execute(_LOCK_SQL, [sorted(set(contact_ids))])
        # read the clock once the rows are ours, so a contact's moves are stamped in the order
        # they are written (the stay a move ends is the one open when it is written)
        params["now"] = timezone.now()
        cursor.execute(_STAGES_SET_SQL, params)
        moved = [row[0] for row in cursor.fetchall()]
        if len(moved) < count:
            cursor.execute(_UNKNOWN_SQL, params)
            unknown = cursor.fetchall()
            if unknown:
                logger.warning(
                    "stages_set skipped unknown funnel/stage pairs: %s",
                    ", ".join(f"{funnel!r}/{stage!r}" for funnel, stage in unknown[:20]),
                )
    return moved


# The writers' bookkeeping recomputed from the history itself, for writes that change a contact's
# history other than by appending a move (profiles merged into a contact, removed stages whose moves
# went with them) and for bulk loaders. Only rows whose values differ are rewritten.
_STAYS_RECOMPUTE_SQL = """
UPDATE leads_stagetransition t SET left_at = w.left_at, previous_entry_at = w.previous_entry_at
FROM (
    SELECT id,
           lead(created_at) OVER (PARTITION BY contact_id, funnel_id ORDER BY created_at, id) AS left_at,
           lag(created_at) OVER (PARTITION BY contact_id, funnel_id, to_stage_id ORDER BY created_at, id)
               AS previous_entry_at
    FROM leads_stagetransition
    WHERE (%(contact_ids)s::bigint[] IS NULL OR contact_id = ANY(%(contact_ids)s::bigint[]))
      AND (%(funnel_id)s::bigint IS NULL OR funnel_id = %(funnel_id)s::bigint)
) w
WHERE t.id = w.id
  AND (t.left_at IS DISTINCT FROM w.left_at OR t.previous_entry_at IS DISTINCT FROM w.previous_entry_at)
"""


def transition_stays_recompute(cursor, *, contact_ids: Sequence[int] | None = None,
                               funnel_id: int | None = None) -> int:
    """Recompute ``left_at`` and ``previous_entry_at`` of these contacts' moves (all contacts when
    ``contact_ids`` is None; one funnel's when ``funnel_id`` is given). Returns the rows changed."""
    cursor.execute(_STAYS_RECOMPUTE_SQL, {
        "contact_ids": list(contact_ids) if contact_ids is not None else None,
        "funnel_id": funnel_id,
    })
    return cursor.rowcount


def stage_find(funnel_name: str, stage_name: str) -> Stage | None:
    """The stage named ``stage_name`` in the funnel named ``funnel_name`` (case-insensitive)."""
    return (
        Stage.objects.select_related("funnel")
        .filter(funnel__name__iexact=(funnel_name or "").strip(), name__iexact=(stage_name or "").strip())
        .first()
    )


def funnel_find(funnel_name: str) -> Funnel | None:
    return Funnel.objects.filter(name__iexact=(funnel_name or "").strip()).first()


def contact_stage_set(*, contact_id: int, stage: Stage, cause: str, user_id: int | None = None) -> bool:
    """Move one contact (card, API). True when it really moved. Sends ``contacts_changed`` so
    segments and tiers that depend on stages stay current."""
    with transaction.atomic(), connection.cursor() as cursor:
        moved = stages_set(
            cursor,
            contact_ids=[contact_id],
            funnel_names=[stage.funnel.name],
            stage_names=[stage.name],
            cause=cause,
            user_id=user_id,
        )
        if moved:
            contacts_changed_send(moved, sender=stages_set)
    return bool(moved)


# --- the report -----------------------------------------------------------------------------------
_REPORT_SQL = """
WITH anonymous AS (
    -- anonymous visitors' profiles count in no report until they merge (the partial index lists them)
    SELECT id FROM contacts_contact WHERE is_anonymous
), stages AS (
    SELECT id, name, position FROM leads_stage WHERE funnel_id = %(funnel_id)s
), counts AS (
    SELECT stage_id, count(*) AS n FROM leads_contactstage
    WHERE funnel_id = %(funnel_id)s AND contact_id NOT IN (SELECT id FROM anonymous) GROUP BY stage_id
), ranged AS (
    -- the moves into each stage in the range, each the start of a stay. A contact's move counts
    -- as an entry when its previous entry into the stage lies before the range (or there was
    -- none): once per contact, without ordering anyone's history here.
    SELECT t.to_stage_id AS stage_id,
           count(*) FILTER (WHERE t.previous_entry_at IS NULL OR t.previous_entry_at < %(start)s) AS entered,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM coalesce(t.left_at, %(now)s) - t.created_at) / 86400.0
           ) AS median_days
    FROM stages st
    JOIN leads_stagetransition t ON t.funnel_id = %(funnel_id)s AND t.to_stage_id = st.id
    WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
      AND t.contact_id NOT IN (SELECT id FROM anonymous)
    GROUP BY t.to_stage_id
)
SELECT st.name, coalesce(c.n, 0), coalesce(r.entered, 0), r.median_days
FROM stages st
LEFT JOIN counts c ON c.stage_id = st.id
LEFT JOIN ranged r ON r.stage_id = st.id
ORDER BY st.position
"""


def funnel_report(funnel: Funnel, *, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """The funnel report, one dict per stage in order.

    - ``count``: contacts in the stage now (independent of the date range).
    - ``entered``: distinct contacts with a transition INTO the stage whose time lies in
      [start, end) — all time when no range is given. Backward moves count as entries too.
    - ``conversion_to_next``: entered(next stage) / entered(this stage), rounded to 4 places;
      ``None`` for the last stage or when nobody entered this one.
    - ``median_days_in_stage``: the median, over every stay in the stage that began in the range
      (each transition into it), of the days until the contact's next transition in this funnel,
      or until now when it is still there; ``None`` when no stay began in the range. Rounded to
      2 places.
    """
    now = timezone.now()
    params = {
        "funnel_id": funnel.pk,
        "start": start or datetime(1970, 1, 1, tzinfo=timezone.get_current_timezone()),
        "end": end or datetime(9999, 1, 1, tzinfo=timezone.get_current_timezone()),
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SQL, params)
        rows = cursor.fetchall()
    stages = []
    for index, (name, count, entered, median_days) in enumerate(rows):
        conversion = None
        if index + 1 < len(rows) and entered:
            conversion = round(rows[index + 1][2] / entered, 4)
        stages.append(
            {
                "name": name,
                "count": int(count),
                "entered": int(entered),
                "conversion_to_next": conversion,
                "median_days_in_stage": round(float(median_days), 2) if median_days is not None else None,
            }
        )
    return stages
