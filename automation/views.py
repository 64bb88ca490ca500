"""Automation pages: rules (list, editor, preview, run on the past), segmentation matrices, ad-hoc
actions, event processing (failed events, retry) and background jobs."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from automation import history, services
from automation.adhoc import adhoc_start, adhoc_target_count
from automation.engine import events_retry_failed, events_status
from automation.forms import (
    ACTION_CHOICES,
    OP_CHOICES,
    AdhocForm,
    EditorRow,
    MatrixForm,
    RuleEditor,
    RunForm,
    action_choices,
    default_since,
    extra_actions_context,
)
from automation.models import PendingEvent, Rule, SegmentationMatrix
from automation.rules import RuleError, describe_action, rule_save
from automation.starter import install_starter_rules
from contacts.models import EVENT_TYPE_CHOICES
from core.htmx import redirect_page, render_page, toast, wants_fragment
from core.roles import ADMIN, MARKETER, role_required
from leads.models import Funnel

RULE_ROLES = (MARKETER, ADMIN)


def _funnel_choices() -> list[dict]:
    return [
        {"name": funnel.name, "stages": [stage.name for stage in funnel.stages.all()]}
        for funnel in Funnel.objects.prefetch_related("stages").order_by("name")
    ]


def _editor_context(editor: RuleEditor, rule: Rule | None) -> dict:
    return {
        "editor": editor,
        "rule": rule,
        "event_types": EVENT_TYPE_CHOICES,
        "op_choices": OP_CHOICES,
        "action_choices": action_choices(),
        "extra_actions": extra_actions_context(),
        "funnels": _funnel_choices(),
        "run_form": RunForm(initial={"since": default_since()}),
        "history": history.object_history(history.RULE, rule.pk) if rule is not None and rule.pk else [],
    }


# --- rules ----------------------------------------------------------------------------------------
@require_GET
@role_required(*RULE_ROLES)
def rules(request: HttpRequest) -> HttpResponse:
    rule_list = list(Rule.objects.order_by("-active", "name"))
    counts = services.rule_fired_counts([rule.pk for rule in rule_list])
    for rule in rule_list:
        rule.fired = counts.get(rule.pk, {"days7": 0, "days30": 0})
    return render(request, "automation/rules.html", {"rules": rule_list, "status": events_status()})


@require_POST
@role_required(*RULE_ROLES)
def rule_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_id)
    try:
        rule = services.rule_set_active(rule, not rule.active)
    except RuleError as exc:
        response = render(request, "automation/rules.html#rule_row", {"rule": rule})
        return toast(response, str(exc), "error")
    rule.fired = services.rule_fired_counts([rule.pk])[rule.pk]
    if not wants_fragment(request):
        messages.success(request, (_("Rule “%(name)s” is on.") if rule.active else _("Rule “%(name)s” is off."))
                         % {"name": rule.name})
        return redirect("automation:rules")
    response = render(request, "automation/rules.html#rule_row", {"rule": rule})
    message = (
        _("“%(name)s” is on: it applies to events accepted from now on.")
        if rule.active else _("“%(name)s” is off.")
    ) % {"name": rule.name}
    return toast(response, message)


@require_POST
@role_required(*RULE_ROLES)
def rules_install_starter(request: HttpRequest) -> HttpResponse:
    before = Rule.objects.count()
    installed = install_starter_rules()
    created = Rule.objects.count() - before
    if created:
        messages.success(request, ngettext("Installed %(count)s starter rule.", "Installed %(count)s starter rules.",
                                           created) % {"count": created})
    else:
        messages.info(request, ngettext("The %(count)s starter rule is installed already.",
                                        "The %(count)s starter rules are installed already.",
                                        len(installed)) % {"count": len(installed)})
    return redirect("automation:rules")


@require_http_methods(["GET", "POST"])
@role_required(*RULE_ROLES)
def rule_new(request: HttpRequest) -> HttpResponse:
    return _rule_editor(request, None)


@require_http_methods(["GET", "POST"])
@role_required(*RULE_ROLES)
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    return _rule_editor(request, get_object_or_404(Rule, pk=rule_id))


def _rule_editor(request: HttpRequest, rule: Rule | None) -> HttpResponse:
    if request.method == "GET":
        editor = RuleEditor.for_rule(rule)
        return render(request, "automation/rule_edit.html", _editor_context(editor, rule))
    editor = RuleEditor.from_post(request.POST)
    if editor.is_valid:
        try:
            with transaction.atomic():
                saved = rule_save(rule or Rule(), editor.cleaned, user=request.user)
        except RuleError as exc:
            editor.add_errors(exc.errors)
        else:
            messages.success(request, _("Rule “%(name)s” saved. %(summary)s") % {"name": saved.name,
                                                                                   "summary": saved.summary})
            target = reverse("automation:rule_edit", kwargs={"rule_id": saved.pk})
            return redirect_page(request, target)
    # invalid: the whole editor again, with the errors in place (status 200 so htmx swaps it)
    return render(request, "automation/rule_edit.html", _editor_context(editor, rule))


@require_POST
@role_required(*RULE_ROLES)
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_id)
    name = rule.name
    rule.delete()
    messages.success(request, _("Rule “%(name)s” deleted. What it already did (tags, points) stays.") % {"name": name})
    return redirect("automation:rules")


@require_POST
@role_required(*RULE_ROLES)
def rule_summary(request: HttpRequest) -> HttpResponse:
    """The plain-language summary of what is in the editor now (HTMX, on every change)."""
    editor = RuleEditor.from_post(request.POST)
    return render(request, "automation/rule_edit.html#summary", {"editor": editor})


@require_POST
@role_required(*RULE_ROLES)
def rule_preview(request: HttpRequest) -> HttpResponse:
    """What the rule in the editor would have done in the last 30 days — read-only."""
    editor = RuleEditor.from_post(request.POST)
    preview = None
    if editor.is_valid:
        cleaned = editor.cleaned
        preview = services.rule_preview(
            event_type=cleaned["event_type"],
            conditions=cleaned["conditions"],
            actions=cleaned["actions"],
            once_per_contact=cleaned.get("once_per_contact", False),
            max_points_per_contact=cleaned.get("max_points_per_contact"),
        )
    return render(request, "automation/rule_edit.html#preview", {"editor": editor, "preview": preview})


@require_GET
@role_required(*RULE_ROLES)
def rule_condition_row(request: HttpRequest) -> HttpResponse:
    index = _index(request)
    return render(request, "automation/_rows.html#condition_row_added", {
        "row": EditorRow(index, {"property": "", "op": "eq", "value": ""}),
        "next_index": index + 1,
        "op_choices": OP_CHOICES,
    })


@require_GET
@role_required(*RULE_ROLES)
def rule_action_row(request: HttpRequest) -> HttpResponse:
    index = _index(request)
    # the type select of a row sends itself as act-<index>-type when it changes
    kind = request.GET.get("type") or next(
        (value for key, value in request.GET.items() if key.endswith("-type")), "add_tag"
    )
    if kind not in dict(action_choices()):
        kind = "add_tag"
    values = {"type": kind, "tag": "", "score": "1", "points": "", "funnel_stage": "", "target": ""}
    partial = "action_row" if request.GET.get("replace") else "action_row_added"
    return render(request, f"automation/_rows.html#{partial}", {
        "row": EditorRow(index, values),
        "next_index": index + 1,
        "action_choices": action_choices(),
        "extra_actions": extra_actions_context(),
        "funnels": _funnel_choices(),
    })


def _index(request: HttpRequest) -> int:
    try:
        return max(0, min(int(request.GET.get("index", 0)), 999))
    except ValueError:
        return 0


@require_POST
@role_required(*RULE_ROLES)
def rule_run(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Start "run on past events since …" as a Job; the page shows its progress."""
    rule = get_object_or_404(Rule, pk=rule_id)
    form = RunForm(request.POST)
    if not form.is_valid():
        return render(request, "automation/rule_edit.html#run", {"rule": rule, "run_form": form})
    job = services.rule_backfill_start(rule, since=form.cleaned_data["since"], user=request.user)
    if not wants_fragment(request):
        return redirect("jobs:detail", job_id=job.pk)
    return render(request, "automation/rule_edit.html#run", {
        "rule": rule, "run_form": RunForm(initial={"since": default_since()}), "job": job,
        "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk}),
    })


