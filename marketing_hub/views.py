from __future__ import annotations

import logging
import smtplib
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.models import Contact
from core.health import deep_health, stalled_since_for_dashboard
from core.models import ApiKey
from core.roles import ADMIN, ALL_ROLES, SALES, STAFF, has_role, primary_role, role_label, role_required
from demo.users import DEMO_USERS
from leads.dashboard import dashboard_context
from marketing_hub.celery import app as celery_app
from marketing_hub.forms import ApiKeyForm, LanguageForm, UserCreateForm, UserEditForm
from marketing_hub.middleware import LANGUAGE_SESSION_KEY
from marketing_hub.services import (
    UserChangeRefused,
    user_active_set,
    user_create,
    user_delete,
    user_language_set,
    user_password_reset,
    user_update,
    users_history,
)
from webhooks.views import switched_off_warning

logger = logging.getLogger(__name__)


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if settings.DEBUG or settings.SHOW_DEMO_LOGINS:
            context["demo_logins"] = [{**login, "role_label": role_label(login["role"])} for login in DEMO_USERS]
        return context


@require_GET
@role_required(*STAFF)
def dashboard(request: HttpRequest) -> HttpResponse:
    # The leads area owns the dashboard's KPIs and charts; the shell only places them.
    context = dashboard_context(request)
    context["webhooks_switched_off"] = switched_off_warning(request)
    context["processing_stalled_since"] = stalled_since_for_dashboard() if has_role(request.user, ADMIN) else None
    return render(request, "marketing_hub/dashboard.html", context)


@require_POST
@role_required(*STAFF)
def user_language(request: HttpRequest) -> HttpResponse:
    """The sidebar's language switcher (every role; a plain form, so it works without JavaScript):
    saves the choice and goes back to the page it came from."""
    form = LanguageForm(request.POST)
    if form.is_valid() and request.user.pk is not None:  # signed in: role_required let them through
        language = form.cleaned_data["language"]
        user_language_set(user_id=request.user.pk, language=language)
        request.session[LANGUAGE_SESSION_KEY] = language
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("dashboard")
    return redirect(back)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability, for load balancers and `make run`."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: this is a health probe
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)


@require_GET
def healthz_deep(request: HttpRequest) -> JsonResponse:
    """`/healthz` plus the background processing: worker heartbeat, queue, broker backlog; 503
    when processing has stalled longer than MH_STALL_SECONDS (see core.health)."""
    body, status = deep_health()
    return JsonResponse(body, status=status)


SETTINGS_LINKS = [
    ("leads:settings", gettext_lazy("Lead temperature"),
     gettext_lazy("Cold, warm and hot thresholds, with a preview before saving; score decay.")),
    ("leads:model_check", gettext_lazy("Scoring model check"),
     gettext_lazy("Won vs lost deals: each rule's lift and a suggested hot threshold.")),
    ("loyalty:programs", gettext_lazy("Loyalty tiers"), gettext_lazy("Programmes, tier thresholds and benefits.")),
    ("webhooks:list", gettext_lazy("Webhooks"), gettext_lazy(
        "Signed, retried calls to the shop or other tools when segments, tiers, stages, temperature or consents change.")),
    ("tracking:sources", gettext_lazy("Sources"),
     gettext_lazy("Write keys for Segment-compatible tracking libraries, and their live debugger.")),
    ("automation:events", gettext_lazy("Event processing"),
     gettext_lazy("What the worker still has to apply, and events that failed.")),
]


@require_GET
@role_required(ADMIN)
def settings_home(request: HttpRequest) -> HttpResponse:
    settings_links = [{"url": reverse(url_name), "title": title, "text": text} for url_name, title, text in SETTINGS_LINKS]
    return render(request, "marketing_hub/settings.html", {"settings_links": settings_links})


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def api_keys(request: HttpRequest) -> HttpResponse:
    new_key = None
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_key = ApiKey.issue(name=form.cleaned_data["name"], scope=form.cleaned_data["scope"], created_by=request.user)
        form = ApiKeyForm()
    context = {"form": form, "new_key": new_key, "keys": ApiKey.objects.select_related("created_by")[:200]}
    return render(request, "marketing_hub/api_keys.html", context)


