"""Hot leads, temperature settings, the card's lead panel, funnels and the scoring model check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import connection, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import Context
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateformat import format as format_date
from django.utils.formats import localize
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.models import Contact, Note
from contacts.selectors import top_tags_by_contact
from core.htmx import render_page, toast, wants_fragment
from core.jobs import job_start
from core.paging import CappedPaginator
from core.roles import ADMIN, MARKETER, SALES, STAFF, has_role, role_required
from core.templatetags.mh_ui import tag_chip_html
from leads import charts
from leads.api import funnel_create
from leads.filters import HotLeadFilter, hot_leads_base
from leads.forms import BulkMoveForm, FunnelForm, LeadUpdateForm, StageMoveForm, ThresholdsForm
from leads.funnels import (
    cause_label,
    contact_stage_set,
    funnel_report_figures,
    funnel_report_read,
    report_range,
    transition_stays_recompute,
)
from leads.model_check import model_check_context
from leads.models import (
    ContactStage,
    Funnel,
    HotLead,
    Stage,
    StageTransition,
    TemperatureSettings,
    TemperatureSettingsEvent,
)
from leads.notifications import alert_settings_of, hot_visit, hot_visit_reset
from leads.services import (
    LeadError,
    lead_assign,
    lead_assignees,
    lead_can_edit,
    lead_claim,
    lead_is_manager,
    lead_release,
    lead_update,
)
from leads.tasks import bulk_contacts_queryset, funnel_bulk_move_task
from leads.temperature import temperature_changes_record, temperature_counts
from leads.why import ScoreCause, reason_label, score_causes

HOT_PAGE_SIZE = 25
NEW_COUNT_CAP = 999
COUNT_CAP = 10_000


def _base_query(request: HttpRequest, *drop: str) -> str:
    query = request.GET.copy()
    for name in ("page", *drop):
        query.pop(name, None)
    return query.urlencode()


# --- hot leads -----------------------------------------------------------------------------------
def _decorate_leads(leads: list[Contact], thresholds: TemperatureSettings) -> None:
    """Top tags, the latest note and why each is hot (its top ledger causes) for a page of leads,
    three queries whatever the page size, and what each row shows worked out once here. Rendering
    was most of the page's time: a template tag, filter, include or translation per cell, ~40 a row,
    was about half of the request's CPU (100k contacts: 140 → 70 ms); the template prints values."""
    ids = [lead.pk for lead in leads]
    tags_by_contact = top_tags_by_contact(ids)
    notes_by_contact: dict[int, Note] = {}
    if ids:
        latest_notes = (
            Note.objects.filter(contact_id__in=ids)
            .select_related("author")
            .only("contact_id", "text", "created_at", "author__username", "author__first_name", "author__last_name")
            .order_by("contact_id", "-created_at")
            .distinct("contact_id")
        )
        notes_by_contact = {note.contact_id: note for note in latest_notes}
    causes = score_causes(ids)
    # the include's markup (with its trailing newline), rendered once per temperature and page
    badges = {temperature: render_to_string("includes/temperature_badge.html", {"temperature": temperature})
              for temperature in {thresholds.temperature_of(lead.score) for lead in leads}}
    # per page, so per language: scores, points and counts repeat, and each intcomma() looks up
    # the locale's number format again
    grouped = lru_cache(maxsize=None)(intcomma)
    card_url, assign_url, release_url, claim_url, update_url = (_id_url(name) for name in (
        "contacts:card", "leads:lead_assign", "leads:lead_release", "leads:lead_claim", "leads:lead_update"))
    last_activity = _("Last activity %(at)s")
    held_by = _("Held by %(name)s")
    assign_label = _("Held by: assign %(email)s to")
    status_label = _("Status of %(email)s")
    note_label = _("Note on %(email)s")
    for lead in leads:
        lead.card_url = card_url(lead.pk)
        lead.display_name = lead.full_name or lead.email
        lead.score_display = grouped(lead.score)
        lead.temperature = thresholds.temperature_of(lead.score)
        lead.temperature_badge = badges[lead.temperature]
        lead.points_7d_display = grouped(lead.points_7d)
        activity = lead.last_activity_at
        lead.activity_title = _blocktranslate(last_activity, at=format_date(localtime(activity), "j M Y, H:i")) if activity else ""
        lead.why = [_cause_row(cause, grouped) for cause in causes.get(lead.pk, [])]
        lead.top_tags = tags_by_contact.get(lead.pk, [])
        lead.tag_chips = mark_safe("".join(  # the include's markup, one chip per tag
            tag_chip_html(Context({"name": tag["name"], "score": tag["score"], "colour": tag["colour"], "size": "sm",
                                   "strongest": index == 0})) + "\n"
            for index, tag in enumerate(lead.top_tags)))
        lead.holder_name = (lead.owner.get_full_name() or lead.owner.username) if lead.owner else ""
        lead.holder_title = _blocktranslate(held_by, name=lead.holder_name)
        lead.assign_url = assign_url(lead.pk)
        lead.release_url = release_url(lead.pk)
        lead.claim_url = claim_url(lead.pk)
        lead.update_url = update_url(lead.pk)
        lead.assign_label = _blocktranslate(assign_label, email=lead.email)
        lead.status_label = _blocktranslate(status_label, email=lead.email)
        lead.note_label = _blocktranslate(note_label, email=lead.email)
        lead.lost_label = (_blocktranslate(_("Lost: %(reason)s"), reason=lead.lead_status_reason)
                           if lead.lead_status == "lost" and lead.lead_status_reason else "")
        note = lead.latest_note = notes_by_contact.get(lead.pk)
        if note is not None:
            author = note.author
            note.author_name = (author.get_full_name() or author.username if author else "") or _("someone")
            note.created_title = format_date(localtime(note.created_at), "j M Y, H:i")