# --- segmentation matrices ------------------------------------------------------------------------
@require_GET
@role_required(*RULE_ROLES)
def matrices(request: HttpRequest) -> HttpResponse:
    matrix_list = list(SegmentationMatrix.objects.order_by("name"))
    return render(request, "automation/matrices.html", {"matrices": matrix_list})


@require_http_methods(["GET", "POST"])
@role_required(*RULE_ROLES)
def matrix_new(request: HttpRequest) -> HttpResponse:
    return _matrix_editor(request, SegmentationMatrix(event_type="product_view", property="category"))


@require_http_methods(["GET", "POST"])
@role_required(*RULE_ROLES)
def matrix_edit(request: HttpRequest, matrix_id: int) -> HttpResponse:
    return _matrix_editor(request, get_object_or_404(SegmentationMatrix, pk=matrix_id))


def _matrix_editor(request: HttpRequest, matrix: SegmentationMatrix) -> HttpResponse:
    was_active = matrix.active if matrix.pk else False
    form = MatrixForm(request.POST or None, instance=matrix)
    if request.method == "POST" and form.is_valid():
        matrix = form.save(commit=False)
        matrix.rows = form.cleaned_data["rows"]
        now = timezone.now()
        if matrix.active and (not was_active or matrix.activated_at is None):
            matrix.activated_at = now
        matrix.updated_at = now
        if not matrix.pk:
            matrix.created_by = request.user
        matrix.save()
        messages.success(request, ngettext("Matrix “%(name)s” saved with %(count)s row.",
                                           "Matrix “%(name)s” saved with %(count)s rows.",
                                           len(matrix.rows)) % {"name": matrix.name, "count": len(matrix.rows)})
        return redirect("automation:matrices")
    if request.method == "GET" and not matrix.pk:
        form.row_list = [EditorRow(0, {"value": "", "tag": "", "score": "1"})]
    return render(request, "automation/matrix_edit.html", {
        "form": form, "matrix": matrix,
        "history": history.object_history(history.MATRIX, matrix.pk) if matrix.pk else [],
    })


