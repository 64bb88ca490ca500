from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext

from core.api import RETRY_AFTER_SECONDS
from marketing_hub.models import UserPreference

logger = logging.getLogger(__name__)

# Machine endpoints authenticate on their own (API keys) or are public by design.
PUBLIC_PREFIXES = ("/api/", "/healthz", "/static/")


class LoginRequiredMiddleware(DjangoLoginRequired):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(PUBLIC_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    def handle_no_permission(self, request, view_func):
        # An HTMX fragment request after the session expired: send the whole page to the login.
        if request.headers.get("HX-Request") == "true":
            from django.urls import reverse

            response = HttpResponse(status=204)
            response["HX-Redirect"] = f"{reverse('login')}?next={request.headers.get('HX-Current-URL', '/')}"
            return response
        return super().handle_no_permission(request, view_func)


# --- Language ---------------------------------------------------------------------------------
# The API's messages are a contract (clients match on them): always English, whatever the
# Accept-Language header or the key owner's saved language says.
ENGLISH_ONLY_PREFIXES = ("/api/", "/v1/")
# The saved language is copied into the session at sign-in (and when changed), so a page costs no
# extra query; another device's session picks up a change at its next sign-in.
LANGUAGE_SESSION_KEY = "mh_language"


def saved_language(request) -> str:
    """The signed-in user's saved language ("" = follow the browser)."""
    session = getattr(request, "session", None)
    if session is None or not request.user.is_authenticated:
        return ""
    language = session.get(LANGUAGE_SESSION_KEY)
    if language is None:  # a session from before the preference existed
        language = UserPreference.objects.filter(user_id=request.user.pk).values_list("language", flat=True).first() or ""
        session[LANGUAGE_SESSION_KEY] = language
    return language if language in dict(settings.LANGUAGES) else ""


def language_to_session(sender, request, user, **kwargs) -> None:
    """``user_logged_in`` receiver: the saved language goes into the new session."""
    if getattr(request, "session", None) is not None:
        language = UserPreference.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
        request.session[LANGUAGE_SESSION_KEY] = language or ""


class UserLanguageMiddleware:
    """After LocaleMiddleware (the browser's choice) and authentication: the user's saved language
    wins; /api/ and /v1/ answer in English."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(ENGLISH_ONLY_PREFIXES):
            language = "en"
        else:
            language = saved_language(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        try:
            response = self.get_response(request)
            # (LocaleMiddleware's own header comes after the reset below: it only sets a missing one)
            response.headers.setdefault("Content-Language", translation.get_language())
            return response
        finally:
            # The response is rendered by now: the thread goes back to the default language, so
            # nothing run later in it (another request's early middleware, a test) inherits this one.
            translation.deactivate()


# --- PostgreSQL unavailable -------------------------------------------------------------------
# While the database restarts (or is unreachable) every request fails the same way; the client
# should come back shortly, and nothing about the server's internals belongs in the answer.
DATABASE_UNAVAILABLE_MESSAGE = "The service is temporarily unavailable. Please retry in a few seconds."
_JSON_PREFIXES = ("/api/", "/v1/")


def _database_unavailable(request) -> HttpResponse:
    if request.path.startswith(_JSON_PREFIXES) or "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse({"detail": DATABASE_UNAVAILABLE_MESSAGE}, status=503)
    else:
        response = HttpResponse(_unavailable_page(), status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _unavailable_page() -> str:
    """Plain HTML: rendering the base template would need the database (context processors, the
    user). In the language LocaleMiddleware chose from the browser (the JSON answer stays English)."""
    title = escape(gettext("Temporarily unavailable"))
    message = escape(gettext("The service is temporarily unavailable. Please retry in a few seconds."))
    return (
        f'<!doctype html><html lang="{escape(translation.get_language() or "en")}"><head><meta charset="utf-8">'
        f"<title>{title}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; line-height: 1.5">'
        f"<h1>{title}</h1><p>{message}</p></body></html>"
    )


def _is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


class DatabaseUnavailableMiddleware:
    """503 with ``Retry-After`` instead of a 500 (or DEBUG's traceback page) when PostgreSQL is
    unavailable, in any mode. A view's error arrives in ``process_exception``; one raised by
    another middleware (the session or the user loaded from the database) was already turned into
    a 500 response before it gets here, so ``got_request_exception`` marks the request and the
    500 is replaced on the way out."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, "_mh_database_unavailable", False):
            return _database_unavailable(request)
        return response

    def process_exception(self, request, exception):
        if _is_database_unavailable(exception):
            logger.warning("answered 503, database unavailable: %s", exception.__class__.__name__)
            return _database_unavailable(request)
        return None


def _mark_database_unavailable(sender, request=None, **kwargs) -> None:
    if request is not None and _is_database_unavailable(sys.exc_info()[1]):
        logger.warning("answered 503, database unavailable: %s", sys.exc_info()[1].__class__.__name__)
        request._mh_database_unavailable = True


got_request_exception.connect(_mark_database_unavailable, dispatch_uid="mh-database-unavailable")
