"""The lead score: a ledger of point changes (``leads.ScoreChange``) and the maintained sum on
``contacts_contact.score``.

Every change goes through :func:`score_add`, which writes the ledger rows and bumps the maintained
score in ONE statement, so the two can never disagree; :func:`score_recompute_all` rebuilds every
score from the ledger (the check, and the repair) and writes only the rows that differ.

Both are set-based: a batch of 1,000 events is one round trip, never a Python loop over contacts.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from core.outbox import OUTBOX_TABLE
from leads.notifications import alerts_email_nudge, hot_alerts_cte

# Temperature is derived (score vs thresholds), so a score change that crosses a threshold is a
# temperature change: the statement that changes scores tells the world (``core.outbox``) from the
# old and new scores of the rows it updated (``updated``: id, old_score, new_score), with the
# thresholds read in the same statement.
TEMPERATURE_OUTBOX_CTES = f"""
, thresholds AS (
    SELECT coalesce((SELECT warm FROM leads_temperaturesettings WHERE id = 1), 50) AS warm,
           coalesce((SELECT hot FROM leads_temperaturesettings WHERE id = 1), 100) AS hot
), crossed AS (
    SELECT u.id, u.new_score,
           CASE WHEN u.old_score >= t.hot THEN 'hot' WHEN u.old_score >= t.warm THEN 'warm' ELSE 'cold' END AS t_from,
           CASE WHEN u.new_score >= t.hot THEN 'hot' WHEN u.new_score >= t.warm THEN 'warm' ELSE 'cold' END AS t_to
    FROM updated u CROSS JOIN thresholds t
    WHERE u.old_score <> u.new_score
), told AS (
    INSERT INTO {OUTBOX_TABLE} (type, contact_id, data)
    SELECT 'lead.temperature_changed', id, jsonb_build_object('from', t_from, 'to', t_to, 'score', new_score)
    FROM crossed WHERE t_from <> t_to ORDER BY id
)
"""

# The same crossings, when one goes to hot, alert sales (``leads.notifications``) in the statement.
HOT_ALERT_CTES = (
    ", hot_crossed AS (SELECT id AS contact_id, t_from AS from_temperature, t_to AS to_temperature,"
    " new_score AS score FROM crossed), " + hot_alerts_cte("hot_crossed") + "\n"
)

# ``score_add`` writes the ledger, the maintained score and the rolling growth counters in one
# statement. Rows of the aggregate are ordered by contact id so that concurrent batches lock
# contacts in the same order (no deadlocks); ``score = score + delta`` is re-evaluated on the
# latest row version under READ COMMITTED, so concurrent adds never lose an update.
_SCORE_ADD_SQL = """
WITH input AS (
    SELECT t.contact_id, t.delta, t.rule_id, t.event_pk
    FROM unnest(%(contact_ids)s::bigint[], %(deltas)s::int[], %(rule_ids)s::bigint[], %(event_pks)s::bigint[])
         AS t(contact_id, delta, rule_id, event_pk)
    WHERE t.delta <> 0 AND t.contact_id IS NOT NULL
), ledger AS (
    INSERT INTO leads_scorechange (contact_id, delta, rule_id, user_id, event_pk, reason, created_at)
    SELECT contact_id, delta, rule_id, %(user_id)s, event_pk, %(reason)s, %(now)s FROM input
), per_contact AS (
    SELECT contact_id, sum(delta)::int AS delta FROM input GROUP BY contact_id HAVING sum(delta) <> 0
), trend AS (
    INSERT INTO leads_scoretrend AS st (contact_id, points_7d, points_30d, refreshed_at)
    SELECT contact_id, delta, delta, %(now)s FROM per_contact ORDER BY contact_id
    ON CONFLICT (contact_id) DO UPDATE
        SET points_7d = st.points_7d + EXCLUDED.points_7d, points_30d = st.points_30d + EXCLUDED.points_30d
), activity AS (
    SELECT a.contact_id, a.latest
    FROM unnest(%(activity_ids)s::bigint[], %(activity_at)s::timestamptz[]) AS a(contact_id, latest)
), updated AS (
    UPDATE contacts_contact AS c
    SET score = c.score + coalesce(agg.delta, 0),
        last_activity_at = CASE WHEN agg.latest > c.last_activity_at OR c.last_activity_at IS NULL
                                THEN coalesce(agg.latest, c.last_activity_at) ELSE c.last_activity_at END
    FROM (SELECT coalesce(p.contact_id, a.contact_id) AS contact_id, p.delta, a.latest
          FROM per_contact p FULL JOIN activity a ON a.contact_id = p.contact_id
          ORDER BY 1) AS agg
    WHERE c.id = agg.contact_id
      AND (agg.delta IS NOT NULL OR c.last_activity_at IS NULL OR c.last_activity_at < agg.latest)
    RETURNING c.id, c.score - coalesce(agg.delta, 0) AS old_score, c.score AS new_score
)
""" + TEMPERATURE_OUTBOX_CTES + HOT_ALERT_CTES + "SELECT (SELECT count(*) FROM hot_alerted)"

_LOCK_CONTACTS_SQL = "SELECT 1 FROM contacts_contact WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE"


def score_add(
    cursor,
    *,
    contact_ids: Sequence[int],
    deltas: Sequence[int],
    rule_ids: Sequence[int | None] | None = None,
    event_pks: Sequence[int | None] | None = None,
    user_id: int | None = None,
    reason: str = "",
    activity: Sequence[tuple] | None = None,
    contacts_locked: bool = False,
) -> None:
    """Add ``deltas[i]`` points to contact ``contact_ids[i]`` for every i, recording each change in
    the ledger with its rule, event, user and reason. Zero deltas are skipped. A contact may appear
    several times; its changes are summed into one update.

    ``activity``: optional (contact_id, occurred_at) pairs (one per contact) that bring
    ``last_activity_at`` forward in the SAME UPDATE (the rules engine's batch): a contact row
    rewritten once instead of twice — each row version costs an entry in every contact index.

    ``contacts_locked``: the caller already holds ``FOR NO KEY UPDATE`` on every contact in
    ``contact_ids`` and ``activity``, taken in id order in this transaction (the rules engine
    locks its batch's contacts first): the second lock pass is skipped.

    Call it inside the caller's transaction (the rules engine's batch); it opens one itself otherwise.
    """
    count = len(contact_ids)
    if len(deltas) != count:
        raise ValueError("contact_ids and deltas must have the same length")
    rule_ids = list(rule_ids) if rule_ids is not None else [None] * count
    event_pks = list(event_pks) if event_pks is not None else [None] * count
    if len(rule_ids) != count or len(event_pks) != count:
        raise ValueError("rule_ids and event_pks must match contact_ids in length")
    activity = list(activity or [])
    if not count and not activity:
        return
    from django.utils import timezone

    params = {
        "contact_ids": list(contact_ids),
        "deltas": list(deltas),
        "rule_ids": rule_ids,
        "event_pks": event_pks,
        "user_id": user_id,
        "reason": (reason or "")[:200],
        "now": timezone.now(),
        "activity_ids": [pair[0] for pair in activity],
        "activity_at": [pair[1] for pair in activity],
    }
    with transaction.atomic(savepoint=False):
        # Lock in id order first: the UPDATE … FROM below may visit rows in any order, and two
        # batches that lock the same contacts in different orders would deadlock.
        if not contacts_locked:
            cursor.execute(_LOCK_CONTACTS_SQL, [sorted(set(contact_ids) | set(params["activity_ids"]))])
        cursor.execute(_SCORE_ADD_SQL, params)
        if cursor.fetchone()[0]:
            alerts_email_nudge()


# The full recompute: the ledger sum per contact vs the maintained value, writing only rows that
# differ, in one statement — the ledger is aggregated once and joined to every contact (a contact
# without ledger rows must have score 0), instead of a second pass probing the ledger per contact.
_RECOMPUTE_SQL = """
WITH updated AS (
    UPDATE contacts_contact AS c
    SET score = d.total
    FROM (
        SELECT c.id, c.score AS old_score, coalesce(l.total, 0) AS total
        FROM contacts_contact c
        LEFT JOIN (SELECT contact_id, sum(delta)::int AS total FROM leads_scorechange GROUP BY contact_id) AS l
               ON l.contact_id = c.id
        WHERE c.score <> coalesce(l.total, 0)
    ) AS d
    WHERE c.id = d.id
    RETURNING c.id, d.old_score, c.score AS new_score
)
""" + TEMPERATURE_OUTBOX_CTES + HOT_ALERT_CTES + "SELECT count(*) FROM updated"


def score_recompute_all(cursor) -> int:
    """Recompute every contact's score from the ledger; returns how many rows were corrected
    (0 when the maintained scores were right, which is what the tests assert)."""
    with transaction.atomic(savepoint=False):
        cursor.execute(_RECOMPUTE_SQL)
        return cursor.fetchone()[0]


def score_mismatches(cursor, *, limit: int = 100) -> list[tuple[int, int, int]]:
    """(contact_id, maintained, ledger) for contacts whose maintained score differs from the
    ledger sum — read-only, for checks and the admin."""
    cursor.execute(
        """
        SELECT c.id, c.score, coalesce(l.total, 0)
        FROM contacts_contact c
        LEFT JOIN (SELECT contact_id, sum(delta)::int AS total FROM leads_scorechange GROUP BY contact_id) l
               ON l.contact_id = c.id
        WHERE c.score <> coalesce(l.total, 0)
        ORDER BY c.id
        LIMIT %s
        """,
        [limit],
    )
    return [tuple(row) for row in cursor.fetchall()]
