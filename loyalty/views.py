"""Loyalty pages: programmes, a programme's overview, the admin tier editor with its live impact
preview, recompute jobs, and the contact card's loyalty panel with pins.

Marketers read; every write is Admin-only on the server (``role_required(ADMIN)``)."""

from __future__ import annotations

from datetime import timedelta

import plotly.graph_objects as go
from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from contacts.models import Contact
from core.audit import actors_name
from core.charts import DOWN, MUTED, PRIMARY, UP, figure_dict
from core.htmx import toast
from core.jobs import job_start
from core.models import Job
from core.roles import ADMIN, MARKETER, SALES, has_role, role_required
from loyalty.forms import MIN_HELP, PinForm, ProgramForm, TierForm, tier_formset
from loyalty.metrics import metric_describe, metric_distance, metric_is_whole
from loyalty.models import ContactTier, Program, ProgramEvent, Tier, TierChange, TierEvent
from loyalty.services import (
    ProgramSwitchedOff,
    contact_metric_values,
    program_delete,
    program_distribution,
    program_save,
    program_switch,
    tier_pin,
    tier_unpin,
    tiers_preview,
)
from loyalty.tasks import program_recompute_task

RECOMPUTE_KIND = "loyalty_recompute"
# Tier-change reasons written in English by background work and the API, named in the page's
# language; reasons written from a page are already in the language of the person who acted.
REASON_LABELS = {
    "Programme created": gettext_lazy("Programme created"),
    "Programme changed through the API": gettext_lazy("Programme changed through the API"),
    "New events": gettext_lazy("New events"),
    "Grace period or pin ended": gettext_lazy("Grace period or pin ended"),
    "Daily recompute": gettext_lazy("Daily recompute"),
    "Full recompute": gettext_lazy("Full recompute"),
}


def reason_label(reason: str) -> str:
    return str(REASON_LABELS.get(reason, reason))


def _can_edit(request: HttpRequest) -> bool:
    return has_role(request.user, ADMIN)


# --- list ---------------------------------------------------------------------------------------
@require_GET
@role_required(MARKETER)
def programs(request: HttpRequest) -> HttpResponse:
    rows = []
    program_list = list(Program.objects.prefetch_related("tiers").annotate(
        members=Count("contact_tiers", filter=Q(contact_tiers__tier__isnull=False))
    ))
    for program in program_list:
        rows.append({
            "program": program,
            "metric": metric_describe(program.metric),
            "tiers": [tier for tier in sorted(program.tiers.all(), key=lambda tier: tier.min) if not tier.retired],
        })
    return render(request, "loyalty/programs.html", {"rows": rows, "can_edit": _can_edit(request),
                                                     "deleted": _deleted_programs()})


def _deleted_programs(limit: int = 5) -> list[dict]:
    """The latest deleted programmes, who deleted them and when (their pghistory delete events)."""
    entries = [{"at": event.pgh_created_at, "name": event.name, "metric": metric_describe(event.metric),
                "context": event.pgh_context.metadata if event.pgh_context else {}}
               for event in ProgramEvent.objects.filter(pgh_label="delete").select_related("pgh_context")
               .order_by("-pgh_id")[:limit]]
    actors_name(entries)
    return entries


# --- overview -----------------------------------------------------------------------------------
def _distribution_figure(distribution: dict[str, int], no_tier: int) -> dict:
    names = [_("No tier"), *distribution.keys()]
    counts = [no_tier, *distribution.values()]
    figure = go.Figure(go.Bar(
        x=names, y=counts, text=[intcomma(count) for count in counts], textposition="auto",
        marker={"color": [MUTED, *[PRIMARY] * len(distribution)]},
        hovertemplate=_("%(tier)s: %(count)s contacts") % {"tier": "%{x}", "count": "%{y:,}"} + "<extra></extra>",
    ))
    figure.update_layout(yaxis={"title": {"text": _("Contacts")}}, bargap=0.35)
    return figure_dict(figure)


