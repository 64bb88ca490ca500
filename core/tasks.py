"""Celery tasks of core: the worker's heartbeat (see core.health)."""

from __future__ import annotations

from celery import shared_task

from core.health import heartbeat_record


@shared_task(name="core.tasks.worker_heartbeat_task", ignore_result=True)
def worker_heartbeat_task() -> None:
    heartbeat_record()
