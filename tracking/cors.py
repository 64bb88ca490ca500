"""CORS for browser sources: django-cors-headers answers on ``/v1/`` (``CORS_URLS_REGEX``) and asks
this receiver whether the request's Origin may read the response. The preflight carries no key,
so here an origin is allowed when some active browser source lists it; the intake view then
checks the origin against the very source whose key the message carries."""

from __future__ import annotations

from django.http import HttpRequest

from tracking.models import Source

TRACKING_PATH_PREFIX = "/v1/"


def origin_allowed_for_some_source(sender: object, request: HttpRequest, **kwargs: object) -> bool:
    # The signal also enables CORS outside CORS_URLS_REGEX: never answer for the app's own URLs.
    if not request.path_info.startswith(TRACKING_PATH_PREFIX):
        return False
    origin = (request.headers.get("origin") or "").lower()
    if not origin:
        return False
    return Source.objects.active().filter(kind=Source.KIND_BROWSER, allowed_origins__contains=[origin]).exists()
