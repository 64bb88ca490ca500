"""The rules engine: applies active rules and segmentation matrices to accepted events, in batches,
with set-based SQL, each (rule, event) pair at most once.

One batch is one transaction:

1. take the advisory lock of one partition of the contacts (``contact_id % MH_ENGINE_PARTITIONS``)
   and the engine lock in shared mode. All events of a contact belong to one partition, so a
   contact's events are applied one batch at a time, in order: the "once per contact" and
   "points cap" checks see every earlier batch, and batches of different partitions never touch
   the same contact rows (no deadlocks between them; tag rows are created in key order). Batches
   of different partitions run side by side — one per worker process and core. A rule backfill
   takes the engine lock exclusively and so runs alone;
2. claim up to N rows of the partition from the queue of pending events (``automation_pendingevent``,
   ``FOR UPDATE SKIP LOCKED``) with their events into a temp table;
3. for each active rule, ONE ``INSERT INTO automation_ruleapplication … SELECT … WHERE <conditions
   compiled to SQL> ON CONFLICT DO NOTHING RETURNING`` — the guard: only pairs inserted now act;
4. the actions of those pairs, set-based: tags (``contacts.scoring``), points and
   ``last_activity_at`` in one UPDATE per contact (``leads.scoring.score_add(activity=…)``),
   stages (``leads.funnels``); then ``contacts_changed`` (deferred) — loyalty tiers in the
   transaction, the batch's contacts appended to the segments' dirty queue (``segments.dirty``;
   drained by ``segments_dirty_refresh`` in its own task) — and the queue rows deleted.

Where a 5,000-event batch's time goes at 1M contacts (bench data, one process, ~980 ms a batch,
~4,700 events/s per core): ``score_add`` 415 ms (the contact rewrite for last_activity_at and
score, ~4,600 rows each with ten index entries, plus the ledger and the growth counters), loyalty
tiers 143 ms, tag scores 106 ms, rules/guard rows 42 ms, claim 28 ms, contact locks 28 ms, Python
~165 ms. Two partitions (the default) run two such batches at once, one per core; earlier designs
spent ~40% on saved-segment re-evaluation (now deferred) and 15% on marking 18M-row receipts done
(now a small queue whose rows are deleted).

A SIGKILL anywhere before the commit rolls all of it back and the events are queued again; after
the commit the guard rows say the pairs took effect, so a redelivered task cannot apply them twice.

A batch that raises is retried in halves (savepoints) down to single events; an event that fails
alone gets ``attempts + 1`` and its error, and after ``MAX_ATTEMPTS`` its queue row is marked
``failed`` — visible on the Events page with a retry button.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from automation.models import PendingEvent, Rule, SegmentationMatrix
from automation.rules import rule_points, template_parts, template_sql
from contacts.models import tag_key
from contacts.scoring import tag_remove, tag_scores_add, tags_ensure
from contacts.signals import (
    CHANGED_ACTIVITY,
    CHANGED_SCORE,
    CHANGED_STAGE,
    CHANGED_TAGS,
    CHANGED_TIER,
    changed_events,
    contacts_changed_send,
)
from core import locks
from core.conditions import compile_conditions
from core.locks import advisory_xact_lock, advisory_xact_try_lock
from core.outbox import OUTBOX_TABLE
from leads.funnels import stages_set
from leads.scoring import score_add
from segments.dirty import segments_dirty_count, segments_dirty_enqueue

logger = logging.getLogger(__name__)

# Per batch the cost is mostly per event (contact rows, guard rows, ledger); the fixed part (claim,
# rules, receivers' setup, savepoints) is amortised better by 5,000 than by 2,000 (+18% events/s at
# 250k contacts) while a batch still commits within about a second.
BATCH_SIZE = 5000
MAX_ATTEMPTS = 3
# During a long run (a steady stream of events) the engine enqueues the drain of saved-segment
# memberships at most this often, so it runs beside the batches instead of after the stream.
DRAIN_NUDGE_S = 2.0


def engine_partitions() -> int:
    """How many batches may run at once (``settings.MH_ENGINE_PARTITIONS``): every worker must
    agree, since a contact's partition is its id modulo this number."""
    return int(settings.MH_ENGINE_PARTITIONS)


