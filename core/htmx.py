"""The htmx helpers every area uses: the one place that decides whether a request gets a fragment
or the whole page, toasts, and redirects that work for htmx and plain requests alike."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_htmx.middleware import HtmxDetails

ToastLevel = Literal["success", "info", "warning", "error"]


class HtmxHttpRequest(HttpRequest):
    """The request type of views (for type hints): django-htmx's middleware sets ``request.htmx``."""

    htmx: HtmxDetails


def wants_fragment(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not htmx.boosted and not htmx.history_restore_request


def render_page(
    request: HttpRequest, template: str, context: dict, *, partial: str | None = None, status: int = 200
) -> HttpResponse:
    """Render ``template`` or, for an HTMX fragment request, its ``#partial``."""
    name = f"{template}#{partial}" if partial and wants_fragment(request) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def toast(response: HttpResponse, message: str, level: ToastLevel = "success") -> HttpResponse:
    """Show ``message`` as a toast (static/js listens for the ``toast`` event). Merged into any
    HX-Trigger the response already carries, so a toast never hides another client event."""
    return trigger_client_event(response, "toast", {"message": message, "level": level})


def redirect_page(request: HttpRequest, url: str) -> HttpResponse:
    """Go to ``url``: a full-page client redirect for htmx requests (a plain 302 would be followed
    by XMLHttpRequest and swapped into the target), an ordinary redirect otherwise."""
    if getattr(request, "htmx", None):
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)
