"""Segment pages: the list, the visual builder (HTMX tree editor with a live count), a segment's
page (members, size history, refresh job, CSV export), templates, overlap, and the contact card's
"why" panel. The CSV export is a Job: the worker writes the file, the job's page offers the download."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import plotly.graph_objects as go
from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.contrib.postgres.expressions import ArraySubquery
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.models import EVENT_TYPE_CHOICES, Contact, Tag, tag_key
from contacts.tag_names import unknown_tag_warnings
from core.charts import PRIMARY, PRIMARY_LIGHT, figure_dict
from core.htmx import redirect_page, render_page, toast, wants_fragment
from core.jobs import job_start
from core.models import Job
from core.paging import table_rows_estimate
from core.roles import MARKETER, STAFF, has_role, role_required
from leads.models import Stage
from loyalty.models import Tier
from segments import forms as builder
from segments.api import segments_referring_to
from segments.compiler import effective_definition
from segments.explain import describe, explain_for_contact
from segments.models import Segment, SegmentMember, SegmentSize
from segments.presets import GROUPS, PRESETS, PRESETS_BY_KEY, RFM_HELP
from segments.services import (
    segment_members_queryset,
    segment_overlap,
    segment_preview,
    segment_refresh_enqueue,
    segment_save,
)
from segments.tasks import segment_export_task
from segments.validation import DefinitionError, definition_problems

MEMBERS_PER_PAGE = 50
TEMPERATURES = [("cold", gettext_lazy("Cold")), ("warm", gettext_lazy("Warm")), ("hot", gettext_lazy("Hot"))]


# --- list -----------------------------------------------------------------------------------------
@require_GET
@role_required(*STAFF)
def segment_list(request: HttpRequest) -> HttpResponse:
    week_ago = timezone.now() - dt.timedelta(days=7)
    earlier = SegmentSize.objects.filter(segment=OuterRef("pk"), measured_at__lte=week_ago).order_by("-measured_at")
    first = SegmentSize.objects.filter(segment=OuterRef("pk")).order_by("measured_at")
    segments = Segment.objects.annotate(
        count_week_ago=Subquery(earlier.values("count")[:1]),
        count_first=Subquery(first.values("count")[:1]),
    ).order_by("name", "pk")
    query = (request.GET.get("q") or "").strip()
    if query:
        segments = segments.filter(name__icontains=query)
    page = Paginator(segments, 50).get_page(request.GET.get("page"))
    rows = []
    for segment in page:
        baseline = segment.count_week_ago if segment.count_week_ago is not None else segment.count_first
        trend = None if baseline is None or segment.count is None else segment.count - baseline
        rows.append({"segment": segment, "trend": trend})
    return render_page(request, "segments/list.html", {
        "page_obj": page, "rows": rows, "q": query, "can_edit": has_role(request.user, MARKETER),
    }, partial="results")


# --- the builder ----------------------------------------------------------------------------------
def _choices() -> dict[str, Any]:
    """Options of the selects (small tables: funnels, tiers, segments, event types)."""
    stages = [f"{funnel} \u203a {stage}" for funnel, stage in
              Stage.objects.order_by("funnel__name", "position").values_list("funnel__name", "name")[:500]]
    tiers = [f"{program} \u203a {tier}" for program, tier in
             Tier.objects.order_by("program__name", "min").values_list("program__name", "name")[:500]]
    return {
        "leaf_types": list(builder.LEAF_LABELS.items()),
        "event_types": EVENT_TYPE_CHOICES,
        "attribute_choices": builder.ATTRIBUTE_CHOICES,
        "where_ops": [(op, builder.OP_LABELS[op]) for op in builder.WHERE_OPS],
        "stage_choices": stages,
        "tier_choices": tiers,
        "segment_choices": list(Segment.objects.order_by("name").values_list("pk", "name")[:500]),
        "temperatures": TEMPERATURES,
    }


def _editor_context(root: builder.UINode, *, segment: Segment | None, problems=None, unclaimed=None) -> dict:
    context = {"root": root, "segment": segment, "unclaimed_errors": unclaimed or [], **_choices()}
    if segment is not None:
        context["segment_choices"] = [choice for choice in context["segment_choices"] if choice[0] != segment.pk]
    return context


def _builder_page(request: HttpRequest, *, segment: Segment | None, root: builder.UINode, meta_form,
                  unclaimed: list[str] | None = None) -> HttpResponse:
    context = _editor_context(root, segment=segment, unclaimed=unclaimed)
    context.update({"meta_form": meta_form, "rfm_help": RFM_HELP})
    return render(request, "segments/builder.html", context)


def _save_from_post(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    root = builder.nodes_from_post(request.POST)
    operation = request.POST.get("op", "")
    meta_form = builder.SegmentMetaForm(request.POST)
    if operation:
        # Without JavaScript the structural buttons submit the whole form here.
        name, _sep, target = operation.partition(":")
        builder.apply_operation(root, name, target)
        return _builder_page(request, segment=segment, root=root, meta_form=meta_form)
    definition = builder.definition_from_nodes(root)
    problems = definition_problems(definition, segment_id=segment.pk if segment else None)
    unclaimed = builder.attach_errors(root, problems)
    if not meta_form.is_valid() or problems:
        return _builder_page(request, segment=segment, root=root, meta_form=meta_form, unclaimed=unclaimed)
    try:
        saved = segment_save(
            segment=segment,
            name=meta_form.cleaned_data["name"],
            description=meta_form.cleaned_data["description"],
            definition=definition,
            for_sending=meta_form.cleaned_data["for_sending"],
            user=request.user,
        )
    except DefinitionError as exc:  # a concurrent edit introduced a cycle
        unclaimed = builder.attach_errors(root, exc.problems)
        return _builder_page(request, segment=segment, root=root, meta_form=meta_form, unclaimed=unclaimed)
    if saved.count is None:
        messages.success(request, _("Segment “%(name)s” saved; it is too expensive to count live, so the worker "
                                    "is counting it.") % {"name": saved.name})
    else:
        messages.success(request, ngettext(
            "Segment “%(name)s” saved with %(count)s contact; membership is refreshing.",
            "Segment “%(name)s” saved with %(count)s contacts; membership is refreshing.",
            saved.count,
        ) % {"name": saved.name, "count": intcomma(saved.count)})
    url = reverse("segments:detail", kwargs={"segment_id": saved.pk})
    return redirect_page(request, url)


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def segment_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _save_from_post(request, None)
    preset = PRESETS_BY_KEY.get(request.GET.get("preset", ""))
    copy_of = request.GET.get("copy")
    initial = {"for_sending": True}
    definition: Any = {"all": [{"type": "tag_score", "tag": "", "op": "gte", "value": 3}]}
    if preset:
        definition = preset.definition
        initial = {"name": str(preset.name), "description": str(preset.help), "for_sending": preset.for_sending}
    elif copy_of and copy_of.isdigit():
        original = Segment.objects.filter(pk=int(copy_of)).first()
        if original:
            definition = original.definition
            initial = {"name": _("%(name)s (copy)") % {"name": original.name}, "description": original.description,
                       "for_sending": original.for_sending}
    root = builder.nodes_from_definition(definition)
    return _builder_page(request, segment=None, root=root, meta_form=builder.SegmentMetaForm(initial=initial))


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def segment_edit(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    if request.method == "POST":
        return _save_from_post(request, segment)
    root = builder.nodes_from_definition(segment.definition)
    meta_form = builder.SegmentMetaForm(initial={
        "name": segment.name, "description": segment.description, "for_sending": segment.for_sending})
    return _builder_page(request, segment=segment, root=root, meta_form=meta_form)


def _segment_from_post(request: HttpRequest) -> Segment | None:
    segment_id = request.POST.get("segment_id", "")
    return Segment.objects.filter(pk=int(segment_id)).first() if segment_id.isdigit() else None


def _preview_context(root: builder.UINode, request: HttpRequest, segment: Segment | None) -> dict[str, Any]:
    """Validate the tree (errors land on their rows) and, when valid, count it live."""
    definition = builder.definition_from_nodes(root)
    for_sending = request.POST.get("for_sending") in ("on", "true", "1")
    problems = definition_problems(definition, segment_id=segment.pk if segment else None)
    unclaimed = builder.attach_errors(root, problems)
    context: dict[str, Any] = {"problems": problems, "unclaimed_errors": unclaimed,
                               # a misspelt tag is valid but matches nobody: say so, with the closest names
                               "tag_warnings": unknown_tag_warnings(_tag_names(definition))}
    if not problems:
        preview = segment_preview(definition, for_sending=for_sending)
        context.update({
            "preview": preview,
            "sentence": describe(definition, for_sending=for_sending),
            "definition_json": json.dumps(definition, ensure_ascii=False, indent=1),
        })
    return context


@require_POST
@role_required(MARKETER)
def builder_editor(request: HttpRequest) -> HttpResponse:
    """A structural edit (add / remove / negate / change type / where rows): the tree again,
    with the new live count swapped into the preview panel in the same response."""
    root = builder.nodes_from_post(request.POST)
    name, _sep, target = request.POST.get("op", "").partition(":")
    builder.apply_operation(root, name, target)
    segment = _segment_from_post(request)
    context = _editor_context(root, segment=segment)
    context.update(_preview_context(root, request, segment))
    context["unclaimed_errors"] = context["unclaimed_errors"]
    return render(request, "segments/builder.html#editor_and_preview", context)


@require_POST
@role_required(MARKETER)
def builder_preview(request: HttpRequest) -> HttpResponse:
    """The live count, a sample and the sentence — plus each row's errors (out of band)."""
    root = builder.nodes_from_post(request.POST)
    segment = _segment_from_post(request)
    context = _preview_context(root, request, segment)
    context["nodes"] = _flatten(root)
    return render(request, "segments/builder.html#preview", context)