@dataclass
class Effects:
    """What a batch's newly inserted (rule, event) pairs must do, gathered before applying."""

    tag_adds: list[tuple] = field(default_factory=list)  # (occurred, event_pk, contact_id, tag, delta, rule_id)
    tag_removes: list[tuple] = field(default_factory=list)  # (occurred, event_pk, contact_id, tag, rule_id)
    points: list[tuple] = field(default_factory=list)  # (contact_id, delta, rule_id, event_pk)
    stages: list[tuple] = field(default_factory=list)  # (occurred, event_pk, contact_id, funnel, stage, rule_id)
    applications: int = 0


@dataclass
class BatchOutcome:
    claimed: int = 0
    applied_events: int = 0
    failed_events: int = 0
    applications: int = 0


# --- the batch relation ---------------------------------------------------------------------------
_CLAIM_SQL = """
CREATE TEMP TABLE mh_claim ON COMMIT DROP AS
WITH claimed AS (
    SELECT q.event_id, q.event_pk, q.occurred_at, q.contact_id, q.received_at, q.attempts
    FROM automation_pendingevent q
    WHERE NOT q.failed AND mod(q.contact_id, %s) = %s
    ORDER BY q.received_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
SELECT c.event_id, c.event_pk, c.contact_id, c.received_at, c.attempts, e.occurred_at, e.type, e.properties
FROM claimed c
JOIN automation_event e ON e.id = c.event_pk AND e.occurred_at = c.occurred_at
"""


def _make_batch(cursor, event_pks: list[int] | None) -> None:
    """``mh_batch``: the claimed events, or the subset ``event_pks`` of them (bisection)."""
    if event_pks is None:
        cursor.execute("CREATE TEMP TABLE mh_batch ON COMMIT DROP AS SELECT * FROM mh_claim")
    else:
        cursor.execute(
            "CREATE TEMP TABLE mh_batch ON COMMIT DROP AS SELECT * FROM mh_claim WHERE event_pk = ANY(%s::bigint[])",
            [event_pks],
        )


# --- rules → guard rows → effects -----------------------------------------------------------------
def _tag_columns(rule: Rule) -> list[tuple[int, str]]:
    """(action index, SQL) for every tag action whose name is a template."""
    columns = []
    for index, action in enumerate(rule.actions):
        if action.get("type") in ("add_tag", "remove_tag"):
            if any(kind == "property" for kind, _ in template_parts(action["tag"])):
                columns.append((index, template_sql(action["tag"], properties_sql="c.properties")))
    return columns


def _rule_ctes(rule: Rule, *, respect_activation: bool) -> tuple[str, str, list]:
    """The CTEs choosing the (rule, event) pairs of ``rule`` in ``mh_batch`` and the points each
    grants; returns (CTE text, name of the final CTE, parameters). The final CTE has the columns
    rule_id, event_pk, contact_id, occurred_at, points, once, tags (template tag names, text[])."""
    n = rule.pk
    conditions_sql, params = compile_conditions(rule.conditions or [], properties_sql="b.properties")
    where = ["b.type = %s", conditions_sql]
    params = [rule.event_type, *params]
    if respect_activation and rule.activated_at is not None:
        where.append("b.received_at >= %s")
        params.append(rule.activated_at)
    points = rule_points(rule.actions)
    cap = rule.max_points_per_contact if points > 0 else None
    if rule.once_per_contact or cap:
        # Pairs applied before must not count again in the ranking below (a re-run, a backfill).
        where.append(
            f"NOT EXISTS (SELECT 1 FROM automation_ruleapplication a WHERE a.rule_id = {n} AND a.event_pk = b.event_pk)"
        )
    tags = ", ".join(sql for _index, sql in _tag_columns(rule))
    tags_sql = f"ARRAY[{tags}]::text[]" if tags else "NULL::text[]"
    once = "true" if rule.once_per_contact else "false"
    ctes = [f"""
        cand_{n} AS (
            SELECT b.event_pk, b.contact_id, b.occurred_at, b.properties
            FROM mh_batch b WHERE {" AND ".join(where)}
        )"""]
    if rule.once_per_contact:
        granted = f"LEAST({points}, {cap})" if cap else str(points)
        ctes.append(f"""
        picked_{n} AS (
            SELECT DISTINCT ON (c.contact_id) {n}::bigint AS rule_id, c.event_pk, c.contact_id, c.occurred_at,
                   {granted}::int AS points, {once} AS once, {tags_sql} AS tags
            FROM cand_{n} c
            WHERE NOT EXISTS (SELECT 1 FROM automation_ruleapplication a
                              WHERE a.rule_id = {n} AND a.contact_id = c.contact_id)
            ORDER BY c.contact_id, c.occurred_at, c.event_pk
        )""")
    elif cap:
        # Running total per contact: what the rule gave before plus this batch in event order;
        # the firing that reaches the cap gets the remainder, later ones do not fire.
        ctes.append(f"""
        given_{n} AS (
            SELECT a.contact_id, sum(a.points) AS total
            FROM automation_ruleapplication a
            WHERE a.rule_id = {n} AND a.contact_id IN (SELECT contact_id FROM cand_{n})
            GROUP BY a.contact_id
        ),
        picked_{n} AS (
            SELECT {n}::bigint AS rule_id, c.event_pk, c.contact_id, c.occurred_at,
                   LEAST({points}, {cap} - (coalesce(g.total, 0) + {points} * (c.nth - 1)))::int AS points,
                   {once} AS once, {tags_sql} AS tags
            FROM (SELECT c.*, row_number() OVER (PARTITION BY c.contact_id ORDER BY c.occurred_at, c.event_pk) AS nth
                  FROM cand_{n} c) c
            LEFT JOIN given_{n} g ON g.contact_id = c.contact_id
            WHERE coalesce(g.total, 0) + {points} * (c.nth - 1) < {cap}
        )""")
    else:
        ctes.append(f"""
        picked_{n} AS (
            SELECT {n}::bigint AS rule_id, c.event_pk, c.contact_id, c.occurred_at, {points}::int AS points,
                   {once} AS once, {tags_sql} AS tags
            FROM cand_{n} c
        )""")
    return ",".join(ctes), f"picked_{n}", params