def _movements(program: Program, days: int = 90) -> tuple[dict, int, int]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        TierChange.objects.filter(program=program, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(up=Count("id", filter=Q(direction__gt=0)), down=Count("id", filter=Q(direction__lt=0)))
        .order_by("day")
    )
    days_list = [row["day"].isoformat() for row in rows]
    ups = [row["up"] for row in rows]
    downs = [-row["down"] for row in rows]
    figure = go.Figure([
        go.Bar(name=_("Up"), x=days_list, y=ups, marker={"color": UP},
               hovertemplate=_("%(day)s: %(count)s up") % {"day": "%{x}", "count": "%{y:,}"} + "<extra></extra>"),
        go.Bar(name=_("Down"), x=days_list, y=downs, marker={"color": DOWN}, customdata=[-value for value in downs],
               hovertemplate=_("%(day)s: %(count)s down") % {"day": "%{x}", "count": "%{customdata:,}"}
               + "<extra></extra>"),
    ])
    figure.update_layout(barmode="relative", showlegend=True, legend={"orientation": "h", "y": 1.12},
                         yaxis={"title": {"text": _("Contacts moved")}}, xaxis={"type": "date"})
    return figure_dict(figure), sum(ups), -sum(downs)


def _audit(program: Program, limit: int = 15) -> list[dict]:
    """Who changed the programme or its tiers, newest first (pghistory events)."""
    entries = []
    program_labels = {"insert": _("Programme created"), "update": _("Programme changed"),
                      "delete": _("Programme deleted")}
    tier_labels = {"insert": _("Tier created"), "update": _("Tier changed"), "delete": _("Tier deleted")}
    program_events = list(ProgramEvent.objects.filter(pgh_obj_id=program.pk).select_related("pgh_context")
                          .order_by("-pgh_id")[:limit + 1])
    for event, before in zip(program_events, [*program_events[1:], None], strict=True):
        what = program_labels.get(event.pgh_label, event.pgh_label)
        if event.pgh_label == "update" and before is not None and before.active != event.active:
            what = _("Programme switched on") if event.active else _("Programme switched off (tiers frozen)")
        if event.downgrade_policy == Program.Downgrade.GRACE:
            downgrades = ngettext("downgrades after %(days)s day", "downgrades after %(days)s days",
                                  event.grace_days) % {"days": event.grace_days}
        else:
            downgrades = _("downgrades immediately")
        entries.append({"at": event.pgh_created_at, "what": what,
                        "detail": f"{event.name} · {metric_describe(event.metric)} · {downgrades}",
                        "context": event.pgh_context.metadata if event.pgh_context else {}})
    for event in TierEvent.objects.filter(program_id=program.pk).select_related("pgh_context").order_by("-pgh_created_at")[:limit]:
        if event.retired and event.pgh_label == "update":
            what = _("Tier removed")
        else:
            what = tier_labels.get(event.pgh_label, event.pgh_label)
        entries.append({"at": event.pgh_created_at, "what": what,
                        "detail": _("%(name)s: min %(min)s · %(benefits)s") % {
                            "name": event.name, "min": f"{event.min.normalize():f}",
                            "benefits": benefits_text(event.benefits)},
                        "context": event.pgh_context.metadata if event.pgh_context else {}})
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    entries = entries[:limit]
    actors_name(entries)
    return entries


def benefits_text(benefits: dict) -> str:
    parts = []
    if benefits.get("discount_percent") is not None:
        parts.append(_("%(percent)s%% discount") % {"percent": benefits["discount_percent"]})
    if benefits.get("free_shipping"):
        parts.append(_("free shipping"))
    if benefits.get("gift"):
        parts.append(_("gift: %(gift)s") % {"gift": benefits["gift"]})
    if benefits.get("text"):
        parts.append(benefits["text"])
    return ", ".join(parts) or _("no benefits")


def _running_job(program: Program) -> Job | None:
    return (
        Job.objects.filter(kind=RECOMPUTE_KIND, params__program_id=program.pk)
        .order_by("-created_at").first()
    )