def _tag_names(definition: Any) -> list[str]:
    """Every tag a definition names (leaves' ``tag``), depth first."""
    if isinstance(definition, dict):
        names = [definition["tag"]] if isinstance(definition.get("tag"), str) else []
        return names + [name for value in definition.values() if isinstance(value, dict | list)
                        for name in _tag_names(value)]
    if isinstance(definition, list):
        return [name for item in definition for name in _tag_names(item)]
    return []


def _flatten(root: builder.UINode) -> list[builder.UINode]:
    found = [root]
    for child in root.children:
        found.extend(_flatten(child))
    return found


@require_GET
@role_required(MARKETER)
def tag_options(request: HttpRequest) -> HttpResponse:
    """``<option>``s for the tag inputs' shared datalist: names starting with, then containing."""
    typed = ""
    for key, value in request.GET.items():
        if key == "q" or key.endswith(".tag"):
            typed = value
    text = tag_key(typed)
    names: list[str] = []
    if text:
        names = list(Tag.objects.filter(key__startswith=text).order_by("key").values_list("name", flat=True)[:10])
        if len(names) < 10:
            names += list(Tag.objects.filter(key__contains=text).exclude(key__startswith=text).order_by("key")
                          .values_list("name", flat=True)[: 10 - len(names)])
    else:
        names = list(Tag.objects.order_by("name").values_list("name", flat=True)[:10])
    return render(request, "segments/builder.html#tag_options", {"tag_names": names})