def _collect_rules(cursor, rules: list[Rule], effects: Effects, *, respect_activation: bool) -> None:
    """ONE statement for all rules: choose the pairs, insert the guard rows (``ON CONFLICT DO
    NOTHING`` — a pair applied before, by any transaction, is not returned), return the new ones."""
    if not rules:
        return
    ctes, finals, params = [], [], []
    for rule in rules:
        rule_ctes, final, rule_params = _rule_ctes(rule, respect_activation=respect_activation)
        ctes.append(rule_ctes)
        finals.append(f"SELECT * FROM {final}")
        params.extend(rule_params)
    # send_webhook actions: a rule.fired message per new pair, written by this statement (the
    # outbox; the webhooks area fans it out to the one webhook named in it).
    sends = [(rule.pk, action["webhook_id"], rule.name) for rule in rules for action in rule.actions
             if action.get("type") == "send_webhook"]
    told = ""
    if sends:
        told = f""",
        told AS (
            INSERT INTO {OUTBOX_TABLE} (type, contact_id, data)
            SELECT 'rule.fired', p.contact_id, jsonb_build_object(
                'webhook_id', s.webhook_id, 'event_pk', p.event_pk,
                'rule', jsonb_build_object('id', p.rule_id, 'name', s.rule_name),
                'event', jsonb_build_object('event_id', b.event_id, 'type', b.type, 'occurred_at', b.occurred_at,
                                            'properties', b.properties))
            FROM picked p
            JOIN inserted i ON i.rule_id = p.rule_id AND i.event_pk = p.event_pk
            JOIN mh_batch b ON b.event_pk = p.event_pk
            JOIN unnest(%s::bigint[], %s::bigint[], %s::text[]) AS s(rule_id, webhook_id, rule_name)
              ON s.rule_id = p.rule_id
            ORDER BY p.occurred_at, p.event_pk
        )"""
        params.extend([[send[0] for send in sends], [send[1] for send in sends], [send[2] for send in sends]])
    cursor.execute(
        f"""
        WITH {",".join(ctes)},
        picked AS ({" UNION ALL ".join(finals)}),
        inserted AS (
            INSERT INTO automation_ruleapplication (rule_id, event_pk, contact_id, points, applied_at, once)
            SELECT rule_id, event_pk, contact_id, points, now(), once FROM picked
            ON CONFLICT DO NOTHING
            RETURNING rule_id, event_pk
        ){told}
        SELECT p.rule_id, p.event_pk, p.contact_id, p.occurred_at, p.points, p.tags
        FROM picked p JOIN inserted i ON i.rule_id = p.rule_id AND i.event_pk = p.event_pk
        ORDER BY p.occurred_at, p.event_pk, p.rule_id
        """,
        params,
    )
    by_id = {rule.pk: rule for rule in rules}
    templates = {rule.pk: {index: position for position, (index, _sql) in enumerate(_tag_columns(rule))}
                 for rule in rules}
    for rule_id, event_pk, contact_id, occurred_at, points, tags in cursor.fetchall():
        rule = by_id[rule_id]
        effects.applications += 1
        for index, action in enumerate(rule.actions):
            kind = action["type"]
            if kind in ("add_tag", "remove_tag"):
                position = templates[rule_id].get(index)
                tag = tags[position] if position is not None else action["tag"]
                if not tag or not tag.strip():
                    continue  # a template whose property is empty: the action is skipped
                if kind == "add_tag":
                    effects.tag_adds.append((occurred_at, event_pk, contact_id, tag, action.get("score", 1), rule_id))
                else:
                    effects.tag_removes.append((occurred_at, event_pk, contact_id, tag, rule_id))
            elif kind == "set_stage":
                effects.stages.append((occurred_at, event_pk, contact_id, action["funnel"], action["stage"], rule_id))
        if points:
            effects.points.append((contact_id, points, rule_id, event_pk))


