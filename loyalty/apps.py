from __future__ import annotations

from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"

    def ready(self) -> None:
        from contacts.signals import contacts_merging, contacts_purging
        from loyalty import merging

        contacts_merging.connect(merging.on_contacts_merging, dispatch_uid="loyalty.merge")
        contacts_purging.connect(merging.on_contacts_purging, dispatch_uid="loyalty.purge")
        from contacts.signals import contacts_changed
        from loyalty import contact_parts
        from loyalty.services import on_contacts_changed

        contacts_changed.connect(on_contacts_changed, dispatch_uid="loyalty.tiers")
        contact_parts.register()
