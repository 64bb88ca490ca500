"""Liveness of the background processing, for `/healthz/deep`, monitors and the dashboard.

`/healthz` says the database and the broker answer. That stayed 200 while a wedged worker consumed
nothing for minutes. This module adds what an operator needs to see that: the worker's last
heartbeat (a beat-scheduled task the worker runs every ``HEARTBEAT_SECONDS``), the oldest pending
event's age and the broker backlog; and it calls processing *stalled* when either

- the heartbeat is older than ``settings.MH_STALL_SECONDS`` (the worker or the beat is gone, or
  every worker process is stuck), or
- events are pending and the oldest of them has not changed for that long. The engine claims the
  oldest first, so a large backlog that is being worked through moves the head on every batch and
  is not a stall, however old its events are.

The queue is read by its table name (``automation_pendingevent``): core is the lowest layer and
imports no area.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models
from django.utils import timezone

HEARTBEAT_SECONDS = 15.0
PENDING_TABLE = "automation_pendingevent"


class WorkerHeartbeat(models.Model):
    """One row: when a worker last ran the heartbeat task, and since when the oldest pending event
    (the queue's head) has been the same one."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True, default="")
    pending_head = models.BigIntegerField(null=True, blank=True)  # event_pk of the oldest pending event
    head_since = models.DateTimeField()

    class Meta:
        app_label = "core"

    def __str__(self) -> str:
        return f"worker heartbeat at {self.beat_at:%Y-%m-%d %H:%M:%S}"


def stall_threshold() -> timedelta:
    return timedelta(seconds=int(settings.MH_STALL_SECONDS))


def heartbeat_record(*, hostname: str | None = None) -> None:
    """Write the heartbeat (the worker runs this on the beat's schedule): one statement, and the
    head's ``head_since`` only moves when the head changed."""
    table = WorkerHeartbeat._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} AS h (id, beat_at, hostname, pending_head, head_since)
            SELECT 1, now(), %s,
                   (SELECT event_pk FROM {PENDING_TABLE} WHERE NOT failed ORDER BY received_at, event_pk LIMIT 1),
                   now()
            ON CONFLICT (id) DO UPDATE SET
                beat_at = EXCLUDED.beat_at,
                hostname = EXCLUDED.hostname,
                pending_head = EXCLUDED.pending_head,
                head_since = CASE WHEN h.pending_head IS NOT DISTINCT FROM EXCLUDED.pending_head
                                  THEN h.head_since ELSE EXCLUDED.head_since END
            """,
            [hostname if hostname is not None else socket.gethostname()],
        )


@dataclass
class ProcessingStatus:
    last_heartbeat: datetime | None
    pending: int
    oldest_pending_at: datetime | None
    stalled_since: datetime | None
    stall_reason: str

    @property
    def stalled(self) -> bool:
        return self.stalled_since is not None


def processing_status(*, now: datetime | None = None) -> ProcessingStatus:
    """Heartbeat, queue and the stall verdict, read in one statement."""
    now = now or timezone.now()
    table = WorkerHeartbeat._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT h.beat_at, h.pending_head, h.head_since,
                   (SELECT count(*) FROM {PENDING_TABLE} WHERE NOT failed),
                   (SELECT min(received_at) FROM {PENDING_TABLE} WHERE NOT failed),
                   (SELECT event_pk FROM {PENDING_TABLE} WHERE NOT failed ORDER BY received_at, event_pk LIMIT 1)
            FROM (SELECT 1) one LEFT JOIN {table} h ON h.id = 1
            """
        )
        beat_at, recorded_head, head_since, pending, oldest_at, current_head = cursor.fetchone()
    threshold = stall_threshold()
    stalled_since, reason = None, ""
    if beat_at is not None and now - beat_at > threshold:
        stalled_since, reason = beat_at, "no worker heartbeat"
    elif current_head is not None:
        # Since when the current head has waited: as recorded by the heartbeat when it is the same
        # event, else (never recorded, or a new head) since it arrived, which is no earlier.
        waiting_since = head_since if (recorded_head == current_head and head_since) else oldest_at
        if now - waiting_since > threshold:
            stalled_since, reason = waiting_since, "pending events are not being applied"
    return ProcessingStatus(beat_at, pending, oldest_at, stalled_since, reason)


def broker_backlog() -> int | None:
    """Messages waiting in the default queue (any broker kombu supports); None if unreadable."""
    from celery import current_app

    queue = current_app.conf.task_default_queue
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except Exception:  # reported as unknown: this is a health probe
        return None


def deep_health(*, now: datetime | None = None) -> tuple[dict, int]:
    """The `/healthz/deep` document and its status: 503 when the database is down or processing
    has stalled longer than the threshold."""
    now = now or timezone.now()
    try:
        status = processing_status(now=now)
    except Exception as exc:  # reported, not raised: this is a health probe
        return {"status": "error", "database": f"error: {exc.__class__.__name__}"}, 503

    def age(moment: datetime | None) -> float | None:
        return round((now - moment).total_seconds(), 1) if moment else None

    body = {
        "status": "stalled" if status.stalled else "ok",
        "database": "ok",
        "worker": {"last_heartbeat": status.last_heartbeat.isoformat() if status.last_heartbeat else None,
                   "heartbeat_age_seconds": age(status.last_heartbeat)},
        "processing": {
            "pending": status.pending,
            "oldest_pending_age_seconds": age(status.oldest_pending_at),
            "stalled_since": status.stalled_since.isoformat() if status.stalled_since else None,
            "stall_reason": status.stall_reason or None,
        },
        "broker_backlog": broker_backlog(),
        "stall_threshold_seconds": int(stall_threshold().total_seconds()),
    }
    body["broker"] = "ok" if body["broker_backlog"] is not None else "error"
    if body["broker"] != "ok" and not status.stalled:
        body["status"] = "error"
    return body, 200 if body["status"] == "ok" else 503


def stalled_since_for_dashboard() -> datetime | None:
    """When processing stalled, for the admins' warning; None when it runs (or cannot be read:
    the dashboard must not fail because of its warning)."""
    try:
        return processing_status().stalled_since
    except Exception:
        return None