_MATCH_SQL = {
    "eq": "lower(b.properties ->> %s) = lower(m.value)",
    "prefix": "starts_with(lower(b.properties ->> %s), lower(m.value))",
    "contains": "strpos(lower(b.properties ->> %s), lower(m.value)) > 0",
}


def matrix_rows_clean(matrix: SegmentationMatrix) -> list[dict]:
    return [row for row in (matrix.rows or []) if str(row.get("value", "")).strip() and str(row.get("tag", "")).strip()]


def _collect_matrix(cursor, matrix: SegmentationMatrix, effects: Effects, *, respect_activation: bool) -> None:
    rows = matrix_rows_clean(matrix)
    if not rows:
        return
    where = ["b.type = %s", "jsonb_typeof(b.properties -> %s) IN ('string', 'number')"]
    params: list = [
        [str(row["value"]).strip() for row in rows],
        [str(row["tag"]).strip() for row in rows],
        [int(row.get("score") or 1) for row in rows],
        matrix.property,
        matrix.event_type,
        matrix.property,
    ]
    if respect_activation and matrix.activated_at is not None:
        where.append("b.received_at >= %s")
        params.append(matrix.activated_at)
    params.append(matrix.pk)
    cursor.execute(
        f"""
        WITH m AS (
            SELECT * FROM unnest(%s::text[], %s::text[], %s::int[]) AS m(value, tag, score)
        ),
        cand AS (
            SELECT b.event_pk, b.contact_id, b.occurred_at, m.tag, m.score
            FROM mh_batch b JOIN m ON {_MATCH_SQL[matrix.match]}
            WHERE {" AND ".join(where)}
        ),
        inserted AS (
            INSERT INTO automation_matrixapplication (matrix_id, event_pk, contact_id, applied_at)
            SELECT DISTINCT %s::bigint, event_pk, contact_id, now() FROM cand
            ON CONFLICT DO NOTHING
            RETURNING event_pk
        )
        SELECT c.event_pk, c.contact_id, c.occurred_at, c.tag, c.score
        FROM cand c JOIN inserted i ON i.event_pk = c.event_pk
        ORDER BY c.occurred_at, c.event_pk
        """,
        params,
    )
    for event_pk, contact_id, occurred_at, tag, score in cursor.fetchall():
        effects.applications += 1
        effects.tag_adds.append((occurred_at, event_pk, contact_id, tag, score, None))


# --- effects → the other areas' set-based writers ---------------------------------------------------
def _tag_ids_existing(cursor, names: list[str]) -> dict[str, int]:
    keys = sorted({tag_key(name)[:100] for name in names})
    cursor.execute("SELECT key, id FROM contacts_tag WHERE key = ANY(%s::text[])", [keys])
    by_key = dict(cursor.fetchall())
    return {name: by_key[tag_key(name)[:100]] for name in names if tag_key(name)[:100] in by_key}