def _cause_row(cause: ScoreCause, grouped: Callable[[int], str]) -> dict[str, str]:
    """A "why hot" cause as the row shows it: its name, its points and the tooltip."""
    label, points = cause.label, grouped(cause.points)
    title = ngettext("%(label)s: +%(points)s point (%(times)s×)", "%(label)s: +%(points)s points (%(times)s×)",
                     cause.points)
    return {"label": label, "points": points,
            "title": _blocktranslate(title, label=label, points=points, times=grouped(cause.times))}


_ID_SLOT = 2_147_483_647


def _id_url(name: str) -> Callable[[int], str]:
    """``reverse(name, args=[contact_id])`` for a page of ids: reversed once, each id put in the
    placeholder's place (five URLs a row, 125 reverse() calls a page otherwise)."""
    head, tail = reverse(name, args=[_ID_SLOT]).rsplit(str(_ID_SLOT), 1)
    return lambda contact_id: f"{head}{contact_id}{tail}"


def _blocktranslate(text: str, **values: Any) -> SafeString:
    """``text % values`` as ``{% blocktranslate %}`` renders it: the (translated) text as is, the
    values localized and escaped."""
    return mark_safe(text % {name: conditional_escape(localize(value)) for name, value in values.items()})


def _row_labels() -> dict[str, SafeString]:
    """The words every row repeats, translated once per page; safe, as ``{% translate %}`` of a
    literal renders them ("Status & note" is not escaped)."""
    labels = {
        "new": _("New"), "new_title": _("Became hot since your last visit"), "score": _("Score"),
        "activity": _("Activity"), "points_7d": _("Points gained in the last 7 days"), "in_7_days": _("in 7 days"),
        "never_active": _("never active"), "why": _("Why hot"), "no_points": _("no points yet"),
        "top_tags": _("Top tags"), "held_by": _("Held by"), "unassigned": _("Unassigned"), "you": _("You"),
        "release": _("Release"), "claim": _("Claim"), "status_note": _("Status & note"), "save": _("Save"),
        "note_placeholder": _("Note (reason if lost)"), "read_only": _("Read-only: a colleague holds this lead."),
    }
    return {name: mark_safe(text) for name, text in labels.items()}


def _row_icons() -> dict[str, str]:
    """The includes' markup, rendered once per page rather than in every row."""
    return {name: render_to_string("includes/icon.html", {"name": name, **extra})
            for name, extra in (("user", {}), ("lock", {}), ("note", {"size": 12}))}


def _option_tags(options: list[tuple[Any, Any]], selected: Any) -> SafeString:
    """``<option value="…" selected>…</option>`` for each (value, label), as the row's loops rendered them."""
    return mark_safe("".join(
        f'<option value="{conditional_escape(localize(value))}" {"selected" if value == selected else ""}>'
        f"{conditional_escape(localize(label))}</option>"
        for value, label in options))


