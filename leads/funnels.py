"""Moving contacts through funnels, set-based, and the funnel report.

:func:`stages_set` is the one writer of ``ContactStage``: the rules engine (``set_stage``), the API
(``PUT /contacts/{email}/stages``), the card and the bulk job all call it, so every real move —
forwards or backwards — is recorded as a ``StageTransition`` with its cause.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from contacts.signals import CHANGED_STAGE, contacts_changed_send
from core import locks
from leads import charts
from leads.dashboard import contact_list_url
from leads.models import Funnel, FunnelReportSnapshot, Stage

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
            contacts_changed_send(moved, sender=stages_set, changes=[CHANGED_STAGE])
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


def funnel_report(funnel: Funnel, *, start: datetime | None = None, end: datetime | None = None,
                  now: datetime | None = None) -> list[dict]:
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

    Stays still open are measured to ``now`` (the current time by default).
    """
    now = now or timezone.now()
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


# --- the report's snapshots -----------------------------------------------------------------------
# The report is one statement that reads every stay begun in the range: at 100k contacts 0.1 s for
# 7 days, 0.4 s for a year, 0.7 s for all time, about ten times that at a million. Ranges up to
# REPORT_LIVE_DAYS long that the reader types in are read live; the presets and all time (the
# same few ranges for every reader) and wider custom ranges are read from a FunnelReportSnapshot
# that the worker keeps, asked by a view that finds it older than REPORT_FRESH_SECONDS: the
# page costs the same at any size and says when its figures are from. Nothing refreshes a range
# nobody looks at.
REPORT_FRESH_SECONDS = 60
REPORT_LIVE_DAYS = 90
REPORT_PRESETS = ("7", "30", "90", "365")
ALL_TIME = "all"
# A custom range's snapshot that nobody has looked at for this long is removed (each view of an
# old one asks for a refresh, so a range in use is recomputed at least that often).
CUSTOM_RANGE_KEEP = timedelta(days=1)


class ReportRange(NamedTuple):
    """A range of the report page: ``key`` names its snapshot ("" when it is read live), ``start``
    and ``end`` are inclusive days (None: open), as of ``today`` for a preset."""

    key: str
    start: date | None
    end: date | None


def report_range(*, preset: str, start: date | None, end: date | None, today: date | None = None) -> ReportRange:
    """The range the page asks for: a preset ("7", "30", "90", "365" days to ``today``), a custom
    range (read live when it spans at most REPORT_LIVE_DAYS days), or all time."""
    today = today or timezone.localdate()
    if preset in REPORT_PRESETS:
        return ReportRange(preset, today - timedelta(days=int(preset) - 1), today)
    if start is None and end is None:
        return ReportRange(ALL_TIME, None, None)
    if start is not None and ((end or today) - start).days + 1 <= REPORT_LIVE_DAYS:
        return ReportRange("", start, end)
    return ReportRange(f"{start.isoformat() if start else ''}..{end.isoformat() if end else ''}", start, end)


def _range_of_key(key: str, today: date) -> ReportRange:
    if key in REPORT_PRESETS or key == ALL_TIME:
        return report_range(preset=key, start=None, end=None, today=today)
    first, _sep, last = key.partition("..")
    return ReportRange(key, date.fromisoformat(first) if first else None, date.fromisoformat(last) if last else None)


def day_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive calendar days in the site's time zone → a half-open [start, end) instant range."""
    zone = timezone.get_current_timezone()
    return (datetime.combine(start, time.min, tzinfo=zone) if start else None,
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone) if end else None)


def _is_short(report: ReportRange) -> bool:
    return report.start is not None and ((report.end or timezone.localdate()) - report.start).days + 1 <= REPORT_LIVE_DAYS


def _stage_signature(funnel: Funnel) -> list[list]:
    """The stages a report was computed for: a snapshot of other stages (renamed, reordered,
    removed since) is not shown."""
    return [[stage.pk, stage.name] for stage in sorted(funnel.stages.all(), key=lambda stage: stage.position)]


def funnel_report_figures(stages: list[dict], stage_ids: Sequence[int]) -> dict:
    """The report's chart (a Plotly dict for ``includes/chart.html``), labelled in the active language."""
    return charts.funnel_chart(stages, links=[contact_list_url(stage=stage_id) for stage_id in stage_ids])


_SNAPSHOT_STORE_SQL = """
INSERT INTO leads_funnelreportsnapshot AS s (funnel_id, range_key, data, computed_at, refresh_requested_at)
VALUES (%(funnel_id)s, %(key)s, %(data)s::jsonb, %(computed_at)s, NULL)
ON CONFLICT (funnel_id, range_key) DO UPDATE
    SET data = EXCLUDED.data, computed_at = EXCLUDED.computed_at, refresh_requested_at = NULL
    WHERE s.computed_at IS NULL OR s.computed_at < EXCLUDED.computed_at
"""


