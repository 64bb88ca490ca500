from __future__ import annotations

from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking API"

    def ready(self) -> None:
        # Browser sources' origins answer CORS on /v1/ (django-cors-headers asks this signal).
        from corsheaders.signals import check_request_enabled

        from tracking.cors import origin_allowed_for_some_source

        check_request_enabled.connect(origin_allowed_for_some_source, dispatch_uid="tracking-cors")

        from contacts.signals import contacts_erasing, contacts_merging, contacts_purging
        from tracking import services

        contacts_merging.connect(services.on_contacts_merging, dispatch_uid="tracking.merge")
        contacts_purging.connect(services.on_contacts_purging, dispatch_uid="tracking.purge")
        contacts_erasing.connect(services.on_contacts_erasing, dispatch_uid="tracking.erase")

        from contacts.registry import representation_part_register

        representation_part_register(services.contact_identities)