@require_POST
@role_required(ADMIN)
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = get_object_or_404(ApiKey, pk=key_id)
    if api_key.revoked_at is None:
        ApiKey.objects.filter(pk=key_id).update(revoked_at=timezone.now())
        messages.success(request, _("API key “%(name)s” revoked.") % {"name": api_key.name})
    return redirect("api_keys")


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def users(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(**{name: form.cleaned_data[name] for name in (
            "username", "email", "password", "first_name", "last_name", "role")}, by=request.user)
        messages.success(request, _("User %(username)s created as %(role)s.") % {
            "username": user.username, "role": role_label(form.cleaned_data["role"])})
        return redirect("users")
    people = get_user_model().objects.prefetch_related("groups").order_by("-is_active", "username")[:500]
    return render(request, "marketing_hub/users.html", {
        "form": form, "people": people, "roles": ALL_ROLES, "history": users_history(limit=15),
    })


def _person(user_id: int) -> AbstractUser:
    return get_object_or_404(get_user_model(), pk=user_id)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _person(user_id)
    initial = {"username": person.username, "first_name": person.first_name, "last_name": person.last_name,
               "email": person.email, "role": primary_role(person) or SALES}
    form = UserEditForm(request.POST or None, initial=initial, user=person)
    if request.method == "POST" and form.is_valid():
        try:
            changes = user_update(person, **form.cleaned_data, by=request.user)
        except UserChangeRefused as refused:
            form.add_error("role", str(refused))
        else:
            if changes:
                messages.success(request, _("User %(username)s saved: %(changes)s.") % {
                    "username": form.cleaned_data["username"], "changes": ", ".join(changes)})
            else:
                messages.info(request, _("Nothing changed."))
            return redirect("user_edit", user_id=person.pk)
    context = {
        "person": person, "form": form, "is_self": person.pk == request.user.pk,
        "owned_contacts": Contact.objects.filter(owner=person).count(),
        "history": users_history(user_id=person.pk, limit=20),
    }
    return render(request, "marketing_hub/user_edit.html", context)


@require_POST
@role_required(ADMIN)
def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _person(user_id)
    active = request.POST.get("active") == "1"
    try:
        if user_active_set(person, active=active, by=request.user):
            messages.success(request, (_("%(username)s can sign in again.") if active else _(
                "%(username)s is deactivated: they cannot sign in, and their open sessions have ended."))
                % {"username": person.username})
    except UserChangeRefused as refused:
        messages.error(request, str(refused))
    return redirect("user_edit", user_id=person.pk)


@require_POST
@role_required(ADMIN)
def user_password_reset_send(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _person(user_id)
    try:
        user_password_reset(person, request=request, by=request.user)
    except UserChangeRefused as refused:
        messages.error(request, str(refused))
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("password reset email to user %s failed: %s", person.pk, exc)
        messages.error(request, _("The email to %(email)s could not be sent (%(error)s); check the mail settings "
                                  "(EMAIL_URL) and try again.") % {"email": person.email, "error": exc.__class__.__name__})
    else:
        messages.success(request, _("A one-time password reset link was emailed to %(email)s.") % {"email": person.email})
    return redirect("user_edit", user_id=person.pk)


@require_POST
@role_required(ADMIN)
def user_delete_view(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _person(user_id)
    username = person.username
    try:
        user_delete(person, by=request.user)
    except UserChangeRefused as refused:
        messages.error(request, str(refused))
        return redirect("user_edit", user_id=person.pk)
    messages.success(request, _("User %(username)s deleted.") % {"username": username})
    return redirect("users")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The emailed link: choose a new password (Django's view, our page)."""

    template_name = "registration/password_reset_confirm.html"


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"
