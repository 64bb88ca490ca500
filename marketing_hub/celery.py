"""The Celery application. Tasks live in each app's tasks.py; the schedule is here."""

from __future__ import annotations

import os

from celery import Celery

import marketing_hub.broker  # noqa: F401  (registers the "mhsqla" broker transport)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")

app = Celery("marketing_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Each app adds its periodic work to this dict from its tasks module (see beat_schedule below).
app.conf.beat_schedule = {
    "prune-broker-messages": {"task": "marketing_hub.tasks.broker_prune_task", "schedule": 300.0},
    # segments: full refresh of memberships that are due (time-relative ones every 15 minutes,
    # the rest hourly); between runs the rules engine keeps changed contacts current.
    "segments-refresh-due": {"task": "segments.tasks.segments_refresh_scheduled_task", "schedule": 300.0},
    # leads: growth counters age out every 5 minutes; decay (off unless enabled in the settings)
    # runs hourly and only writes when a half-life boundary was crossed.
    "leads-score-trend-refresh": {"task": "leads.tasks.score_trend_refresh_task", "schedule": 300.0},
    "leads-score-decay": {"task": "leads.tasks.score_decay_task", "schedule": 3600.0},
    "leads-tag-decay": {"task": "leads.tasks.tag_decay_task", "schedule": 3600.0},
    # automation: re-enqueue event processing when pending events wait too long (lost message,
    # broker restart); mark jobs whose worker died as failed.
    "automation-events-sweep": {"task": "automation.tasks.events_sweep_task", "schedule": 5.0},
    # segments: the rules engine queues the contacts of each batch for a membership refresh
    # (segments.dirty); this re-enqueues the drain when a message was lost.
    "segments-dirty-sweep": {"task": "segments.tasks.segments_dirty_sweep_task", "schedule": 30.0},
    "automation-jobs-reap": {"task": "automation.tasks.jobs_reap_task", "schedule": 600.0},
    # contacts: the Tags page's counts on a large database (a snapshot; small ones count live).
    "contacts-tag-stats": {"task": "contacts.tasks.tag_stats_refresh_task", "schedule": 300.0},
}
