"""Settings → Webhooks: the list with each webhook's health, create/edit, the secret shown once,
rotate, test, on/off, delete, and per webhook the delivery log with replay. Admins manage;
marketers read the list; sales see nothing (checked here, on the server)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.htmx import render_page, toast, wants_fragment
from core.jobs import job_start
from core.roles import ADMIN, MARKETER, has_role, role_required
from leads.models import Funnel
from loyalty.models import Program
from segments.models import Segment
from webhooks.fanout import outbox_pending
from webhooks.forms import DeliveryFilterForm, ReplayFailedForm, WebhookForm
from webhooks.models import EVENT_LABELS, SUBSCRIBABLE_TYPES, Delivery, Webhook
from webhooks.services import (
    delivery_replay,
    switched_off_by_system,
    webhook_delete,
    webhook_rotate_secret,
    webhook_save,
    webhook_send_test,
    webhooks_health,
)
from webhooks.tasks import webhook_replay_failed_task

LOG_PAGE_SIZE = 25


def _filter_names(webhooks: list[Webhook]) -> dict[str, dict[int, str]]:
    """Names of the segments, programmes and funnels the webhooks filter on (three small queries)."""
    ids: dict[str, set[int]] = {"segment": set(), "program": set(), "funnel": set()}
    for webhook in webhooks:
        ids["segment"] |= set(webhook.segment_ids)
        ids["program"] |= set(webhook.program_ids)
        ids["funnel"] |= set(webhook.funnel_ids)
    return {
        "segment": dict(Segment.objects.filter(pk__in=ids["segment"]).values_list("pk", "name")),
        "program": dict(Program.objects.filter(pk__in=ids["program"]).values_list("pk", "name")),
        "funnel": dict(Funnel.objects.filter(pk__in=ids["funnel"]).values_list("pk", "name")),
    }


def _describe_filter(webhook: Webhook, names: dict) -> list[str]:
    parts = []
    for label, key, values in ((_("Segments"), "segment", webhook.segment_ids),
                               (_("Programmes"), "program", webhook.program_ids),
                               (_("Funnels"), "funnel", webhook.funnel_ids)):
        if values:
            listed = ", ".join(names[key].get(pk) or _("#%(id)s (deleted)") % {"id": pk} for pk in values)
            parts.append(_("%(label)s: %(names)s") % {"label": label, "names": listed})
    return parts


@require_GET
@role_required(MARKETER)
def webhook_list(request: HttpRequest) -> HttpResponse:
    webhooks = list(Webhook.objects.order_by("pk"))
    health = webhooks_health([webhook.pk for webhook in webhooks])
    names = _filter_names(webhooks)
    rows = [{"webhook": webhook, "health": health[webhook.pk], "filters": _describe_filter(webhook, names)}
            for webhook in webhooks]
    return render(request, "webhooks/list.html", {
        "rows": rows, "can_edit": has_role(request.user, ADMIN), "all_count": len(SUBSCRIBABLE_TYPES),
    })


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def webhook_new(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST or None, initial={"active": True, "events": ["segment.entered", "segment.exited"]})
    if request.method == "POST" and form.is_valid():
        assert form.cleaned_webhook is not None  # set by a valid form
        webhook = webhook_save(None, form.cleaned_webhook, user=request.user)
        return _show_secret(request, webhook, created=True)
    return render(request, "webhooks/edit.html", {"form": form, "webhook": None})


def _show_secret(request: HttpRequest, webhook: Webhook, *, created: bool) -> HttpResponse:
    """The secret, once: rendered into this response only, never stored where a page shows it again."""
    response = render(request, "webhooks/secret.html", {"webhook": webhook, "secret": webhook.secret, "created": created})
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def webhook_edit(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    form = WebhookForm(request.POST or None, initial=WebhookForm.initial_from(webhook))
    if request.method == "POST" and form.is_valid():
        assert form.cleaned_webhook is not None  # set by a valid form
        webhook_save(webhook, form.cleaned_webhook, user=request.user)
        messages.success(request, _("Webhook “%(name)s” saved.") % {"name": webhook.name})
        return redirect("webhooks:detail", webhook_id=webhook.pk)
    return render(request, "webhooks/edit.html", {"form": form, "webhook": webhook})


@require_GET
@role_required(ADMIN)
def webhook_detail(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    filters = DeliveryFilterForm(request.GET or None)
    # Asked before the log is read: a message fanned out after this check is in the log below, as a
    # pending or finished row; asked after, a fan-out between the two reads would leave the page
    # showing neither the message nor its row, and not refreshing.
    messages_waiting = outbox_pending()
    deliveries = Delivery.objects.filter(webhook=webhook).defer("body", "last_response_body", "last_request_headers")
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            deliveries = deliveries.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["type"]:
            deliveries = deliveries.filter(type=filters.cleaned_data["type"])
    # LIMIT/OFFSET on the (webhook, -id) index; the count is one indexed count per page view.
    page = Paginator(deliveries.order_by("-id"), LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    health = webhooks_health([webhook.pk])[webhook.pk]
    context = {
        "webhook": webhook,
        "health": health,
        "filters_text": _describe_filter(webhook, _filter_names([webhook])),
        "filter_form": filters,
        "page": page,
        # while something on this page waits to be sent, the log refreshes itself
        "has_pending": messages_waiting or bool(health.pending)
        or any(delivery.status == Delivery.Status.PENDING for delivery in page.object_list),
        "base_query": query.urlencode(),
        "replay_form": ReplayFailedForm(initial={"since": ReplayFailedForm.default_since()}),
        "event_labels": EVENT_LABELS,
    }
    return render_page(request, "webhooks/detail.html", context, partial="log")


@require_GET
@role_required(ADMIN)
def delivery_detail(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery.objects.select_related("webhook"), pk=delivery_id)
    return render_page(request, "webhooks/delivery.html", {"delivery": delivery}, partial="body")


@require_POST
@role_required(ADMIN)
def delivery_replay_view(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = delivery_replay(get_object_or_404(Delivery, pk=delivery_id))
    if wants_fragment(request):
        response = render(request, "webhooks/detail.html#log_row", {"delivery": delivery})
        return toast(response, _("Queued again: the same message, with the same webhook-id."))
    messages.success(request, _("Queued again: the same message, with the same webhook-id."))
    return redirect("webhooks:detail", webhook_id=delivery.webhook_id)


@require_POST
@role_required(ADMIN)
def webhook_replay_failed(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    form = ReplayFailedForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the time from which failed deliveries should be sent again."))
        return redirect("webhooks:detail", webhook_id=webhook.pk)
    since = form.cleaned_data["since"]
    with transaction.atomic():
        job = job_start(
            webhook_replay_failed_task,
            title=_("Replay failed deliveries of “%(name)s” since %(since)s") % {
                "name": webhook.name, "since": f"{timezone.localtime(since):%Y-%m-%d %H:%M}"},
            params={"webhook_id": webhook.pk, "since": since.isoformat()},
            user=request.user,
            link=(_("Webhook"), webhook.name, reverse("webhooks:detail", kwargs={"webhook_id": webhook.pk})),
        )
    return redirect("jobs:detail", job_id=job.pk)


@require_POST
@role_required(ADMIN)
def webhook_rotate(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    webhook_rotate_secret(webhook)
    return _show_secret(request, webhook, created=False)


@require_POST
@role_required(ADMIN)
def webhook_test(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    webhook_send_test(webhook)
    messages.success(request, _("A webhook.test message is on its way: it shows in the log below within seconds."))
    return redirect("webhooks:detail", webhook_id=webhook.pk)


@require_POST
@role_required(ADMIN)
def webhook_toggle(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    webhook_save(webhook, {"active": not webhook.active}, user=request.user)
    if webhook.active:
        messages.success(request, _("Webhook “%(name)s” switched on.") % {"name": webhook.name})
    else:
        messages.success(request, _("Webhook “%(name)s” switched off.") % {"name": webhook.name})
    return redirect(request.POST.get("next") or reverse("webhooks:detail", kwargs={"webhook_id": webhook.pk}))


@require_POST
@role_required(ADMIN)
def webhook_delete_view(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    name = webhook.name
    webhook_delete(webhook)
    messages.success(request, _("Webhook “%(name)s” deleted with its delivery log.") % {"name": name})
    return redirect("webhooks:list")


def switched_off_warning(request: HttpRequest) -> list[Webhook]:
    """For admins: webhooks the system switched off, for the warning on the dashboard."""
    if not has_role(request.user, ADMIN):
        return []
    return list(switched_off_by_system()[:5])
