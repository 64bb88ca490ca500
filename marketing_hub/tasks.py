from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import connection


@shared_task
def broker_prune_task() -> int:
    """kombu's SQLAlchemy transport keeps consumed messages (visible = false); drop them."""
    if not settings.CELERY_BROKER_IS_DATABASE:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('kombu_message') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute("DELETE FROM kombu_message WHERE visible = false")
        return cursor.rowcount
