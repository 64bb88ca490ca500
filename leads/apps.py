from __future__ import annotations

from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"

    def ready(self) -> None:
        from contacts.signals import contacts_merging, contacts_purging
        from leads import merging

        contacts_merging.connect(merging.on_contacts_merging, dispatch_uid="leads.merge")
        contacts_purging.connect(merging.on_contacts_purging, dispatch_uid="leads.purge")
        from leads import contact_parts

        contact_parts.register()