class AssigneeOption(NamedTuple):
    pk: int
    label: str


def _assignee_options(user: Any) -> list[AssigneeOption]:
    """The owner select's options, labelled once per page rather than in every row's loop (a
    25-row page rendered them 25 times: a fifth of its rendering time)."""
    return [AssigneeOption(person.pk, _("You (%(name)s)") % {"name": person.get_full_name() or person.username}
                           if person.pk == user.pk else person.get_full_name() or person.username)
            for person in lead_assignees()]


def _decorate_for_viewer(leads: list[Contact], user: Any, *, is_manager: bool, form_data: Any = None) -> None:
    """The rows' owner and status selects: each set of options rendered once per selected value,
    not looped over in every row."""
    assignees = [(person.pk, person.label) for person in _assignee_options(user)] if is_manager else []
    owner_options: dict[int | None, SafeString] = {}
    status_options: dict[str | None, SafeString] = {}
    for lead in leads:
        if is_manager:
            if lead.owner_id not in owner_options:
                owner_options[lead.owner_id] = _option_tags(assignees, lead.owner_id)
            lead.owner_options = owner_options[lead.owner_id]
        # an invalid form is shown again with what was submitted
        selected = form_data.get("status") if form_data else lead.lead_status
        if selected not in status_options:
            status_options[selected] = _option_tags(Contact.LeadStatus.choices, selected)
        lead.status_options = status_options[selected]


def _row_context(request: HttpRequest, lead: Contact, thresholds: TemperatureSettings, **extra) -> dict:
    lead.can_edit = lead_can_edit(request.user, lead)
    is_manager = lead_is_manager(request.user)
    _decorate_for_viewer([lead], request.user, is_manager=is_manager, form_data=extra.get("form_data"))
    return {
        "lead": lead,
        "is_manager": is_manager,
        "row_labels": _row_labels(),
        "icons": _row_icons(),
        **extra,
    }


@require_GET
@role_required(SALES, MARKETER)
def hot(request: HttpRequest) -> HttpResponse:
    thresholds = TemperatureSettings.current()
    lead_filter = HotLeadFilter(request.GET, queryset=hot_leads_base(), user=request.user, thresholds=thresholds)
    queryset = lead_filter.leads() if lead_filter.is_valid() else hot_leads_base().none()
    paginator = CappedPaginator(queryset, HOT_PAGE_SIZE, count_cap=COUNT_CAP)
    page = paginator.get_page(request.GET.get("page"))
    leads = list(page.object_list)
    _decorate_leads(leads, thresholds)
    is_manager = lead_is_manager(request.user)
    for lead in leads:
        lead.can_edit = is_manager or lead.owner_id in (None, request.user.pk)
    _decorate_for_viewer(leads, request.user, is_manager=is_manager)
    new_since, new_count = hot_new_since(request, leads, thresholds)
    context = {
        "new_since": new_since,
        "new_count": new_count,
        "filter": lead_filter,
        "form": lead_filter.form,
        "page_obj": page,
        "total": paginator.count,
        "total_capped": paginator.is_capped,
        "leads": leads,
        "thresholds": thresholds,
        "base_query": _base_query(request),
        "is_manager": is_manager,
        "row_labels": _row_labels(),
        "icons": _row_icons(),
    }
    return render_page(request, "leads/hot.html", context, partial="results")


def hot_new_since(request: HttpRequest, leads: list[Contact], thresholds: TemperatureSettings) -> tuple:
    """Mark ``lead.is_new`` on the page's leads that became hot since the user's previous visit,
    and count all such hot leads. Opening the page records a visit; filtering and paging (htmx
    fragments) only read it."""
    since = alert_settings_of(request.user).hot_previous_visit_at if wants_fragment(request) else hot_visit(request.user)
    if since is None:
        return None, 0
    new_ids = set(
        HotLead.objects.filter(contact_id__in=[lead.pk for lead in leads], became_hot_at__gt=since)
        .values_list("contact_id", flat=True)
    )
    for lead in leads:
        lead.is_new = lead.pk in new_ids and lead.score >= thresholds.hot
    new_count = (
        HotLead.objects.filter(became_hot_at__gt=since, contact__score__gte=thresholds.hot)
        .order_by()[: NEW_COUNT_CAP + 1].count()
    )
    return since, new_count


