from __future__ import annotations

from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"

    def ready(self) -> None:
        from automation.engine import pending_exists
        from segments.dirty import DRAIN_YIELDS_TO

        # While events wait, the CPU goes to them: the drain of segment memberships yields (up to
        # its maximum wait) and the engine enqueues it again when its run ends.
        DRAIN_YIELDS_TO.append(pending_exists)
