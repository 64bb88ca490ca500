from __future__ import annotations

from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"

    def ready(self) -> None:
        from automation import merging
        from contacts.signals import contacts_merge_prepare, contacts_merging, contacts_purging

        contacts_merge_prepare.connect(merging.on_contacts_merge_prepare, dispatch_uid="automation.merge_prepare")
        contacts_merging.connect(merging.on_contacts_merging, dispatch_uid="automation.merge")
        contacts_purging.connect(merging.on_contacts_purging, dispatch_uid="automation.purge")
        from automation.engine import engine_backlog
        from segments.dirty import DRAIN_YIELDS_TO

        # While the engine is behind, the CPU goes to the events: the drain of segment memberships
        # yields (up to its maximum wait) and the engine enqueues it again during and after its run.
        DRAIN_YIELDS_TO.append(engine_backlog)

        # The contact card names the rule behind each tag change and timeline effect.
        from automation.models import Rule
        from contacts.registry import rule_names_register

        rule_names_register(lambda rule_ids: dict(Rule.objects.filter(pk__in=rule_ids).values_list("pk", "name")))
