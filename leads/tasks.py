"""Background work of the leads area: bulk funnel moves (a Job with progress), the dashboard's
and the funnel reports' figures when a view finds them old, and the scheduled set-based jobs —
growth counters refresh, lead-score decay and tag-score decay (both off by default; switched on in
the temperature settings)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.db import connection, transaction
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext_lazy

from contacts.filters import ContactFilterSet
from contacts.models import Contact, Tag
from contacts.signals import CHANGED_STAGE, contacts_changed_send
from core import locks
from core.jobs import CHUNK_SIZE, Progress, id_chunks, job_run_chunks, job_task
from core.models import Job
from core.roles import MARKETER
from leads.dashboard import dashboard_refresh
from leads.funnels import funnel_report_snapshots_refresh, stages_set
from leads.models import Stage, TagDecayState, TemperatureSettings
from leads.scoring import score_add

logger = logging.getLogger(__name__)

BULK_BATCH = CHUNK_SIZE


def bulk_contacts_queryset(query: str):
    """The contacts a contact-list querystring selects, through the contacts app's FilterSet."""
    contact_filter = ContactFilterSet(QueryDict(query or ""), queryset=Contact.objects.all())
    if not contact_filter.is_valid():
        raise ValueError(f"The contact filter is not valid: {contact_filter.errors.as_text()}")
    return contact_filter.qs


def funnel_bulk_move(job: Job, progress: Progress) -> dict:
    """Move the selected contacts to a stage, BULK_BATCH contacts (in id order) per chunk on the
    resumable runner, each chunk one ``stages_set`` statement committed with the job's resume
    point: a redelivered job continues after its last committed chunk."""
    stage = Stage.objects.select_related("funnel").get(pk=job.params["stage_id"])
    ids = [int(part) for part in (job.params.get("ids") or "").split(",") if part.strip()]
    if ids:
        source = Contact.objects.filter(pk__in=ids)
    else:
        source = bulk_contacts_queryset(job.params.get("query", ""))
    target_sql, target_params = source.order_by().values("id").query.sql_with_params()

    def move(cursor, batch: list[int]) -> dict:
        moved_ids = stages_set(
            cursor,
            contact_ids=batch,
            funnel_names=[stage.funnel.name] * len(batch),
            stage_names=[stage.name] * len(batch),
            cause="bulk",
            user_id=job.created_by_id,
        )
        contacts_changed_send(moved_ids, sender=stages_set, changes=[CHANGED_STAGE])
        return {"matched": len(batch), "moved": len(moved_ids)}

    counts = job_run_chunks(job, id_chunks(target_sql, target_params, move, size=BULK_BATCH), total=source.count)
    return {"matched": counts.get("matched", 0), "moved": counts.get("moved", 0),
            "stage": f"{stage.funnel.name} → {stage.name}"}


# The task body stays callable on its own (tests call it directly, without a worker).
funnel_bulk_move_task = job_task("funnel_bulk_move", roles=(MARKETER,), label=gettext_lazy("Funnel bulk move"))(
    funnel_bulk_move)


# --- growth counters -------------------------------------------------------------------------------
_TREND_REFRESH_SQL = """
WITH recent AS (
    SELECT contact_id,
           sum(delta) FILTER (WHERE created_at >= %(d7)s)::int AS p7,
           sum(delta)::int AS p30
    FROM leads_scorechange
    WHERE created_at >= %(d30)s
    GROUP BY contact_id
), upserted AS (
    INSERT INTO leads_scoretrend AS st (contact_id, points_7d, points_30d, refreshed_at)
    SELECT contact_id, coalesce(p7, 0), p30, %(now)s FROM recent ORDER BY contact_id
    ON CONFLICT (contact_id) DO UPDATE
        SET points_7d = EXCLUDED.points_7d, points_30d = EXCLUDED.points_30d, refreshed_at = EXCLUDED.refreshed_at
        WHERE st.points_7d <> EXCLUDED.points_7d OR st.points_30d <> EXCLUDED.points_30d
    RETURNING 1
)
SELECT count(*) FROM upserted
"""
# Contacts whose points all aged out of the 30-day window: nothing to keep.
_TREND_PRUNE_SQL = """
DELETE FROM leads_scoretrend st
WHERE NOT EXISTS (
    SELECT 1 FROM leads_scorechange s WHERE s.contact_id = st.contact_id AND s.created_at >= %(d30)s
)
"""