@require_POST
@role_required(SALES, MARKETER)
def hot_seen(request: HttpRequest) -> HttpResponse:
    """"Mark all as seen": nothing on the page is new any more."""
    hot_visit_reset(request.user)
    return redirect("leads:hot")


def _lead_for_row(contact_id: int) -> Contact:
    return get_object_or_404(hot_leads_base(), pk=contact_id)


def _render_row(request: HttpRequest, contact_id: int, **extra) -> HttpResponse:
    thresholds = TemperatureSettings.current()
    lead = _lead_for_row(contact_id)
    _decorate_leads([lead], thresholds)
    response = render(request, "leads/hot.html#lead_row", _row_context(request, lead, thresholds, **extra))
    return response


@require_POST
@role_required(SALES, MARKETER)
def lead_claim_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    try:
        lead_claim(contact=contact, user=request.user)
    except LeadError as error:
        return toast(_render_row(request, contact_id), error.message, "error")
    return toast(_render_row(request, contact_id), _("You now hold %(email)s.") % {"email": contact.email})


@require_POST
@role_required(SALES, MARKETER)
def lead_release_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    try:
        lead_release(contact=contact, user=request.user)
    except LeadError as error:
        return toast(_render_row(request, contact_id), error.message, "error")
    return toast(_render_row(request, contact_id), _("Released %(email)s.") % {"email": contact.email})


@require_POST
@role_required(MARKETER)
def lead_assign_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    raw = (request.POST.get("owner") or "").strip()
    if raw and not raw.isdigit():
        return toast(_render_row(request, contact_id), _("Choose a user from the list."), "error")
    try:
        lead_assign(contact=contact, owner_id=int(raw) if raw else None, user=request.user)
    except LeadError as error:
        return toast(_render_row(request, contact_id), error.message, "error")
    if contact.owner is None:
        message = _("%(email)s is now held by nobody.") % {"email": contact.email}
    else:
        message = _("%(email)s is now held by %(holder)s.") % {
            "email": contact.email, "holder": contact.owner.get_full_name() or contact.owner.username}
    return toast(_render_row(request, contact_id), message)