def _apply_tags(cursor, effects: Effects) -> None:
    if not effects.tag_adds and not effects.tag_removes:
        return
    # names in event order: a new tag keeps the spelling of its first event
    add_ids = tags_ensure(cursor, list(dict.fromkeys(add[3] for add in effects.tag_adds))) if effects.tag_adds else {}
    remove_ids = _tag_ids_existing(cursor, [remove[3] for remove in effects.tag_removes]) if effects.tag_removes else {}
    # Within one batch a tag may be added and removed for the same contact: removal wins over the
    # adds that came before it and not over those after it (event time order), as one-by-one would.
    last_removal: dict[tuple[int, int], tuple] = {}
    removes = []
    for occurred, event_pk, contact_id, tag, rule_id in effects.tag_removes:
        tag_id = remove_ids.get(tag)
        if tag_id is None:
            continue
        removes.append((contact_id, tag_id, rule_id, event_pk))
        pair = (contact_id, tag_id)
        last_removal[pair] = max(last_removal.get(pair, (occurred, event_pk)), (occurred, event_pk))
    before, after = [], []
    for occurred, event_pk, contact_id, tag, delta, rule_id in effects.tag_adds:
        tag_id = add_ids.get(tag)
        if tag_id is None:
            continue
        cut = last_removal.get((contact_id, tag_id))
        (after if cut is not None and (occurred, event_pk) > cut else before).append(
            (contact_id, tag_id, delta, rule_id, event_pk)
        )

    def add(changes: list[tuple]) -> None:
        if changes:
            tag_scores_add(
                cursor,
                contact_ids=[change[0] for change in changes],
                tag_ids=[change[1] for change in changes],
                deltas=[change[2] for change in changes],
                source="rule",
                rule_ids=[change[3] for change in changes],
                event_pks=[change[4] for change in changes],
            )

    add(before)
    if removes:
        tag_remove(
            cursor,
            contact_ids=[change[0] for change in removes],
            tag_ids=[change[1] for change in removes],
            source="rule",
            rule_ids=[change[2] for change in removes],
            event_pks=[change[3] for change in removes],
        )
    add(after)


def _apply_effects(cursor, effects: Effects, *, activity: list[tuple] | None = None) -> None:
    """``activity``: (contact_id, latest occurred_at) of the batch's contacts, for last_activity_at;
    given only when ``batch_apply`` has locked exactly those contacts (a superset of the points'
    contacts), so ``score_add`` need not lock them again."""
    _apply_tags(cursor, effects)
    if effects.points or activity:
        score_add(
            cursor,
            contact_ids=[change[0] for change in effects.points],
            deltas=[change[1] for change in effects.points],
            rule_ids=[change[2] for change in effects.points],
            event_pks=[change[3] for change in effects.points],
            reason="rule",
            activity=activity,
            contacts_locked=bool(activity),
        )
    if effects.stages:
        ordered = sorted(effects.stages, key=lambda change: (change[0], change[1]))
        stages_set(
            cursor,
            contact_ids=[change[2] for change in ordered],
            funnel_names=[change[3] for change in ordered],
            stage_names=[change[4] for change in ordered],
            cause="rule",
            rule_ids=[change[5] for change in ordered],
            event_pks=[change[1] for change in ordered],
        )


def active_rules(event_types: set[str] | None = None) -> list[Rule]:
    rules = Rule.objects.filter(active=True).order_by("pk")
    if event_types is not None:
        rules = rules.filter(event_type__in=event_types)
    return list(rules)


def active_matrices(event_types: set[str] | None = None) -> list[SegmentationMatrix]:
    matrices = SegmentationMatrix.objects.filter(active=True).order_by("pk")
    if event_types is not None:
        matrices = matrices.filter(event_type__in=event_types)
    return list(matrices)


BATCH_CHANGES = (CHANGED_TAGS, CHANGED_SCORE, CHANGED_ACTIVITY, CHANGED_STAGE, CHANGED_TIER)