def funnel_report_snapshot_refresh(funnel: Funnel, key: str) -> dict:
    """Compute the report for the range ``key`` now and store it as its snapshot (unless a newer
    one was stored meanwhile). Every figure comes from the one statement of ``funnel_report``,
    with stays still open measured to the snapshot's time and nothing after it counted."""
    now = timezone.now()
    report = _range_of_key(key, timezone.localdate(now))
    start_at, end_at = day_bounds(report.start, report.end)
    stages = funnel_report(funnel, start=start_at, end=min(end_at, now) if end_at else now, now=now)
    signature = _stage_signature(funnel)
    figures = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            figures[code] = funnel_report_figures(stages, [stage_id for stage_id, _ in signature])
    data = {"stages": stages, "start": report.start, "end": report.end, "stage_signature": signature,
            "figures": figures}
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_STORE_SQL, {"funnel_id": funnel.pk, "key": key, "computed_at": now,
                                             "data": json.dumps(data, default=str)})
        if key not in REPORT_PRESETS and key != ALL_TIME:
            cursor.execute(
                "DELETE FROM leads_funnelreportsnapshot WHERE range_key LIKE '%%..%%' AND computed_at < %s "
                "AND (refresh_requested_at IS NULL OR refresh_requested_at < %s)",
                [now - CUSTOM_RANGE_KEEP, now - CUSTOM_RANGE_KEEP],
            )
    return {**data, "computed_at": now}


_REFRESH_REQUEST_SQL = """
INSERT INTO leads_funnelreportsnapshot AS s (funnel_id, range_key, refresh_requested_at)
VALUES (%(funnel_id)s, %(key)s, %(now)s)
ON CONFLICT (funnel_id, range_key) DO UPDATE SET refresh_requested_at = EXCLUDED.refresh_requested_at
    WHERE s.refresh_requested_at IS NULL OR s.refresh_requested_at < %(asked_before)s
RETURNING 1
"""


def _refresh_request(funnel_id: int, key: str) -> None:
    """Ask the worker for new figures, once: the views that find the snapshot old (or missing) in
    the same minute ask together, and the upsert's condition lets one of them through."""
    from leads.tasks import funnel_report_refresh_task  # local import: leads.tasks imports this module

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_REFRESH_REQUEST_SQL, {"funnel_id": funnel_id, "key": key, "now": now,
                                              "asked_before": now - timedelta(seconds=REPORT_FRESH_SECONDS)})
        asked = cursor.fetchone() is not None
    if asked:
        transaction.on_commit(lambda: funnel_report_refresh_task.delay(funnel_id), robust=True)


def funnel_report_read(funnel: Funnel, report: ReportRange) -> dict:
    """What the report page shows for ``report``: ``stages`` (None while a first computation of a
    wide range runs in the worker), the inclusive days they cover, ``computed_at`` (None when read
    live), ``stale`` when newer figures have been asked for, and the chart in ``figures``.

    A range without a snapshot (or with one of other stages) is computed in the request when it is
    short: a second at a million contacts beats a placeholder. A wide one would keep the reader
    waiting for several seconds with nothing on screen, so the page says it is being computed and
    polls for it while the worker computes it.
    """
    if not report.key:
        start_at, end_at = day_bounds(report.start, report.end)
        stages = funnel_report(funnel, start=start_at, end=end_at)
        return {"stages": stages, "start": report.start, "end": report.end, "computed_at": None, "stale": False,
                "figures": {}}
    snapshot = FunnelReportSnapshot.objects.filter(funnel=funnel, range_key=report.key).first()
    data = snapshot.data if snapshot is not None and snapshot.computed_at is not None else None
    if data is None or data.get("stage_signature") != _stage_signature(funnel):
        if _is_short(report):
            data = funnel_report_snapshot_refresh(funnel, report.key)
            return {**data, "stale": False}
        _refresh_request(funnel.pk, report.key)
        return {"stages": None, "start": report.start, "end": report.end, "computed_at": None, "stale": True,
                "figures": {}}
    assert snapshot is not None and snapshot.computed_at is not None
    stale = timezone.now() - snapshot.computed_at > timedelta(seconds=REPORT_FRESH_SECONDS)
    if stale:
        _refresh_request(funnel.pk, report.key)
    return {
        **data,
        "start": date.fromisoformat(data["start"]) if data["start"] else None,
        "end": date.fromisoformat(data["end"]) if data["end"] else None,
        "computed_at": snapshot.computed_at,
        "stale": stale,
    }


def funnel_report_snapshots_refresh(funnel_id: int) -> int | None:
    """Recompute the snapshots of one funnel that views asked for, one funnel's refresh at a time
    (None when another worker holds it: that one answers the request). Each range is committed
    as soon as it is computed; ranges asked for meanwhile are done in the same run. Returns the
    number of snapshots computed."""
    funnel = Funnel.objects.filter(pk=funnel_id).prefetch_related("stages").first()
    if funnel is None:
        return 0
    done: set[str] = set()
    with connection.cursor() as cursor, locks.advisory_session_lock(
            cursor, locks.FUNNEL_REPORT, funnel_id % 2**31, wait=False) as got:
        if not got:
            return None
        while True:
            keys = set(FunnelReportSnapshot.objects.filter(funnel_id=funnel_id, refresh_requested_at__isnull=False)
                       .values_list("range_key", flat=True)) - done
            if not keys:
                return len(done)
            for key in sorted(keys):
                funnel_report_snapshot_refresh(funnel, key)
                done.add(key)