@require_POST
@role_required(SALES, MARKETER)
def lead_update_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Status and/or a note, from the hot-leads row (or the card panel with ``?panel=1``)."""
    contact = get_object_or_404(Contact.objects.select_related("owner"), pk=contact_id)
    form = LeadUpdateForm(request.POST)
    error: LeadError | None = None
    result = None
    if not form.is_valid():
        field, messages_ = next(iter(form.errors.items()))
        error = LeadError(" ".join(messages_), field)
    else:
        try:
            result = lead_update(
                contact=contact, user=request.user, status=form.cleaned_data["status"],
                note_text=form.cleaned_data["note"],
            )
        except LeadError as exc:
            error = exc
    if request.GET.get("panel"):
        response = card_panel_response(request, contact_id, lead_error=error, lead_form_data=request.POST if error else None)
    else:
        extra = {"error": error, "form_data": request.POST} if error else {}
        response = _render_row(request, contact_id, **extra)
    if error:
        return response  # the message is shown beside the field; status 200 so htmx swaps it
    changed = bool(result and result.changed_status)
    noted = bool(result and result.note)
    status = str(contact.get_lead_status_display()).lower()
    if changed and noted:
        message = _("%(email)s: marked %(status)s and note added.") % {"email": contact.email, "status": status}
    elif changed:
        message = _("%(email)s: marked %(status)s.") % {"email": contact.email, "status": status}
    else:
        message = _("%(email)s: note added.") % {"email": contact.email}
    return toast(response, message)


# --- temperature settings ------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def settings_view(request: HttpRequest) -> HttpResponse:
    thresholds = TemperatureSettings.current()
    if request.method == "POST":
        form = ThresholdsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            with transaction.atomic():
                old = TemperatureSettings.objects.select_for_update().values_list("warm", "hot").get(pk=thresholds.pk)
                temperature_changes_record(old=old, new=(data["warm"], data["hot"]))
                TemperatureSettings.objects.filter(pk=thresholds.pk).update(
                    warm=data["warm"], hot=data["hot"], decay_enabled=data["decay_enabled"],
                    decay_half_life_days=data["decay_half_life_days"], tag_decay_enabled=data["tag_decay_enabled"],
                    updated_by=request.user, updated_at=timezone.now(),
                )
            messages.success(request, _("Saved: warm from %(warm)s, hot from %(hot)s.") % {"warm": data["warm"], "hot": data["hot"]})
            return redirect("leads:settings")
    else:
        form = ThresholdsForm(initial=ThresholdsForm.initial_from(thresholds))
    warm = _int_or(form["warm"].value(), thresholds.warm)
    hot = _int_or(form["hot"].value(), thresholds.hot)
    context = {
        "form": form,
        "thresholds": thresholds,
        "preview": _preview_context(warm, hot, thresholds),
        "history": _threshold_history(),
    }
    return render(request, "leads/settings.html", context)


def _int_or(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _preview_context(warm: int, hot: int, thresholds: TemperatureSettings, error: str = "") -> dict:
    if error:
        return {"error": error}
    counts = temperature_counts(warm, hot)
    current = (
        counts if (warm, hot) == (thresholds.warm, thresholds.hot) else temperature_counts(thresholds.warm, thresholds.hot)
    )
    total = sum(counts.values()) or 1
    rows = []
    for name in ("cold", "warm", "hot"):
        rows.append(
            {
                "name": name,
                "count": counts[name],
                "current": current[name],
                "delta": counts[name] - current[name],
                "percent": round(100 * counts[name] / total, 1),
            }
        )
    return {"rows": rows, "warm": warm, "hot": hot, "changed": (warm, hot) != (thresholds.warm, thresholds.hot)}


def _threshold_history() -> list:
    return list(TemperatureSettingsEvent.objects.select_related("updated_by").order_by("-pgh_created_at")[:8])


@require_GET
@role_required(ADMIN)
def settings_preview(request: HttpRequest) -> HttpResponse:
    """Live counts for the thresholds being typed, before saving (one COUNT … FILTER scan)."""
    thresholds = TemperatureSettings.current()
    form = ThresholdsForm(request.GET or None, initial=ThresholdsForm.initial_from(thresholds))
    error = ""
    warm = hot = None
    if form.is_bound:
        form.is_valid()
        for name in ("warm", "hot"):
            if name in form.errors:
                error = " ".join(form.errors[name])
                break
        warm, hot = form.cleaned_data.get("warm"), form.cleaned_data.get("hot")
    if warm is None or hot is None:
        warm, hot = thresholds.warm, thresholds.hot
    preview = _preview_context(warm, hot, thresholds, error=error)
    return render(request, "leads/settings.html#preview", {"preview": preview})


# --- the card's lead panel -----------------------------------------------------------------------
_PANEL_STATS_SQL = """
SELECT coalesce(sum(delta) FILTER (WHERE created_at >= %(d7)s), 0),
       coalesce(sum(delta) FILTER (WHERE created_at >= %(d30)s), 0),
       coalesce(sum(delta) FILTER (WHERE created_at >= %(d14)s AND created_at < %(d7)s), 0),
       count(*)
FROM leads_scorechange WHERE contact_id = %(contact_id)s
"""
_PANEL_SERIES_SQL = """
SELECT day, sum(points) OVER (ORDER BY day) AS score
FROM (
    SELECT date_trunc('day', created_at AT TIME ZONE %(tz)s)::date AS day, sum(delta) AS points
    FROM leads_scorechange WHERE contact_id = %(contact_id)s GROUP BY 1
) per_day
ORDER BY day
"""
_PANEL_WHY_SQL = """
SELECT s.rule_id, r.name, max(s.reason) FILTER (WHERE s.rule_id IS NULL) AS reason,
       sum(s.delta) AS points, count(*) AS times