def batch_apply(
    cursor,
    *,
    rules: list[Rule],
    matrices: list[SegmentationMatrix],
    respect_activation: bool = True,
    touch_contacts: bool = True,
) -> tuple[Effects, list[int], dict[int, tuple[str, ...]]]:
    """Apply ``rules`` and ``matrices`` to the events in ``mh_batch``; returns the effects, the
    ids of the contacts of the batch (sorted) and what the batch may have changed of each
    (``contacts_changed``'s ``changes``). The caller owns the transaction."""
    cursor.execute("SELECT contact_id, max(occurred_at), array_agg(DISTINCT type) FROM mh_batch "
                   "GROUP BY contact_id ORDER BY contact_id")
    rows = cursor.fetchall()
    latest = [(contact_id, occurred_at) for contact_id, occurred_at, _ in rows]
    contact_ids = [row[0] for row in rows]
    # What a batch may change of each contact: its events' types, and whatever the rules and
    # the tiers derived from them move (tags, score, activity, stage, tier; never consents or fields).
    changes = {contact_id: (*BATCH_CHANGES, *map(changed_events, types)) for contact_id, _, types in rows}
    if touch_contacts and contact_ids:
        # Lock in id order (as leads.scoring does) before any UPDATE that may visit rows in
        # another order. last_activity_at is brought forward by the same UPDATE that adds the
        # points (``score_add(activity=…)``): every contact row version costs ~15 index entries,
        # so one UPDATE per contact and batch instead of two.
        cursor.execute(
            "SELECT 1 FROM contacts_contact WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE", [contact_ids]
        )
    effects = Effects()
    _collect_rules(cursor, rules, effects, respect_activation=respect_activation)
    for matrix in matrices:
        _collect_matrix(cursor, matrix, effects, respect_activation=respect_activation)
    _apply_effects(cursor, effects, activity=latest if touch_contacts else None)
    return effects, contact_ids, changes


def _apply_subset(cursor, event_pks: list[int] | None, rules, matrices) -> Effects:
    _make_batch(cursor, event_pks)
    effects, contact_ids, changes = batch_apply(cursor, rules=rules, matrices=matrices)
    # tiers now; segment memberships are queued for their drain (deferred)
    contacts_changed_send(contact_ids, deferred=True, sender=batch_apply, changes=changes)
    cursor.execute("DELETE FROM automation_pendingevent q USING mh_batch b WHERE q.event_pk = b.event_pk")
    # On an error the caller's savepoint rollback removes the table instead.
    cursor.execute("DROP TABLE mh_batch")
    return effects


def _record_failure(cursor, event_pk: int, error: Exception) -> bool:
    """attempts + 1 and the error; failed for good after MAX_ATTEMPTS. True when now failed."""
    message = f"{error.__class__.__name__}: {error}"[:2000]
    cursor.execute(
        """
        UPDATE automation_pendingevent
        SET attempts = attempts + 1, error = %s, failed = attempts + 1 >= %s,
            failed_at = CASE WHEN attempts + 1 >= %s THEN now() END
        WHERE event_pk = %s
        RETURNING failed
        """,
        [message, MAX_ATTEMPTS, MAX_ATTEMPTS, event_pk],
    )
    row = cursor.fetchone()
    return bool(row and row[0])


def _apply_isolating(cursor, event_pks: list[int], rules, matrices, outcome: BatchOutcome) -> None:
    """Apply in halves under savepoints until the failing events are alone."""
    try:
        with transaction.atomic():
            effects = _apply_subset(cursor, event_pks, rules, matrices)
        outcome.applied_events += len(event_pks)
        outcome.applications += effects.applications
        return
    except Exception as exc:
        if len(event_pks) == 1:
            logger.warning("event %s failed: %s", event_pks[0], exc)
            if _record_failure(cursor, event_pks[0], exc):
                outcome.failed_events += 1
            return
    middle = len(event_pks) // 2
    _apply_isolating(cursor, event_pks[:middle], rules, matrices, outcome)
    _apply_isolating(cursor, event_pks[middle:], rules, matrices, outcome)


def events_process_batch(*, limit: int = BATCH_SIZE, partition: int = 0) -> BatchOutcome | None:
    """Process one batch of pending events of ``partition`` (of ``engine_partitions()``). None when
    another batch holds that partition, or a backfill holds the engine."""
    partitions = engine_partitions()
    if not 0 <= partition < partitions:
        raise ValueError(f"partition must be in 0..{partitions - 1}, got {partition}")
    with transaction.atomic(), connection.cursor() as cursor:
        # The partition first: a session that gets it but not the engine lock (a backfill runs)
        # gives it back at once with the transaction.
        if not (advisory_xact_try_lock(cursor, locks.ENGINE_PARTITION, partition)
                and advisory_xact_try_lock(cursor, locks.ENGINE, shared=True)):
            return None
        # Recomputable: a batch lost with the last WAL flush leaves its events queued again.
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(_CLAIM_SQL, [partitions, partition, limit])
        outcome = BatchOutcome(claimed=cursor.rowcount)
        if outcome.claimed:
            _process_claimed(cursor, outcome)
        # ON COMMIT DROP covers the normal case; dropping here too keeps a surrounding
        # transaction (tests, a caller's atomic block) able to run the next batch.
        cursor.execute("DROP TABLE mh_claim")
        return outcome


