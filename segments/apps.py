from __future__ import annotations

from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"

    def ready(self) -> None:
        from contacts.signals import contacts_merging, contacts_purging
        from segments import merging

        contacts_merging.connect(merging.on_contacts_merging, dispatch_uid="segments.merge")
        contacts_purging.connect(merging.on_contacts_purging, dispatch_uid="segments.purge")
        from contacts.signals import contacts_changed, contacts_erasing
        from segments import contact_parts
        from segments.dirty import on_contacts_changed

        contacts_changed.connect(on_contacts_changed, dispatch_uid="segments.memberships")
        contacts_erasing.connect(contact_parts.on_contacts_erasing, dispatch_uid="segments.erased_counts")
        contact_parts.register()
