"""Webhook background work: the pump (fan-out, then send what is due), the "replay all failed
since …" job and the clean-up of old rows."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import locks
from core.jobs import Progress, job_run_chunks, job_task, single_chunk
from core.models import Job
from core.outbox import OUTBOX_TABLE
from core.roles import ADMIN
from webhooks.delivery import deliveries_due, deliveries_send_due
from webhooks.fanout import outbox_fanout, outbox_pending

logger = logging.getLogger(__name__)

# Dispatched outbox rows and finished deliveries are kept this long (the delivery log's reach).
OUTBOX_KEEP_DAYS = 7
DELIVERIES_KEEP_DAYS = 30


def webhooks_pump(*, time_budget: float = 20.0) -> dict[str, Any]:
    """Fan the outbox out and send what is due, until both are empty or the budget is spent.
    One pump at a time (a session lock): beat's ticks and the after-commit kicks find it taken
    and leave, so pumps never take every worker process from the rules engine.

    A kick that finds the lock taken leaves, trusting the running pump to see its message; but that
    pump may have made its last check just before the message committed. So after releasing the
    lock the pump checks once more and goes round again when messages wait: a message committed
    while a pump runs is sent by it, not by beat's next sweep (seconds later)."""
    deadline = time.monotonic() + time_budget
    totals: dict[str, Any] = {"messages": 0, "deliveries": 0, "sent": 0, "more": False}
    idle_passes = 0

    def fan_out_chunk() -> dict:
        fanned = outbox_fanout(max_chunks=1)
        totals["messages"] += fanned["messages"]
        totals["deliveries"] += fanned["deliveries"]
        return fanned

    while True:
        with connection.cursor() as cursor, \
                locks.advisory_session_lock(cursor, locks.WEBHOOK_PUMP, wait=False) as held:
            if not held:
                return {**totals, "busy": True}
            worked = False
            while True:
                # one chunk, then send: the next chunks are fanned out while calls are in flight
                fanned = fan_out_chunk()
                sent = deliveries_send_due(time_budget=max(0.0, deadline - time.monotonic()), between=fan_out_chunk)
                totals["sent"] += sent["sent"]
                if not fanned["messages"] and not sent["sent"]:
                    break
                worked = True
                if time.monotonic() > deadline:
                    totals["more"] = outbox_pending() or deliveries_due()
                    return totals
        # (a second pass that finds nothing ends it: rows someone else holds locked are not waited for)
        idle_passes = 0 if worked else idle_passes + 1
        if idle_passes >= 2 or time.monotonic() > deadline or not (outbox_pending() or deliveries_due()):
            return totals


@shared_task(name="webhooks.tasks.webhooks_pump_task", ignore_result=True)
def webhooks_pump_task() -> dict:
    totals = webhooks_pump()
    if totals.get("more"):
        webhooks_pump_task.delay()
    return totals


def webhooks_pump_enqueue() -> None:
    webhooks_pump_task.delay()


@shared_task(name="webhooks.tasks.webhooks_sweep_task", ignore_result=True)
def webhooks_sweep_task() -> None:
    """Beat: start the pump when messages wait to be fanned out or deliveries are due (a retry's
    time came, a lease ran out, a kick was lost). Two cheap index probes when there is nothing."""
    if outbox_pending() or deliveries_due():
        webhooks_pump_task.delay()


@shared_task(name="webhooks.tasks.webhooks_cleanup_task", ignore_result=True)
def webhooks_cleanup_task() -> dict:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE dispatched_at < %s", [now - timedelta(days=OUTBOX_KEEP_DAYS)])
        outbox = cursor.rowcount
        cursor.execute("DELETE FROM webhooks_delivery WHERE status <> 'pending' AND created_at < %s",
                       [now - timedelta(days=DELIVERIES_KEEP_DAYS)])
        deliveries = cursor.rowcount
    return {"outbox": outbox, "deliveries": deliveries}


@job_task("webhook_replay_failed", roles=(ADMIN,), label=_("Replay of failed webhook deliveries"))
def webhook_replay_failed_task(job: Job, progress: Progress) -> dict:
    """"Replay all failed since …": one UPDATE puts them back in the queue (a single chunk, so a
    redelivered job does not replay twice); the pump sends them."""
    # local import: the services import this module (they kick the pump after their commits)
    from webhooks.services import deliveries_replay_failed

    def replay(cursor: Any) -> dict:
        since = datetime.fromisoformat(job.params["since"])
        return {"replayed": deliveries_replay_failed(webhook_id=int(job.params["webhook_id"]), since=since)}

    return job_run_chunks(job, single_chunk(replay), total=1)