FROM leads_scorechange s LEFT JOIN automation_rule r ON r.id = s.rule_id
WHERE s.contact_id = %(contact_id)s
GROUP BY s.rule_id, r.name, CASE WHEN s.rule_id IS NULL THEN s.reason END
ORDER BY sum(s.delta) DESC
LIMIT 5
"""


def _panel_context(request: HttpRequest, contact: Contact) -> dict:
    thresholds = TemperatureSettings.current()
    now = timezone.now()
    params = {
        "contact_id": contact.pk,
        "d7": now - timedelta(days=7),
        "d14": now - timedelta(days=14),
        "d30": now - timedelta(days=30),
        "tz": timezone.get_current_timezone_name(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_PANEL_STATS_SQL, params)
        points_7d, points_30d, points_prev_7d, ledger_rows = cursor.fetchone()
        cursor.execute(_PANEL_SERIES_SQL, params)
        series = cursor.fetchall()
        cursor.execute(_PANEL_WHY_SQL, params)
        why = [
            {"rule_id": rule_id, "name": name or reason_label(reason) or (_("Manual") if rule_id is None else _("Deleted rule")),
             "points": points, "times": times}
            for rule_id, name, reason, points, times in cursor.fetchall()
        ]
    trend = "up" if points_7d > points_prev_7d else "down" if points_7d < points_prev_7d else "flat"
    funnels = list(Funnel.objects.prefetch_related("stages").order_by("name"))
    current = {
        cs.funnel_id: cs
        for cs in ContactStage.objects.filter(contact=contact).select_related("stage")
    }
    funnel_rows = [{"funnel": funnel, "current": current.get(funnel.pk)} for funnel in funnels]
    moves = list(
        StageTransition.objects.filter(contact=contact)
        .select_related("funnel", "from_stage", "to_stage", "user", "rule")
        .order_by("-created_at", "-id")[:5]
    )
    for move in moves:
        move.backwards = move.from_stage is not None and move.to_stage.position < move.from_stage.position
        move.cause_label = cause_label(move.cause)
    can_move = lead_is_manager(request.user) or (has_role(request.user, SALES) and contact.owner_id == request.user.pk)
    return {
        "contact": contact,
        "thresholds": thresholds,
        "temperature": thresholds.temperature_of(contact.score),
        "points_7d": points_7d,
        "points_30d": points_30d,
        "points_prev_7d": points_prev_7d,
        "points_prev_7d_text": f"+{intcomma(points_prev_7d)}" if points_prev_7d > 0 else intcomma(points_prev_7d),
        "trend": trend,
        "ledger_rows": ledger_rows,
        "score_figure": charts.score_line(series, contact.score) if series else None,
        "chart_id": f"score-line-{contact.pk}",
        "why": why,
        "funnel_rows": funnel_rows,
        "moves": moves,
        "can_move": can_move,
        "can_edit_lead": lead_can_edit(request.user, contact) and has_role(request.user, SALES, MARKETER),
        "statuses": Contact.LeadStatus.choices,
    }


def card_panel_response(request: HttpRequest, contact_id: int, **extra) -> HttpResponse:
    contact = get_object_or_404(Contact.objects.select_related("owner"), pk=contact_id)
    context = _panel_context(request, contact)
    context.update(extra)
    return render(request, "leads/card_panel.html", context)


@require_GET
@role_required(*STAFF)
def card_panel(request: HttpRequest, contact_id: int) -> HttpResponse:
    return card_panel_response(request, contact_id)


@require_POST
@role_required(SALES, MARKETER)
def card_stage(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Move the contact in one funnel from the card panel. Sales only for leads they hold."""
    contact = get_object_or_404(Contact, pk=contact_id)
    if not (lead_is_manager(request.user) or contact.owner_id == request.user.pk):
        return toast(card_panel_response(request, contact_id), _("Claim this lead first to move it through funnels."), "error")
    form = StageMoveForm(request.POST)
    if not form.is_valid():
        return toast(card_panel_response(request, contact_id), _("Choose a stage."), "error")
    stage = form.cleaned_data["stage"]
    moved = contact_stage_set(contact_id=contact.pk, stage=stage, cause="manual", user_id=request.user.pk)
    if moved:
        message = _("Moved to %(funnel)s → %(stage)s.") % {"funnel": stage.funnel.name, "stage": stage.name}
    else:
        message = _("Already in %(stage)s.") % {"stage": stage.name}
    return toast(card_panel_response(request, contact_id), message, "success" if moved else "info")


# --- funnels -------------------------------------------------------------------------------------
def _funnel_counts() -> dict[int, int]:
    return dict(ContactStage.objects.values_list("funnel_id").annotate(n=Count("*")).order_by())