# --- a segment ----------------------------------------------------------------------------------
def _size_chart(segment: Segment) -> dict | None:
    sizes = list(segment.sizes.order_by("-measured_at").values_list("measured_at", "count")[:500])[::-1]
    if len(sizes) < 2:
        return None  # one dot is no history; the card says when sizes are recorded instead
    # Dates on the axis: Plotly's automatic ticks over a few minutes read "18:23:17.205".
    span = sizes[-1][0] - sizes[0][0]
    tick_format = "%d %b" if span.total_seconds() >= 2 * 86400 else "%d %b %H:%M"
    figure = go.Figure(go.Scatter(
        mode="lines+markers",
        x=[timezone.localtime(moment).isoformat() for moment, _count in sizes],
        y=[count for _moment, count in sizes],
        line={"shape": "hv", "width": 2}, marker={"size": 5},
        hovertemplate="%{x|%d %b %H:%M}<br>" + _("Members") + ": %{y:,}<extra></extra>",
    ))
    figure.update_layout(margin={"l": 56, "r": 16, "t": 8, "b": 40}, yaxis={"rangemode": "tozero", "tickformat": ","},
                         xaxis={"type": "date", "tickformat": tick_format, "nticks": 5})
    return figure_dict(figure)


def _members_by_email(segment: Segment, total: int | None, page: str | None):
    """The segment's members by email, planned for the page asked for. Walking the email index
    tests about (contacts ÷ members) × the rows up to the page's end before the page is found
    (26,000 tests, 110 ms, for the first page of 2,700 members of a million); reading every
    membership and sorting costs one row per member. The cheaper one is chosen: when members² <
    contacts × rows up to the page's end, the memberships (as an array the planner cannot
    mistake for many rows, so it probes the primary key), else the walk."""
    try:
        number = max(1, int(page or 1))
    except ValueError:
        number = 1
    if total is not None and total * total < table_rows_estimate(Contact._meta.db_table) * number * MEMBERS_PER_PAGE:
        member_ids = SegmentMember.objects.filter(segment=segment).values("contact_id")
        return Contact.objects.filter(pk__any=ArraySubquery(member_ids)).order_by("email")
    return segment_members_queryset(segment).order_by("email")


