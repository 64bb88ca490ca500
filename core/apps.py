from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Infrastructure below every area: roles, htmx helpers, jobs, locks, the API's auth and errors,
    the outbox and the shared condition language."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Every area's ``@job_task``s register themselves when its tasks module is imported: import
        # them all now, in the web process as in the worker, so the Jobs pages know every kind.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("tasks")
        from core import lookups  # noqa: F401  # local import: registers the ``__any`` lookup on every field