def score_trend_refresh(*, now: datetime | None = None) -> int:
    """Recompute the 7/30-day growth counters from the last 30 days of the ledger (set-based,
    writes only rows that differ). ``score_add`` keeps them current between runs; this subtracts
    the points that aged out of the windows. Returns rows written."""
    now = now or timezone.now()
    params = {"now": now, "d7": now - timedelta(days=7), "d30": now - timedelta(days=30)}
    with transaction.atomic(), connection.cursor() as cursor:
        # Concurrent score_add calls lock contacts first, then the trend rows; so do we, by
        # taking the trend rows in contact order inside the upsert.
        cursor.execute(_TREND_REFRESH_SQL, params)
        written = cursor.fetchone()[0]
        cursor.execute(_TREND_PRUNE_SQL, params)
        written += cursor.rowcount
    return written


@shared_task(name="leads.tasks.score_trend_refresh_task")
def score_trend_refresh_task() -> int:
    return score_trend_refresh()


@shared_task(name="leads.tasks.dashboard_refresh_task")
def dashboard_refresh_task() -> bool:
    """New dashboard figures (asked for by a view that found them older than a minute); one
    computation at a time: a request made while one runs is answered by it."""
    with transaction.atomic(), connection.cursor() as cursor:
        if not locks.advisory_xact_try_lock(cursor, locks.DASHBOARD):
            return False
        dashboard_refresh()
        return True


@shared_task(name="leads.tasks.funnel_report_refresh_task")
def funnel_report_refresh_task(funnel_id: int) -> int | None:
    """New figures for the ranges of a funnel's report that views found older than a minute (or
    had never computed); one refresh per funnel at a time: a request made while one runs is
    answered by it. Returns the snapshots computed, None when another refresh was running."""
    return funnel_report_snapshots_refresh(funnel_id)


# --- lead-score decay --------------------------------------------------------------------------------
# Every positive ledger point (not itself decay) is worth delta >> k after k half-lives. For each
# half-life boundary k·H that a row crossed between the watermark and now, the row loses
# (delta >> (k-1)) - (delta >> k). One decay ledger row per contact carries the sum, so the
# maintained score and a recompute from the ledger still agree.
DECAY_REASON = "decay"
MAX_HALVINGS = 30

_SCORE_DECAY_SQL = """
SELECT s.contact_id, sum((s.delta >> (k.k - 1)) - (s.delta >> k.k))::int AS lost
FROM generate_series(1, %(max_k)s) AS k(k)
JOIN leads_scorechange s
  ON s.created_at > %(since)s - k.k * %(half_life)s AND s.created_at <= %(now)s - k.k * %(half_life)s
WHERE s.delta > 0 AND s.reason <> %(reason)s
GROUP BY s.contact_id
HAVING sum((s.delta >> (k.k - 1)) - (s.delta >> k.k)) > 0
ORDER BY s.contact_id
"""


def score_decay_apply(*, now: datetime | None = None) -> int:
    """Apply lead-score decay up to ``now`` if it is enabled. Returns the contacts changed."""
    now = now or timezone.now()
    thresholds = TemperatureSettings.current()
    if not thresholds.decay_enabled:
        return 0
    half_life = timedelta(days=thresholds.decay_half_life_days)
    since = thresholds.decay_applied_until or datetime(1970, 1, 1, tzinfo=timezone.get_current_timezone())
    with transaction.atomic(), connection.cursor() as cursor:
        # Claim the window first: a second run at the same time finds nothing left to do.
        claimed = TemperatureSettings.objects.filter(
            pk=thresholds.pk, decay_applied_until=thresholds.decay_applied_until
        ).update(decay_applied_until=now)
        if not claimed:
            return 0
        cursor.execute(
            _SCORE_DECAY_SQL,
            {"since": since, "now": now, "half_life": half_life, "max_k": MAX_HALVINGS, "reason": DECAY_REASON},
        )
        rows = cursor.fetchall()
        if rows:
            score_add(
                cursor,
                contact_ids=[contact_id for contact_id, _ in rows],
                deltas=[-lost for _, lost in rows],
                reason=DECAY_REASON,
            )
    return len(rows)


