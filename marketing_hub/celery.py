"""The Celery application. Tasks live in each app's tasks.py; the schedule is here."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init
from django.db import connections

import marketing_hub.broker  # noqa: F401  (registers the "mhsqla" broker transport)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")

app = Celery("marketing_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _name_database_sessions_after_the_process(**kwargs: object) -> None:
    """Each pool process names its database sessions "<application_name>/<pid>", so an operator
    (or a test) reading pg_stat_activity knows which process holds which backend — over a Unix
    socket there is no client port to tell them apart."""
    for connection in connections.all(initialized_only=True):
        connection.close()
    for alias in connections:
        options = connections.settings[alias].setdefault("OPTIONS", {})
        base = str(options.get("application_name") or "marketing-hub-worker").split("/")[0]
        options["application_name"] = f"{base}/{os.getpid()}"[:63]


def _env_positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive whole number, got {raw!r}")
    return int(raw)


# Pool processes are replaced after this many tasks, or after a task that left them larger than
# this (checked between tasks), so a slow leak ends in a clean replacement instead of the OOM
# killer's SIGKILL mid-batch. A fork costs well under a second, amortised over minutes of work.
app.conf.worker_max_tasks_per_child = _env_positive_int("MH_WORKER_MAX_TASKS_PER_CHILD", 500)
app.conf.worker_max_memory_per_child = _env_positive_int("MH_WORKER_MAX_MEMORY_MB", 1024) * 1024  # KiB

# Webhook delivery on a queue of its own (``MH_WEBHOOK_QUEUE``; `make run` names one and starts a
# one-process worker for it, at a lower CPU priority). A pump sends calls for up to 20 s at a time;
# on the shared queue it held one of the worker's processes, and the rules engine (one batch per
# process, MH_ENGINE_PARTITIONS side by side) lost half its parallelism while webhooks were busy.
# Unset, every task goes to the default queue and one worker does everything (the tests' workers).
WEBHOOK_QUEUE_TASKS = frozenset({"webhooks.tasks.webhooks_pump_task", "webhooks.tasks.webhooks_sweep_task"})


def webhook_queue() -> str | None:
    """The queue of webhook delivery, or None for the default queue (read at each send: the
    environment a process was started with, or a test's)."""
    name = os.environ.get("MH_WEBHOOK_QUEUE", "").strip()
    if name and not all(char.isalnum() or char in "-_.@" for char in name):
        raise ValueError(f"MH_WEBHOOK_QUEUE must be a queue name (letters, digits, - _ . @), got {name!r}")
    return name or None


def _route_webhook_delivery(name: str, args: object, kwargs: object, options: dict, task: object = None,
                            **extra: object) -> dict | None:
    if name in WEBHOOK_QUEUE_TASKS and (queue := webhook_queue()):
        return {"queue": queue}
    return None  # the default queue (or the queue the caller named)


webhook_queue()  # a bad value stops the process at start, naming the variable
app.conf.task_routes = (_route_webhook_delivery,)

# The whole beat schedule, in one place: areas do not import the shell to add to it.
app.conf.beat_schedule = {
    # core: the worker's heartbeat and the queue head it saw, for /healthz/deep (core.health).
    "core-worker-heartbeat": {"task": "core.tasks.worker_heartbeat_task", "schedule": 15.0},
    "prune-broker-messages": {"task": "marketing_hub.tasks.broker_prune_task", "schedule": 300.0},
    # segments: full refresh of memberships that are due (time-relative ones every 15 minutes,
    # the rest hourly); between runs the rules engine keeps changed contacts current.
    "segments-refresh-due": {"task": "segments.tasks.segments_refresh_scheduled_task", "schedule": 300.0},
    # leads: growth counters age out every 5 minutes; decay (off unless enabled in the settings)
    # runs hourly and only writes when a half-life boundary was crossed.
    "leads-score-trend-refresh": {"task": "leads.tasks.score_trend_refresh_task", "schedule": 300.0},
    "leads-score-decay": {"task": "leads.tasks.score_decay_task", "schedule": 3600.0},
    "leads-tag-decay": {"task": "leads.tasks.tag_decay_task", "schedule": 3600.0},
    # leads: hot-lead alert emails — instant ones are also enqueued after the commit that wrote
    # them (this catches a lost message); digests go out when a user's interval has passed.
    "leads-alerts-email": {"task": "leads.tasks.alerts_email_task", "schedule": 30.0},
    # automation: re-enqueue event processing when pending events wait too long (lost message,
    # broker restart).
    "automation-events-sweep": {"task": "automation.tasks.events_sweep_task", "schedule": 5.0},
    # segments: the rules engine queues the contacts of each batch for a membership refresh
    # (segments.dirty); this re-enqueues the drain when a message was lost.
    "segments-dirty-sweep": {"task": "segments.tasks.segments_dirty_sweep_task", "schedule": 30.0},
    # core: enqueue again the jobs nobody is running (their worker died, their message was lost);
    # they resume from their last committed chunk.
    "core-jobs-sweep": {"task": "core.jobs.jobs_sweep_task", "schedule": 30.0},
    # core: the jobs' download files (CSV exports) older than MH_EXPORT_RETENTION_DAYS are removed.
    "core-job-files-cleanup": {"task": "core.tasks.job_files_cleanup_task", "schedule": 3600.0},
    # contacts: the Tags page's counts on a large database (a snapshot; small ones count live).
    "contacts-tag-stats": {"task": "contacts.tasks.tag_stats_refresh_task", "schedule": 300.0},
    # tracking: messages of visitors who never identified, after MH_ANONYMOUS_RETENTION_DAYS.
    "tracking-purge": {"task": "tracking.tasks.tracking_purge_task", "schedule": 24 * 3600.0},
    # anonymous profiles' merges are enqueued on commit; this catches a message the broker lost
    "profiles-merge": {"task": "contacts.tasks.profiles_merge_task", "schedule": 60.0},
    # loyalty: downgrades whose grace period ended (and expired pins) every 15 minutes; a daily full
    # recompute for rolling windows and manual tag edits that bypass the rules engine.
    "loyalty-apply-due-downgrades": {"task": "loyalty.tasks.tiers_apply_due_task", "schedule": 15 * 60.0},
    # webhooks: start the pump when outbox messages wait or deliveries are due (retries wait in
    # the database with their due time; the pump is also kicked after the commits that write
    # messages); old dispatched outbox rows and finished deliveries are deleted daily.
    "webhooks-sweep": {"task": "webhooks.tasks.webhooks_sweep_task", "schedule": 2.0},
    "webhooks-cleanup": {"task": "webhooks.tasks.webhooks_cleanup_task", "schedule": 24 * 60 * 60.0},
    "loyalty-daily-recompute": {"task": "loyalty.tasks.programs_recompute_daily_task", "schedule": 24 * 60 * 60.0},
}
