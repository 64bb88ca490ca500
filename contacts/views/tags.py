"""The Tags page (/contacts/tags/): every tag with how many contacts carry it and how strongly,
rename, recolour, merge and delete; and the tag-name autocomplete the list and the card use."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from contacts.forms import TagEditForm, TagMergeForm
from contacts.models import SCORE_BANDS, ContactTag, Tag, tag_key
from contacts.selectors import tag_names_matching
from contacts.services import TagNameTaken, tag_delete, tag_merge, tag_overview, tag_rename
from contacts.tasks import tag_stats_recount_task
from core.htmx import render_page, wants_fragment
from core.jobs import job_start
from core.roles import MARKETER, SALES, has_role, role_required

DIALOG_KINDS = ("edit", "merge", "delete")


def _tags_page_context(request: HttpRequest) -> dict:
    search = (request.GET.get("q") or "").strip()
    overview = tag_overview(search=search, page=request.GET.get("page"))
    list_url = reverse("contacts:list")
    for tag in overview.tags:
        tag.list_url = f"{list_url}?{urlencode({'tag': tag.name})}"
    chart = None
    if any(overview.bands):
        chart = {
            "data": [{"type": "bar", "x": SCORE_BANDS, "y": overview.bands,
                      "marker": {"color": "#6366f1"},
                      "hovertemplate": _("score %{x}: %{y} contact-tags") + "<extra></extra>"}],
            "layout": {"margin": {"l": 56, "r": 16, "t": 8, "b": 40}, "xaxis": {"title": {"text": _("score")}, "type": "category"},
                       "yaxis": {"title": {"text": _("contact-tags")}}, "bargap": 0.3},
        }
    icons = {name: render_to_string("includes/icon.html", {"name": name}) for name in ("edit", "trash")}
    return {"tags": overview.tags, "overview": overview, "search": search, "chart": chart, "icons": icons,
            "can_edit": has_role(request.user, MARKETER)}


@require_GET
@role_required(MARKETER)
def tag_list(request: HttpRequest) -> HttpResponse:
    return render_page(request, "contacts/tags.html", _tags_page_context(request), partial="tag_table")


@require_GET
@role_required(MARKETER, SALES)
def tag_autocomplete(request: HttpRequest) -> HttpResponse:
    """Tag names starting with (then containing) what was typed, A→Z."""
    text = tag_key(request.GET.get("tag") or request.GET.get("q") or request.GET.get("into") or "")
    tags = tag_names_matching(text)
    return render(request, "contacts/tag_autocomplete.html", {"tags": tags, "typed": text,
                                                               "exact": text in {tag_key(t) for t in tags}})


@require_GET
@role_required(MARKETER)
def tag_dialog(request: HttpRequest, tag_id: int, kind: str) -> HttpResponse:
    """The edit, merge or delete form of one tag, for the Tags page's shared dialog, with the
    exact number of contacts that carry it (one index-only count)."""
    if kind not in DIALOG_KINDS:
        raise Http404("No such tag action.")
    tag = get_object_or_404(Tag, pk=tag_id)
    contact_count = ContactTag.objects.filter(tag=tag).count() if kind != "edit" else None
    response = render(request, "contacts/tags.html#tag_dialog", {"tag": tag, "kind": kind, "contact_count": contact_count})
    response["HX-Trigger-After-Swap"] = json.dumps({"openDialog": "tag-dialog"})
    return response


@require_POST
@role_required(MARKETER)
def tag_stats_recount(request: HttpRequest) -> HttpResponse:
    """Recount the Tags page's numbers now, as a Job whose progress the page shows."""
    job = job_start(tag_stats_recount_task, title=_("Recount tags"), user=request.user)
    if not wants_fragment(request):
        return redirect("jobs:detail", job_id=job.pk)
    # when the job has finished, its progress fragment fires "tag_stats-finished" and the table reloads
    return render(request, "contacts/tags.html#recount", {
        "job": job, "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk})})


@require_POST
@role_required(MARKETER)
def tag_edit(request: HttpRequest, tag_id: int) -> HttpResponse:
    tag = get_object_or_404(Tag, pk=tag_id)
    form = TagEditForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                tag_rename(tag, name=form.cleaned_data["name"])
                Tag.objects.filter(pk=tag.pk).update(description=form.cleaned_data["description"],
                                                     colour=form.cleaned_data["colour"])
            messages.success(request, _("Saved %(tag)s.") % {"tag": tag.name})
        except TagNameTaken as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "; ".join(f"{form.fields[name].label if name in form.fields else name}: "
                                          f"{' '.join(map(str, errors))}" for name, errors in form.errors.items()))
    return redirect("contacts:tags")


@require_POST
@role_required(MARKETER)
def tag_merge_view(request: HttpRequest, tag_id: int) -> HttpResponse:
    source = get_object_or_404(Tag, pk=tag_id)
    form = TagMergeForm(request.POST)
    if form.is_valid():
        name = form.cleaned_data["into"]
        target = Tag.objects.filter(key=tag_key(name)).first()
        if target is None:
            messages.error(request, _("No tag is named “%(name)s”: pick an existing tag to merge into.") % {"name": name})
        elif target.pk == source.pk:
            messages.error(request, _("%(tag)s cannot be merged into itself: pick another tag.") % {"tag": source.name})
        else:
            merged = tag_merge(source, target, user=request.user)
            messages.success(request, ngettext(
                "Merged %(source)s into %(target)s: %(count)d contact's scores added up.",
                "Merged %(source)s into %(target)s: %(count)d contacts' scores added up.", merged,
            ) % {"source": source.name, "target": target.name, "count": merged})
    else:
        messages.error(request, _("Pick the tag to merge into."))
    return redirect("contacts:tags")


@require_POST
@role_required(MARKETER)
def tag_delete_view(request: HttpRequest, tag_id: int) -> HttpResponse:
    tag = get_object_or_404(Tag, pk=tag_id)
    name = tag.name
    removed = tag_delete(tag)
    messages.success(request, ngettext("Deleted %(tag)s; %(count)d contact lost it.",
                                      "Deleted %(tag)s; %(count)d contacts lost it.", removed) % {"tag": name, "count": removed})
    return redirect("contacts:tags")