@require_GET
@role_required(*STAFF)
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    total = segment.count if segment.refreshed_at is not None and segment.count is not None else None
    members = _members_by_email(segment, total, request.GET.get("page")).only(
        "pk", "email", "first_name", "last_name", "score", "city", "last_activity_at")
    paginator = Paginator(members, MEMBERS_PER_PAGE)
    if total is not None:
        paginator.count = total  # the maintained count: no COUNT(*) over a big membership per page view
    page = paginator.get_page(request.GET.get("page"))
    last_job = Job.objects.filter(kind="segment_refresh", params__segment_id=segment.pk).order_by("-created_at").first()
    context = {
        "segment": segment,
        "page_obj": page,
        "sentence": describe(segment.definition, for_sending=segment.for_sending),
        "size_chart": _size_chart(segment),
        "definition_json": json.dumps(segment.definition, ensure_ascii=False, indent=2),
        "can_edit": has_role(request.user, MARKETER),
        "used_by": segments_referring_to(segment.pk),
        "job": last_job if last_job and not last_job.is_finished else None,
    }
    return render_page(request, "segments/detail.html", context, partial="members")


@require_POST
@role_required(MARKETER)
def segment_refresh_now(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    job = segment_refresh_enqueue(segment, user=request.user)
    if getattr(request, "htmx", None):
        return render(request, "segments/detail.html#job", {"segment": segment, "job": job})
    messages.info(request, _("Refresh started."))
    return HttpResponseRedirect(reverse("segments:detail", kwargs={"segment_id": segment.pk}))


@require_GET
@role_required(*STAFF)
def segment_job(request: HttpRequest, segment_id: int, job_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    job = get_object_or_404(Job, pk=job_id, kind="segment_refresh")
    return render(request, "segments/detail.html#job", {"segment": segment, "job": job})


@require_POST
@role_required(MARKETER)
def segment_export(request: HttpRequest, segment_id: int) -> HttpResponse:
    """Export the segment's members to CSV (the contact list's export format, every cell
    formula-escaped) as a Job: the worker writes the file (``segments.tasks.segment_export_task``)
    and the job's page offers it for download. htmx shows the job's progress on the segment's page;
    a plain POST goes to the job's page."""
    segment = get_object_or_404(Segment, pk=segment_id)
    # the job's title and link are stored: written in the language of the person who started it
    title = _("Export segment “%(name)s” to CSV") % {"name": segment.name}
    link = (_("Segment"), segment.name, reverse("segments:detail", kwargs={"segment_id": segment.pk}))
    job = job_start(segment_export_task, title=title, params={"segment_id": segment.pk}, user=request.user, link=link)
    if not wants_fragment(request):
        return redirect("jobs:detail", job_id=job.pk)
    response = render(request, "segments/detail.html#export_job", {
        "job": job, "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk})})
    return toast(response, _("Started: %(title)s") % {"title": title}, "info")


@require_POST
@role_required(MARKETER)
def segment_delete(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    users = segments_referring_to(segment.pk)
    if users:
        names = ", ".join(_("“%(name)s”") % {"name": other.name} for other in users)
        messages.error(request, _("“%(name)s” is used by %(users)s; change those first.") % {
            "name": segment.name, "users": names})
        return HttpResponseRedirect(reverse("segments:detail", kwargs={"segment_id": segment.pk}))
    name = segment.name
    segment.delete()
    messages.success(request, _("Segment “%(name)s” deleted.") % {"name": name})
    return HttpResponseRedirect(reverse("segments:list"))


# --- templates, overlap ---------------------------------------------------------------------------
@require_GET
@role_required(MARKETER)
def segment_templates(request: HttpRequest) -> HttpResponse:
    groups = [{"key": key, "name": name, "items": []} for key, name in GROUPS.items()]
    by_key = {group["key"]: group for group in groups}
    for preset in PRESETS:
        by_key[preset.group]["items"].append(
            {"preset": preset, "sentence": describe(preset.definition, for_sending=preset.for_sending)})
    return render(request, "segments/templates.html", {"groups": groups, "rfm_help": RFM_HELP})


def _overlap_chart(result: dict, names: dict[int, str]) -> dict:
    regions = sorted(result["regions"].items(), key=lambda item: (len(item[0]), item[0]))
    labels = [_("%(name)s only") % {"name": names[key[0]]} if len(key) == 1 else " ∩ ".join(names[pk] for pk in key)
              for key, _count in regions]
    figure = go.Figure(go.Bar(
        orientation="h", x=[count for _key, count in regions], y=labels,
        marker={"color": [PRIMARY_LIGHT if len(key) == 1 else PRIMARY for key, _count in regions]},
        hovertemplate="%{y}: %{x:,}<extra></extra>",
    ))
    figure.update_layout(margin={"l": 200, "r": 16, "t": 8, "b": 32}, yaxis={"automargin": True, "autorange": "reversed"})
    return figure_dict(figure)


@require_GET
@role_required(*STAFF)
def segment_overlap_view(request: HttpRequest) -> HttpResponse:
    all_segments = list(Segment.objects.order_by("name").values_list("pk", "name")[:500])
    names = dict(all_segments)
    chosen = [int(value) for value in request.GET.getlist("s") if value.isdigit() and int(value) in names]
    chosen = list(dict.fromkeys(chosen))[:3]
    slots = [(index, chosen[index] if index < len(chosen) else None) for index in range(3)]
    context: dict[str, Any] = {"all_segments": all_segments, "chosen": chosen, "slots": slots}
    if len(chosen) >= 2:
        result = segment_overlap(chosen)
        rows = [
            {"names": [names[pk] for pk in key], "count": count, "exact": True}
            for key, count in sorted(result["regions"].items(), key=lambda item: (-len(item[0]), item[0]))
        ]
        pairs = []
        for index, first in enumerate(chosen):
            for second in chosen[index + 1:]:
                both = sum(count for key, count in result["regions"].items() if first in key and second in key)
                pairs.append({"a": names[first], "b": names[second], "count": both})
        context.update({
            "result": result, "rows": rows, "pairs": pairs,
            "sizes": [{"name": names[pk], "count": result["sizes"][pk],
                       "refreshed_at": Segment.objects.filter(pk=pk).values_list("refreshed_at", flat=True).first()}
                      for pk in chosen],
            "chart": _overlap_chart(result, names),
            "union": sum(result["regions"].values()),
        })
    return render_page(request, "segments/overlap.html", context, partial="results")


# --- the contact card's panel -----------------------------------------------------------------------
@require_GET
@role_required(*STAFF)
def card_panel(request: HttpRequest, contact_id: int) -> HttpResponse:
    """For one contact and any saved segment: member or not, and each condition ✓/✗ (live)."""
    contact = get_object_or_404(Contact.objects.only("pk", "email"), pk=contact_id)
    segments = list(Segment.objects.order_by("name").values_list("pk", "name")[:500])
    member_of = list(
        Segment.objects.filter(members__contact_id=contact.pk).order_by("name").values_list("pk", "name")[:50])
    chosen_id = request.GET.get("segment", "")
    context: dict[str, Any] = {"contact": contact, "segments": segments, "member_of": member_of}
    if chosen_id.isdigit():
        segment = Segment.objects.filter(pk=int(chosen_id)).first()
        if segment is not None:
            definition = effective_definition(segment)
            explained = explain_for_contact(definition, contact.pk)
            stored = segment.members.filter(contact_id=contact.pk).exists()
            context.update({
                "segment": segment,
                "explained": explained,
                "is_member": bool(explained and explained.passed),
                "stored_member": stored,
                "stale": segment.refreshed_at is not None and explained is not None and stored != explained.passed,
            })
    return render(request, "segments/card_panel.html", context)