@require_http_methods(["GET", "POST"])
@role_required(*STAFF)
def funnels(request: HttpRequest) -> HttpResponse:
    can_edit = has_role(request.user, MARKETER)
    form = FunnelForm(request.POST or None) if can_edit else None
    if request.method == "POST":
        if not can_edit:
            return render(request, "403.html", status=403)
        if form.is_valid():
            funnel = funnel_create(
                name=form.cleaned_data["name"], stages=form.cleaned_data["stage_list"],
                description=form.cleaned_data["description"],
            )
            messages.success(request, _("Funnel “%(name)s” created.") % {"name": funnel.name})
            return redirect("leads:funnel_detail", funnel_id=funnel.pk)
    funnel_list = list(Funnel.objects.prefetch_related("stages").order_by("name"))
    counts = _funnel_counts()
    for funnel in funnel_list:
        funnel.contact_count = counts.get(funnel.pk, 0)
    return render(request, "leads/funnels.html", {"funnels": funnel_list, "form": form, "can_edit": can_edit})


def _parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@require_GET
@role_required(*STAFF)
def funnel_detail(request: HttpRequest, funnel_id: int) -> HttpResponse:
    """The funnel report: counts, entries, conversion and time in stage, for a date range."""
    funnel = get_object_or_404(Funnel.objects.prefetch_related("stages"), pk=funnel_id)
    today = timezone.localdate()
    preset = request.GET.get("range", "")
    start = _parse_day(request.GET.get("start"))
    end = _parse_day(request.GET.get("end"))
    error = ""
    if preset in ("7", "30", "90", "365"):
        start, end = today - timedelta(days=int(preset) - 1), today
    if (request.GET.get("start") and start is None) or (request.GET.get("end") and end is None):
        error = _("Dates must look like 2025-01-31.")
    elif start and end and start > end:
        error = _("The end date is before the start date.")
        start = end = None
    # wide ranges come from a snapshot the worker keeps (leads.funnels), short custom ones live
    shown = funnel_report_read(funnel, report_range(preset=preset, start=start, end=end, today=today))
    stages = shown["stages"]
    for row in stages or ():
        row["conversion_percent"] = (
            round(100 * row["conversion_to_next"], 1) if row["conversion_to_next"] is not None else None
        )
    figure = shown["figures"].get(translation.get_language()) if stages else None
    if stages and figure is None:
        figure = funnel_report_figures(stages, [stage.pk for stage in funnel.stages.all()])
    computed_at = shown["computed_at"]
    recent = list(
        StageTransition.objects.filter(funnel=funnel)
        .select_related("contact", "from_stage", "to_stage", "user", "rule")
        .order_by("-created_at", "-id")[:15]
    )
    for move in recent:
        move.backwards = move.from_stage is not None and move.to_stage.position < move.from_stage.position
        move.cause_label = cause_label(move.cause)
    context = {
        "funnel": funnel,
        "stages": stages,
        "figure": figure,
        "start": shown["start"],
        "end": shown["end"],
        "computed_at": computed_at,
        # a snapshot from an earlier day names its day
        "computed_today": computed_at is not None and timezone.localdate(computed_at) == today,
        "stale": shown["stale"],
        "preset": preset,
        "error": error,
        "recent": recent,
        "can_edit": has_role(request.user, MARKETER),
    }
    return render_page(request, "leads/funnel_detail.html", context, partial="report")


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def funnel_edit(request: HttpRequest, funnel_id: int) -> HttpResponse:
    funnel = get_object_or_404(Funnel.objects.prefetch_related("stages"), pk=funnel_id)
    existing = list(funnel.stages.all())
    initial = {"name": funnel.name, "description": funnel.description, "stages": "\n".join(s.name for s in existing)}
    form = FunnelForm(request.POST or None, initial=initial, funnel=funnel)
    if request.method == "POST" and form.is_valid():
        wanted = form.cleaned_data["stage_list"]
        by_key = {stage.name.lower(): stage for stage in existing}
        removed = [stage for stage in existing if stage.name.lower() not in {name.lower() for name in wanted}]
        held = dict(
            ContactStage.objects.filter(stage__in=removed).values_list("stage_id").annotate(n=Count("*")).order_by()
        )
        blocked = [
            ngettext("%(stage)s (%(count)s contact)", "%(stage)s (%(count)s contacts)", held[stage.pk])
            % {"stage": stage.name, "count": intcomma(held[stage.pk])}
            for stage in removed if held.get(stage.pk)
        ]
        if blocked:
            form.add_error("stages", _("These stages still hold contacts; move them first: %(stages)s")
                           % {"stages": ", ".join(blocked)})
        else:
            with transaction.atomic():
                funnel.name = form.cleaned_data["name"].strip()
                funnel.description = form.cleaned_data["description"].strip()
                funnel.save(update_fields=["name", "description"])
                # the moves into and out of removed stages go with them: the stays around them
                # now end at other moves
                touched = list(
                    StageTransition.objects.filter(Q(to_stage__in=removed) | Q(from_stage__in=removed))
                    .values_list("contact_id", flat=True).distinct().order_by()
                )
                Stage.objects.filter(pk__in=[stage.pk for stage in removed]).delete()
                if touched:
                    with connection.cursor() as cursor:
                        transition_stays_recompute(cursor, contact_ids=touched, funnel_id=funnel.pk)
                # Park positions out of the way first: (funnel, position) is unique.
                for offset, stage in enumerate(Stage.objects.filter(funnel=funnel).order_by("pk")):
                    Stage.objects.filter(pk=stage.pk).update(position=10_000 + offset)
                for position, name in enumerate(wanted):
                    stage = by_key.get(name.lower())
                    if stage is not None:
                        Stage.objects.filter(pk=stage.pk).update(position=position, name=name)
                    else:
                        Stage.objects.create(funnel=funnel, name=name, position=position)
            messages.success(request, _("Funnel “%(name)s” saved.") % {"name": funnel.name})
            return redirect("leads:funnel_detail", funnel_id=funnel.pk)
    return render(request, "leads/funnel_edit.html", {"funnel": funnel, "form": form})