def _process_claimed(cursor, outcome: BatchOutcome) -> None:
    cursor.execute("SELECT DISTINCT type FROM mh_claim")
    event_types = {row[0] for row in cursor.fetchall()}
    rules = active_rules(event_types)
    matrices = active_matrices(event_types)
    try:
        with transaction.atomic():
            effects = _apply_subset(cursor, None, rules, matrices)
        outcome.applied_events = outcome.claimed
        outcome.applications = effects.applications
        return
    except Exception as exc:
        logger.warning("batch of %s events failed (%s); retrying in parts", outcome.claimed, exc)
    cursor.execute("SELECT event_pk FROM mh_claim ORDER BY received_at, event_pk")
    event_pks = [row[0] for row in cursor.fetchall()]
    if len(event_pks) == 1:
        _apply_isolating(cursor, event_pks, rules, matrices, outcome)
        return
    middle = len(event_pks) // 2
    _apply_isolating(cursor, event_pks[:middle], rules, matrices, outcome)
    _apply_isolating(cursor, event_pks[middle:], rules, matrices, outcome)


def engine_busy() -> bool:
    """No batch could start right now: every partition is held by a running batch, or a backfill
    holds the engine. Every holder re-checks ``pending_exists()`` for its partitions after
    releasing them, so events committed before this call are picked up without a new task (see
    ``automation.tasks.events_process_enqueue``)."""
    engine_held, engine_params = locks.held_sql(locks.ENGINE)
    partitions_held, partition_params = locks.held_sql(locks.ENGINE_PARTITION)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {engine_held} AND mode = 'ExclusiveLock')
                OR (SELECT count(DISTINCT objid) FROM pg_locks WHERE {partitions_held} AND objid < %s) >= %s
            """,
            [*engine_params, *partition_params, engine_partitions(), engine_partitions()],
        )
        return cursor.fetchone()[0]


def engine_backlog() -> bool:
    """The engine is behind: more events wait than one batch takes (a burst, a worker that was
    away). A stream the engine keeps up with leaves less than a batch waiting between batches."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) > %s FROM (SELECT 1 FROM automation_pendingevent WHERE NOT failed LIMIT %s) w",
            [BATCH_SIZE, BATCH_SIZE + 1],
        )
        return cursor.fetchone()[0]


def pending_exists(partitions: list[int] | None = None) -> bool:
    """Events wait for processing (in any of ``partitions``, or anywhere)."""
    sql = "SELECT EXISTS (SELECT 1 FROM automation_pendingevent WHERE NOT failed"
    params: list = []
    if partitions is not None:
        sql += " AND mod(contact_id, %s) = ANY(%s::int[])"
        params = [engine_partitions(), list(partitions)]
    with connection.cursor() as cursor:
        cursor.execute(sql + ")", params)
        return cursor.fetchone()[0]


def events_process_pending(*, batch_size: int = BATCH_SIZE, time_budget: float = 20.0) -> dict:
    """Process batches until nothing is pending in the partitions this call could take, the
    others are held by other batches, or the time budget is spent. Returns counts and ``more``
    (pending events remain: enqueue again). When batches ran, the drain of the segments' dirty
    queue is enqueued at the end, and every DRAIN_NUDGE_S during a longer run: under a steady
    stream memberships follow within seconds, while behind a backlog the drain yields
    (``engine_backlog``) and then merges the contacts of many batches."""
    totals = _events_process_loop(batch_size=batch_size, time_budget=time_budget)
    if totals["batches"]:
        segments_dirty_enqueue()
    return totals


