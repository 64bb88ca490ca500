"""The Celery application. Tasks live in each app's tasks.py; the schedule is here."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")

app = Celery("marketing_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Each app adds its periodic work to this dict from its tasks module (see beat_schedule below).
app.conf.beat_schedule = {
    "prune-broker-messages": {"task": "marketing_hub.tasks.broker_prune_task", "schedule": 300.0},
}