@require_GET
@role_required(MARKETER)
def program_detail(request: HttpRequest, program_id: int) -> HttpResponse:
    program = get_object_or_404(Program, pk=program_id)
    summary = program_distribution(program)
    movements, moved_up, moved_down = _movements(program)
    tiers = list(program.tiers.active().order_by("min"))
    for tier in tiers:
        tier.members = summary["distribution"].get(tier.name, 0)
        tier.benefits_text = benefits_text(tier.benefits)
    job = None
    job_id = request.GET.get("job")
    if job_id and job_id.isdigit():
        job = Job.objects.filter(pk=int(job_id), kind=RECOMPUTE_KIND).first()
    if job is None:
        job = _running_job(program)
    recent = list(TierChange.objects.filter(program=program).select_related("contact", "user")[:15])
    for change in recent:
        change.reason_label = reason_label(change.reason)
    context = {
        "program": program,
        "metric": metric_describe(program.metric),
        "tiers": tiers,
        "summary": summary,
        "members": summary["total"] - summary["no_tier"],
        "distribution_figure": _distribution_figure(summary["distribution"], summary["no_tier"]),
        "movements_figure": movements,
        "moved_up": moved_up,
        "moved_down": moved_down,
        "moved_text": f"↑ {intcomma(moved_up)} / ↓ {intcomma(moved_down)}",
        "recent": recent,
        "audit": _audit(program),
        "job": job,
        "can_edit": _can_edit(request),
    }
    return render(request, "loyalty/program_detail.html", context)


@require_GET
@role_required(MARKETER)
def program_job(request: HttpRequest, program_id: int, job_id: int) -> HttpResponse:
    """The recompute job's progress; once done, its result (the numbers the preview promised)."""
    program = get_object_or_404(Program, pk=program_id)
    job = get_object_or_404(Job, pk=job_id, kind=RECOMPUTE_KIND, params__program_id=program.pk)
    context = {"program": program, "job": job,
               "poll_url": reverse("loyalty:program_job", kwargs={"program_id": program.pk, "job_id": job.pk})}
    response = render(request, "loyalty/program_detail.html#job", context)
    if job.is_finished and request.htmx:
        stop = HttpResponseStopPolling(response.content)
        # the page's figures were read before the recompute: reload them now that it is done
        stop["HX-Refresh"] = "true"
        return stop
    return response


# --- editor -------------------------------------------------------------------------------------
def _editor(request: HttpRequest, program: Program | None) -> HttpResponse:
    form = ProgramForm(request.POST or None, program=program)
    formset = tier_formset(request.POST or None, program=program)
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        creating = program is None
        program = program_save(program, tiers=formset.specs(), user=request.user, **form.program_fields())
        for warning in form.tag_warnings:
            messages.warning(request, warning)
        if not program.active:
            messages.success(request, _("Programme “%(name)s” saved. It is switched off, so its tiers stay frozen until "
                                        "you switch it on (which recomputes them).") % {"name": program.name})
            return redirect("loyalty:program_detail", program_id=program.pk)
        # stored with the tier changes and the job: written in the language of the person acting
        reason = (_("Programme created") if creating
                  else _("Thresholds changed by %(user)s") % {"user": request.user.get_username()})
        job = job_start(
            program_recompute_task, title=_("Recompute tiers of %(name)s") % {"name": program.name},
            params={"program_id": program.pk, "reason": reason}, user=request.user,
        )
        messages.success(request, _("Programme “%(name)s” saved; tiers are being recomputed.") % {"name": program.name})
        return redirect(f"{reverse('loyalty:program_detail', kwargs={'program_id': program.pk})}?job={job.pk}")
    context = {
        "program": program, "form": form, "formset": formset, "min_help": MIN_HELP,
        "whole_numbers": metric_is_whole(program.metric) if program else True,
    }
    return render(request, "loyalty/program_edit.html", context)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def program_create(request: HttpRequest) -> HttpResponse:
    return _editor(request, None)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def program_edit(request: HttpRequest, program_id: int) -> HttpResponse:
    return _editor(request, get_object_or_404(Program, pk=program_id))