def _events_process_loop(*, batch_size: int, time_budget: float) -> dict:
    deadline = time.monotonic() + time_budget
    nudge_at = time.monotonic() + DRAIN_NUDGE_S
    totals = {"batches": 0, "events": 0, "failed": 0, "applications": 0, "busy": False, "more": False}
    count = engine_partitions()
    # Worker processes start at different partitions and go round them: with one process (or
    # the others busy with long jobs) no partition waits for another to run dry.
    first = os.getpid() % count
    order = [(first + step) % count for step in range(count)]
    while True:
        worked = False
        free: list[int] = []
        for partition in order:
            outcome = events_process_batch(limit=batch_size, partition=partition)
            if outcome is None:
                continue
            free.append(partition)
            if outcome.claimed:
                worked = True
                totals["batches"] += 1
                totals["events"] += outcome.applied_events
                totals["failed"] += outcome.failed_events
                totals["applications"] += outcome.applications
                order = [*(p for p in order if p != partition), partition]
                if time.monotonic() >= nudge_at:
                    segments_dirty_enqueue()
                    nudge_at = time.monotonic() + DRAIN_NUDGE_S
                break
        if not worked:
            if not free:
                totals["busy"] = True
                return totals
            # The partitions we found empty are checked again now that their locks are released:
            # a task refused while we held them (its events committed before it ran) is covered.
            # Partitions held by others are their holders' to re-check.
            if not pending_exists(free):
                totals["busy"] = len(free) < count
                return totals
        if time.monotonic() > deadline:
            totals["more"] = pending_exists()
            return totals


def events_status() -> dict:
    """``pending`` = what accepted events still have to change: events waiting or failed, and the
    contacts whose saved-segment memberships wait for the drain (``segments.dirty``) after their
    events were applied. 0 means everything is current, memberships included."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed) FROM automation_pendingevent"
        )
        waiting, failed = cursor.fetchone()
    memberships = segments_dirty_count()
    return {"pending": waiting + failed + memberships, "waiting": waiting, "failed": failed,
            "memberships_waiting": memberships}


def events_retry_failed(*, event_ids: list[str] | None = None) -> int:
    """Failed events back to pending with a fresh attempt count; processing is enqueued."""
    failed = PendingEvent.objects.filter(failed=True)
    if event_ids is not None:
        failed = failed.filter(event_id__in=event_ids)
    with transaction.atomic():
        count = failed.update(failed=False, attempts=0, error="", failed_at=None)
        if count:
            # local import: automation.tasks imports this module (its tasks run the engine)
            from automation.tasks import events_process_enqueue

            transaction.on_commit(events_process_enqueue)
    return count


# --- backfill -------------------------------------------------------------------------------------
def rule_backfill_batch(rule: Rule, *, since: datetime, after: tuple | None, limit: int = 5000) -> tuple[int, int, tuple | None]:
    """Apply ``rule`` to the next ``limit`` past events of its type from ``since`` (keyset after
    ``after`` = (occurred_at, id)), in one transaction under the engine lock. Pairs already applied
    are skipped by the guard. Returns (events scanned, pairs applied, the next keyset or None)."""
    with transaction.atomic(), connection.cursor() as cursor:
        advisory_xact_lock(cursor, locks.ENGINE)
        keyset_sql = "AND (e.occurred_at, e.id) > (%s, %s)" if after else ""
        params: list = [rule.event_type, since, *(after or ())]
        cursor.execute(
            f"""
            CREATE TEMP TABLE mh_batch ON COMMIT DROP AS
            SELECT e.event_id, e.id AS event_pk, e.contact_id, e.received_at, 0 AS attempts,
                   e.occurred_at, e.type, e.properties
            FROM automation_event e
            WHERE e.type = %s AND e.occurred_at >= %s {keyset_sql}
            ORDER BY e.occurred_at, e.id
            LIMIT {int(limit)}
            """,
            params,
        )
        scanned = cursor.rowcount
        if not scanned:
            return 0, 0, None
        cursor.execute("SELECT occurred_at, event_pk FROM mh_batch ORDER BY occurred_at DESC, event_pk DESC LIMIT 1")
        last = tuple(cursor.fetchone())
        effects, _contact_ids, _changes = batch_apply(cursor, rules=[rule], matrices=[], respect_activation=False, touch_contacts=False)
        changed = sorted({add[2] for add in effects.tag_adds} | {rem[2] for rem in effects.tag_removes}
                         | {p[0] for p in effects.points} | {s[2] for s in effects.stages})
        # a backfill applies rules to stored events: no new events, no activity
        contacts_changed_send(changed, sender=rule_backfill_batch,
                              changes=[CHANGED_TAGS, CHANGED_SCORE, CHANGED_STAGE, CHANGED_TIER])
        cursor.execute("DROP TABLE mh_batch")
    return scanned, effects.applications, (last if scanned == limit else None)


def rule_backfill_count(rule: Rule, *, since: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM automation_event WHERE type = %s AND occurred_at >= %s", [rule.event_type, since]
        )
        return cursor.fetchone()[0]

