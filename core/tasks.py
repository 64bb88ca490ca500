"""Celery tasks of core: the worker's heartbeat (see core.health) and the removal of expired job
files (see core.jobs.files)."""

from __future__ import annotations

from celery import shared_task

from core.health import heartbeat_record
from core.jobs.files import job_files_remove_expired


@shared_task(name="core.tasks.worker_heartbeat_task", ignore_result=True)
def worker_heartbeat_task() -> None:
    heartbeat_record()


@shared_task(name="core.tasks.job_files_cleanup_task", ignore_result=True)
def job_files_cleanup_task() -> int:
    return job_files_remove_expired()