@require_GET
@role_required(*RULE_ROLES)
def changes(request: HttpRequest) -> HttpResponse:
    """Who created, changed, switched or deleted which rule or matrix, newest first."""
    kind = request.GET.get("kind", "")
    if kind not in history.KINDS:
        kind = ""
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    entries, has_next = history.recent_changes(kind=kind, page=page)
    return render_page(request, "automation/changes.html",
                       {"entries": entries, "has_next": has_next, "page": page, "kind": kind,
                        "extra_kinds": [(key, value.plural) for key, value in history.KINDS.items()
                                        if key not in ("rule", "matrix")]}, partial="results")


@require_GET
@role_required(*RULE_ROLES)
def matrix_row(request: HttpRequest) -> HttpResponse:
    index = _index(request)
    return render(request, "automation/matrix_edit.html#matrix_row_added", {
        "row": EditorRow(index, {"value": "", "tag": "", "score": "1"}), "next_index": index + 1,
    })


@require_POST
@role_required(*RULE_ROLES)
def matrix_delete(request: HttpRequest, matrix_id: int) -> HttpResponse:
    matrix = get_object_or_404(SegmentationMatrix, pk=matrix_id)
    matrix.delete()
    messages.success(request, _("Matrix “%(name)s” deleted. Tags it gave stay.") % {"name": matrix.name})
    return redirect("automation:matrices")


# --- ad-hoc actions -------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@role_required(*RULE_ROLES)
def adhoc(request: HttpRequest) -> HttpResponse:
    initial = {}
    if request.method == "GET":
        if request.GET.get("segment"):
            initial = {"target": "segment", "segment": request.GET.get("segment")}
        elif request.GET.get("query") is not None:
            initial = {"target": "filter", "query": request.GET.get("query", "")}
    form = AdhocForm(request.POST or None, initial=initial)
    count = None
    if request.method == "POST" and form.is_valid():
        params = _adhoc_params(form)
        count = adhoc_target_count(params)
        if request.POST.get("confirm") == "1":
            title = form.cleaned_data.get("title") or _adhoc_title(form, count)
            job = adhoc_start(params=params, title=title, user=request.user)
            messages.success(request, _("Started: %(title)s.") % {"title": title})
            return redirect("jobs:detail", job_id=job.pk)
    return render(request, "automation/adhoc.html", {
        "form": form, "count": count, "action_choices": ACTION_CHOICES, "funnels": _funnel_choices(),
    })


def _adhoc_params(form: AdhocForm) -> dict:
    data = form.cleaned_data
    params: dict = {"target": data["target"], "actions": form.actions}
    if data["target"] == "segment":
        params["segment_id"] = data["segment"].pk
    else:
        params["query"] = data["query"].strip().lstrip("?")
    return params


def _adhoc_title(form: AdhocForm, count: int) -> str:
    what = ", ".join(describe_action(action) for action in form.actions)
    values = {"actions": f"{what[:1].upper()}{what[1:]}", "count": intcomma(count)}
    if form.cleaned_data["target"] == "segment":
        values["segment"] = form.cleaned_data["segment"].name
        return ngettext("%(actions)s — %(count)s contact of segment “%(segment)s”",
                        "%(actions)s — %(count)s contacts of segment “%(segment)s”", count) % values
    return ngettext("%(actions)s — %(count)s filtered contact", "%(actions)s — %(count)s filtered contacts",
                    count) % values


# --- event processing -----------------------------------------------------------------------------
@require_GET
@role_required(*RULE_ROLES)
def events(request: HttpRequest) -> HttpResponse:
    failed = PendingEvent.objects.filter(failed=True).select_related("contact").order_by("-received_at")
    page = Paginator(failed, 25).get_page(request.GET.get("page"))
    oldest = (
        PendingEvent.objects.filter(failed=False).order_by("received_at")
        .values_list("received_at", flat=True).first()
    )
    context = {"status": events_status(), "page_obj": page, "oldest_pending": oldest,
               "stuck": oldest is not None and oldest < timezone.now() - timedelta(minutes=1)}
    return render_page(request, "automation/events.html", context, partial="results")


@require_POST
@role_required(*RULE_ROLES)
def events_retry(request: HttpRequest) -> HttpResponse:
    event_id = request.POST.get("event_id")
    count = events_retry_failed(event_ids=[event_id] if event_id else None)
    messages.success(request, ngettext("%(count)s event queued for another try.",
                                       "%(count)s events queued for another try.", count) % {"count": count})
    return redirect("automation:events")