@require_POST
@role_required(ADMIN)
def preview(request: HttpRequest) -> HttpResponse:
    """The editor's live impact preview (an HTMX fragment; nothing is written)."""
    program_id = request.POST.get("program_id", "")
    program = get_object_or_404(Program, pk=int(program_id)) if program_id.isdigit() else None
    form = ProgramForm(request.POST, program=program)
    formset = tier_formset(request.POST, program=program)
    context: dict = {"program": program}
    if form.is_valid() and formset.is_valid():
        context["tag_warnings"] = form.tag_warnings
        specs = formset.specs()
        result = tiers_preview(
            program, specs, metric=form.cleaned_data["metric"],
            downgrade_policy=form.cleaned_data["downgrade_policy"], grace_days=form.cleaned_data["grace_days"],
        )
        current = program_distribution(program) if program else None
        rows = []
        for name, count in result["distribution"].items():
            before = current["distribution"].get(name) if current else 0
            rows.append({"name": name, "count": count, "before": before or 0, "delta": count - (before or 0)})
        no_tier_before = current["no_tier"] if current else result["no_tier"] + result["up"]
        context.update({"result": result, "rows": rows, "no_tier_before": no_tier_before,
                        "no_tier_delta": result["no_tier"] - no_tier_before})
    else:
        problems = [f"{form.fields[field].label if field in form.fields else _('Programme')}: {error}"
                    for field, errors in form.errors.items() for error in errors]
        if formset.is_bound:
            for index, row_errors in enumerate(formset.errors):
                for field, errors in row_errors.items():
                    base = TierForm.base_fields.get(field)
                    label = str(base.label or field.replace("_", " ")) if base else _("tier")
                    problems += [_("Tier %(number)s, %(field)s: %(error)s") % {
                        "number": index + 1, "field": label.lower(), "error": error} for error in errors]
            if not problems:
                problems += [str(error) for error in formset.non_form_errors()]
        context["problems"] = problems or [_("Fix the highlighted fields to see the impact.")]
    return render(request, "loyalty/program_edit.html#preview", context)


@require_POST
@role_required(ADMIN)
def program_recompute(request: HttpRequest, program_id: int) -> HttpResponse:
    program = get_object_or_404(Program, pk=program_id)
    if not program.active:
        messages.error(request, _("“%(name)s” is switched off: its tiers are frozen. Switch it on to recompute.")
                       % {"name": program.name})
        return redirect("loyalty:program_detail", program_id=program.pk)
    job = job_start(
        program_recompute_task, title=_("Recompute tiers of %(name)s") % {"name": program.name},
        params={"program_id": program.pk,
                "reason": _("Recompute started by %(user)s") % {"user": request.user.get_username()}},
        user=request.user,
    )
    return redirect(f"{reverse('loyalty:program_detail', kwargs={'program_id': program.pk})}?job={job.pk}")


@require_POST
@role_required(ADMIN)
def program_switch_view(request: HttpRequest, program_id: int) -> HttpResponse:
    """Switch a programme off (tiers frozen) or on again (a recompute catches up at once)."""
    program = get_object_or_404(Program, pk=program_id)
    active = request.POST.get("active") == "1"
    if not program_switch(program, active=active, user=request.user):
        return redirect("loyalty:program_detail", program_id=program.pk)
    if not active:
        messages.success(request, _("“%(name)s” is switched off: tiers are frozen — no recompute, no changes by events, "
                                    "no grace-period drops — until you switch it on.") % {"name": program.name})
        return redirect("loyalty:program_detail", program_id=program.pk)
    job = job_start(
        program_recompute_task, title=_("Recompute tiers of %(name)s") % {"name": program.name},
        params={"program_id": program.pk, "reason": _("Switched on by %(user)s") % {"user": request.user.get_username()}},
        user=request.user,
    )
    messages.success(request, _("“%(name)s” is switched on; tiers are being recomputed.") % {"name": program.name})
    return redirect(f"{reverse('loyalty:program_detail', kwargs={'program_id': program.pk})}?job={job.pk}")


