from __future__ import annotations

from celery import shared_task

from tracking.services import tracking_purge


@shared_task(name="tracking.tasks.tracking_purge_task")
def tracking_purge_task() -> dict:
    """Daily: drop messages of visitors who never identified within the retention period."""
    return tracking_purge()
