"""Hot-lead alerts in the browser: the header bell, the notification list, the user's alert
settings, and the no-login unsubscribe link of the alert emails."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.htmx import render_page, wants_fragment
from core.roles import STAFF, role_required
from leads.forms import AlertSettingsForm
from leads.models import AlertSettings
from leads.notifications import (
    alert_settings_of,
    alert_settings_save,
    alerts_unsubscribe_user,
    notifications_mark_read,
    notifications_of,
    notifications_unread_count,
)

NOTIFICATIONS_PAGE_SIZE = 25
BELL_CAP = 99
# Sent with every change of read state so the bell refreshes at once (it also polls).
CHANGED_EVENT = "notifications-changed"


def _user(request: HttpRequest) -> User:
    """The signed-in user (every view here requires a role, so never anonymous)."""
    return cast(User, request.user)


def bell_context(user: User) -> dict:
    """What ``leads/notification_bell.html`` shows: the user's unread count and its label."""
    unread = notifications_unread_count(user, cap=BELL_CAP)
    return {"unread": unread, "unread_label": f"{BELL_CAP}+" if unread > BELL_CAP else str(unread)}


@require_GET
@role_required(*STAFF)
def notification_bell(request: HttpRequest) -> HttpResponse:
    """The bell's inside: the unread count of the signed-in user (polled by the header, which
    renders it with the page first: see marketing_hub.context_processors)."""
    response = render(request, "leads/notification_bell.html", bell_context(_user(request)))
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@role_required(*STAFF)
def notifications(request: HttpRequest) -> HttpResponse:
    show = "unread" if request.GET.get("show") == "unread" else "all"
    rows = notifications_of(_user(request)).select_related("contact").only(
        "id", "kind", "score", "created_at", "read_at", "email_sent_at", "user_id",
        "contact__id", "contact__email", "contact__first_name", "contact__last_name", "contact__owner_id",
    )
    if show == "unread":
        rows = rows.filter(read_at__isnull=True)
    page = Paginator(rows, NOTIFICATIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    unread = notifications_unread_count(_user(request), cap=BELL_CAP)
    context = {
        "page_obj": page,
        "notifications": list(page.object_list),
        "show": show,
        "unread": unread,
        "unread_label": f"{BELL_CAP}+" if unread > BELL_CAP else str(unread),
        "base_query": f"show={show}",
    }
    return render_page(request, "leads/notifications.html", context, partial="results")


@require_POST
@role_required(*STAFF)
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    # Another user's notification is a 404, as if it did not exist.
    notification = get_object_or_404(notifications_of(_user(request)).select_related("contact"), pk=notification_id)
    notifications_mark_read(_user(request), notification_id=notification.pk)
    if not wants_fragment(request):
        return redirect("leads:notifications")
    notification.refresh_from_db(fields=["read_at"])
    response = render(request, "leads/notifications.html#notification_row", {"notification": notification})
    response["HX-Trigger"] = CHANGED_EVENT
    return response


@require_POST
@role_required(*STAFF)
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    marked = notifications_mark_read(_user(request))
    messages.success(request, ngettext("Marked %(count)s notification read.", "Marked %(count)s notifications read.",
                                       marked) % {"count": marked} if marked else _("Nothing was unread."))
    return redirect("leads:notifications")


@require_http_methods(["GET", "POST"])
@role_required(*STAFF)
def alert_settings(request: HttpRequest) -> HttpResponse:
    current = alert_settings_of(_user(request))
    if request.method == "POST":
        form = AlertSettingsForm(request.POST)
        if form.is_valid():
            alert_settings_save(_user(request), email_mode=form.cleaned_data["email_mode"],
                                digest_minutes=form.cleaned_data["digest_minutes"])
            messages.success(request, _("Alert settings saved."))
            return redirect("leads:alert_settings")
    else:
        form = AlertSettingsForm(initial={"email_mode": current.email_mode, "digest_minutes": current.digest_minutes})
    return render(request, "leads/alert_settings.html", {"form": form, "current": current})


@login_not_required
@csrf_exempt  # the signed token is the authorisation; mail clients' one-click POST (RFC 8058) has no CSRF token
@require_http_methods(["GET", "POST"])
def alerts_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """The emails' unsubscribe link: GET asks (link scanners must not unsubscribe anyone), POST
    switches hot-lead emails off for the user the token names. No sign-in needed."""
    user = alerts_unsubscribe_user(token)
    if user is None:
        return render(request, "leads/alerts_unsubscribe.html", {"invalid": True}, status=400)
    done = False
    if request.method == "POST":
        current = alert_settings_of(user)
        alert_settings_save(user, email_mode=AlertSettings.EmailMode.OFF, digest_minutes=current.digest_minutes)
        done = True
    context = {"person": user, "done": done, "token": token,
               "already_off": alert_settings_of(user).email_mode == AlertSettings.EmailMode.OFF and not done}
    return render(request, "leads/alerts_unsubscribe.html", context)