@require_POST
@role_required(MARKETER)
def funnel_delete(request: HttpRequest, funnel_id: int) -> HttpResponse:
    funnel = get_object_or_404(Funnel, pk=funnel_id)
    name = funnel.name
    funnel.delete()
    messages.success(request, _("Funnel “%(name)s” deleted with its history.") % {"name": name})
    return redirect("leads:funnels")


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def funnel_bulk_move(request: HttpRequest) -> HttpResponse:
    """Move a selection (``ids``) or everything a contact-list filter matches (``query``) to a
    stage, as a background job. Opened from the contact list with its querystring."""

    data = request.POST if request.method == "POST" else None
    initial = {
        "ids": ",".join(request.GET.getlist("ids")),
        "query": request.GET.get("query", "") or _base_query(request, "ids", "query", "stage"),
    }
    if request.GET.get("stage", "").isdigit():
        initial["stage"] = int(request.GET["stage"])
    form = BulkMoveForm(data, initial=initial)
    if request.method == "POST" and form.is_valid():
        stage = form.cleaned_data["stage"]
        ids = form.cleaned_data["ids"]
        query = (form.cleaned_data["query"] or "").strip()
        target = {"funnel": stage.funnel.name, "stage": stage.name}
        if ids:
            # the title is stored with the job: made in the language of the person who starts it
            title = ngettext("Move %(count)s selected contact to %(funnel)s → %(stage)s",
                             "Move %(count)s selected contacts to %(funnel)s → %(stage)s", len(ids)) % {
                "count": intcomma(len(ids)), **target}
        else:
            title = _("Move contacts matching the filter to %(funnel)s → %(stage)s") % target
        job = job_start(
            funnel_bulk_move_task,
            title=title,
            params={"stage_id": stage.pk, "ids": ",".join(map(str, ids)), "query": "" if ids else query},
            user=request.user,
            total=len(ids) or None,
        )
        if wants_fragment(request):
            return render(request, "leads/bulk_move.html#job", {"job": job})
        return redirect("jobs:detail", job_id=job.pk)
    matched = None
    if not form.is_bound:
        matched = _bulk_count(initial["ids"], initial["query"])
    return render(request, "leads/bulk_move.html", {"form": form, "matched": matched, "query": initial["query"]})


def _bulk_count(ids: str, query: str) -> int | None:
    if ids:
        return len([part for part in ids.split(",") if part.strip()])
    if not query:
        return None
    return bulk_contacts_queryset(query).count()


# --- scoring model check -------------------------------------------------------------------------
@require_GET
@role_required(MARKETER)
def model_check(request: HttpRequest) -> HttpResponse:
    return render(request, "leads/model_check.html", model_check_context())