@shared_task(name="leads.tasks.score_decay_task")
def score_decay_task() -> int:
    return score_decay_apply()


# --- tag-score decay ---------------------------------------------------------------------------------
_TAG_DECAY_SQL = """
WITH lost AS (
    SELECT h.contact_id, h.tag_id, sum((h.delta >> (k.k - 1)) - (h.delta >> k.k))::int AS lost
    FROM generate_series(1, %(max_k)s) AS k(k)
    JOIN contacts_tagscorechange h
      ON h.tag_id = %(tag_id)s
     AND h.created_at > %(since)s - k.k * %(half_life)s AND h.created_at <= %(now)s - k.k * %(half_life)s
    WHERE h.delta > 0 AND h.source <> 'decay'
    GROUP BY h.contact_id, h.tag_id
    HAVING sum((h.delta >> (k.k - 1)) - (h.delta >> k.k)) > 0
), updated AS (
    UPDATE contacts_contacttag ct
    SET score = ct.score - least(lost.lost, ct.score)
    FROM (SELECT * FROM lost ORDER BY contact_id) lost
    WHERE ct.contact_id = lost.contact_id AND ct.tag_id = lost.tag_id
    RETURNING ct.contact_id, ct.tag_id, ct.score, lost.lost
), logged AS (
    INSERT INTO contacts_tagscorechange (contact_id, tag_id, delta, score_after, source, created_at)
    SELECT contact_id, tag_id, -lost, greatest(score, 0), 'decay', %(now)s FROM updated
)
SELECT count(*) FROM updated
"""
# A tag score at 0 or below removes the tag (the product rule); the decay row above records it.
_TAG_DECAY_REMOVE_SQL = "DELETE FROM contacts_contacttag WHERE tag_id = %(tag_id)s AND score <= 0"


def tag_decay_apply(*, now: datetime | None = None) -> int:
    """Apply each tag's half-life (``Tag.half_life_days``) to its scores, set-based per tag.
    Returns the contact-tag rows changed."""
    now = now or timezone.now()
    thresholds = TemperatureSettings.current()
    if not thresholds.tag_decay_enabled:
        return 0
    changed = 0
    for tag in Tag.objects.filter(half_life_days__isnull=False, half_life_days__gt=0).only("pk", "half_life_days"):
        with transaction.atomic(), connection.cursor() as cursor:
            state, _ = TagDecayState.objects.select_for_update().get_or_create(
                tag_id=tag.pk, defaults={"applied_until": datetime(1970, 1, 1, tzinfo=timezone.get_current_timezone())}
            )
            cursor.execute(
                _TAG_DECAY_SQL,
                {
                    "tag_id": tag.pk, "since": state.applied_until, "now": now,
                    "half_life": timedelta(days=tag.half_life_days), "max_k": MAX_HALVINGS,
                },
            )
            changed += cursor.fetchone()[0]
            cursor.execute(_TAG_DECAY_REMOVE_SQL, {"tag_id": tag.pk})
            TagDecayState.objects.filter(tag_id=tag.pk).update(applied_until=now)
    return changed


@shared_task(name="leads.tasks.tag_decay_task")
def tag_decay_task() -> int:
    return tag_decay_apply()


# --- hot-lead alert emails ---------------------------------------------------------------------------
@shared_task(name="leads.tasks.alerts_email_task")
def alerts_email_task() -> int:
    """Send the hot-lead emails that are owed (instant ones and due digests); enqueued after a
    commit that wrote alerts, and swept by beat. Rows are claimed, so overlapping runs are safe."""
    from leads.notifications import alerts_email_send  # local import: notifications imports this module

    return alerts_email_send()