@require_POST
@role_required(ADMIN)
def program_delete_view(request: HttpRequest, program_id: int) -> HttpResponse:
    program = get_object_or_404(Program, pk=program_id)
    name = program.name
    program_delete(program, user=request.user)
    messages.success(request, _("Programme “%(name)s” deleted with its tiers and tier history.") % {"name": name})
    return redirect("loyalty:programs")


# --- contact card panel -------------------------------------------------------------------------
def _card_context(request: HttpRequest, contact: Contact) -> dict:
    program_list = list(Program.objects.prefetch_related("tiers").order_by("name"))
    rows = {row.program_id: row for row in ContactTier.objects.filter(contact=contact).select_related(
        "tier", "pending_tier", "pinned_tier", "pinned_by")}
    values = contact_metric_values(contact, program_list)
    cards = []
    today = timezone.localdate()
    for program in program_list:
        tiers = sorted((tier for tier in program.tiers.all() if not tier.retired), key=lambda tier: tier.min)
        row = rows.get(program.pk)
        value = values.get(program.pk)
        current = row.tier if row and row.tier_id else None
        next_tier = next((tier for tier in tiers if tier.min > value), None) if value is not None else None
        distance = (next_tier.min - value) if next_tier else None
        pinned = row is not None and row.pinned_tier_id is not None and row.pinned_until and row.pinned_until >= today
        cards.append({
            "program": program,
            "metric": metric_describe(program.metric),
            "distance_text": metric_distance(program.metric, distance) if distance is not None else "",
            "tier": current,
            "benefits": benefits_text(current.benefits) if current else "",
            "value": value,
            "next_tier": next_tier,
            "distance": distance,
            "pending": row if row is not None and row.downgrade_due_at else None,
            "pin": row if pinned else None,
            "pin_form": PinForm(program=program, initial={"until": today + timedelta(days=30),
                                                          "tier": current.pk if current else None},
                                prefix=f"pin{program.pk}"),
        })
    return {"contact": contact, "cards": cards, "can_edit": _can_edit(request)}


@require_GET
@role_required(MARKETER, SALES)
def card_panel(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    return render(request, "loyalty/card_panel.html", _card_context(request, contact))


@require_POST
@role_required(ADMIN)
def pin(request: HttpRequest, program_id: int, contact_id: int) -> HttpResponse:
    program = get_object_or_404(Program, pk=program_id)
    contact = get_object_or_404(Contact, pk=contact_id)
    form = PinForm(request.POST, program=program, prefix=f"pin{program.pk}")
    if form.is_valid():
        tier: Tier = form.cleaned_data["tier"]
        try:
            tier_pin(program, contact, tier, until=form.cleaned_data["until"], user=request.user,
                     note=form.cleaned_data.get("note", ""))
        except ProgramSwitchedOff as off:
            return toast(render(request, "loyalty/card_panel.html", _card_context(request, contact)), str(off),
                         level="error")
        context = _card_context(request, contact)
        return toast(render(request, "loyalty/card_panel.html", context), _("Tier pinned."))
    context = _card_context(request, contact)
    for card in context["cards"]:
        if card["program"].pk == program.pk:
            card["pin_form"] = form
            card["pin_open"] = True
    return render(request, "loyalty/card_panel.html", context)


@require_POST
@role_required(ADMIN)
def unpin(request: HttpRequest, program_id: int, contact_id: int) -> HttpResponse:
    program = get_object_or_404(Program, pk=program_id)
    contact = get_object_or_404(Contact, pk=contact_id)
    try:
        tier_unpin(program, contact, user=request.user)
    except ProgramSwitchedOff as off:
        return toast(render(request, "loyalty/card_panel.html", _card_context(request, contact)), str(off),
                     level="error")
    return toast(render(request, "loyalty/card_panel.html", _card_context(request, contact)), _("Pin removed."))

