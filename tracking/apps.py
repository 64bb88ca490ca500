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
