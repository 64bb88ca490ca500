"""The contact list (/contacts/): filters, sorting, pages, bulk actions and the CSV export.

Filters come from ``ContactFilterSet`` (with the ones other areas register); the labels beside
the score come from ``contacts.registry`` too. Sales read the list; bulk actions and the export
are the Marketer's. The export is a Job: the worker writes the file, its page offers the download."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.contrib.humanize.templatetags.humanize import intcomma
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.dateformat import format as format_date
from django.utils.formats import get_format, localize
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from contacts.filters import ContactFilterSet, owner_choices
from contacts.forms import BulkActionForm
from contacts.models import Contact
from contacts.registry import SCORE_LABELS
from contacts.selectors import top_tags_by_contact
from contacts.tasks import bulk_apply, contacts_bulk_task, contacts_export_task
from core.htmx import render_page, toast, wants_fragment
from core.jobs import job_start
from core.models import Job
from core.paging import estimated_count
from core.roles import ADMIN, MARKETER, SALES, has_role, role_required

PER_PAGE = 50
COUNT_CAP = 1_000
MAX_PAGE = 200
SELECTION_LIMIT = 500


def _list_context(request: HttpRequest, data: QueryDict) -> dict:
    # Anonymous visitors' profiles are no contacts; admins may look at them next to the contacts.
    include_anonymous = data.get("anonymous") == "include" and has_role(request.user, ADMIN)
    base = Contact.all_objects.all() if include_anonymous else Contact.objects.all()
    filterset = ContactFilterSet(data, queryset=base)
    queryset = filterset.qs
    filtered = filterset.is_filtered
    # Exact up to COUNT_CAP (a LIMITed count is cheap); beyond, the planner's estimate, labelled as
    # one, so counting never dominates the page time.
    count, exact = estimated_count(queryset, COUNT_CAP)
    if exact and filtered:
        # at most COUNT_CAP rows match: reading and sorting them all is cheap and bounded, walking
        # the sort's index until a page of them turns up is not when they sort late
        queryset = filterset.qs_few()
    # Deep OFFSETs cost as much as the rows they skip: pages stop at MAX_PAGE (filter or sort instead).
    last_page = max(1, min(MAX_PAGE, -(-count // PER_PAGE)))
    try:
        page = min(max(int(data.get("page", 1)), 1), last_page)
    except ValueError:
        page = 1
    offset = (page - 1) * PER_PAGE
    rows = list(queryset.select_related("owner").defer("search_document", "properties")[offset: offset + PER_PAGE + 1])
    has_next = len(rows) > PER_PAGE
    rows = rows[:PER_PAGE]
    query = data.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    list_url = reverse("contacts:list")
    _decorate_rows(rows, list_url=list_url, sort_base_query=sort_query.urlencode())
    # "did you mean “kurtki” or “kurtka”?" — each suggestion a link sorting by it
    suggestions = filterset.sort_tag_suggestions
    suggestion_links = mark_safe(_(" or ").join(
        format_html('<a href="{}?{}&amp;sort=tag:{}">{}</a>', list_url, sort_query.urlencode(), quote(name),
                    _("“%(name)s”") % {"name": name})
        for name in suggestions))
    return {
        "sort_tag": filterset.sort_tag_name,
        "sort_tag_known": filterset.sort_tag_id is not None,
        "sort_tag_suggestions": suggestions,
        "sort_tag_suggestion_links": suggestion_links,
        "sort_base_query": sort_query.urlencode(),
        "filter": filterset,
        "contacts": rows,
        "count": count,
        "count_exact": exact,
        "page": page,
        "has_next": has_next,
        "has_previous": page > 1,
        "next_page": page + 1,
        "previous_page": page - 1,
        "base_query": query.urlencode(),
        "is_filtered": filtered or include_anonymous,
        "include_anonymous": include_anonymous,
        "can_see_anonymous": has_role(request.user, ADMIN),
        "can_bulk": has_role(request.user, MARKETER),
        "bulk_form": BulkActionForm(owner_choices=owner_choices()),
        "selection_limit": SELECTION_LIMIT,
        "count_cap": COUNT_CAP,
        # rendered once per page, not included per row
        "icons": {"star": render_to_string("includes/icon.html", {"name": "star", "size": 12})},
    }


def _decorate_rows(rows: list[Any], *, list_url: str, sort_base_query: str) -> None:
    """What each row shows, computed in one pass. Rendering was most of a 50-row page's time: a
    template tag, filter or translation per cell and per tag chip, ~250 of them, was ~25 ms of CPU a page."""
    tags = top_tags_by_contact([contact.pk for contact in rows])
    labels = [label.rows(rows) for label in SCORE_LABELS]
    select_label = _("Select %(email)s")
    tag_title = _("%(name)s · score %(score)s — sort the list by %(name)s score")
    tag_href = f"{list_url}?{sort_base_query}&sort=tag:"
    # looked up once: date_format() finds the format (per language) on every call
    short_date = get_format("SHORT_DATE_FORMAT")
    for contact in rows:
        contact.card_url = reverse("contacts:card", args=[contact.pk])
        contact.select_label = _blocktranslate(select_label, email=contact.email)
        contact.top_tags = tags.get(contact.pk, [])
        for tag in contact.top_tags:
            tag["title"] = _blocktranslate(tag_title, name=tag["name"], score=tag["score"])
            tag["href"] = tag_href + quote(tag["name"], safe="/")
        contact.score_display = intcomma(contact.score)
        # every label is safe HTML (see contacts.registry.ScoreLabel)
        contact.score_label = mark_safe("".join(by_contact.get(contact.pk, "") for by_contact in labels))
        contact.owner_name = (contact.owner.get_full_name() or contact.owner.username) if contact.owner else ""
        activity = contact.last_activity_at
        contact.activity_title = format_date(localtime(activity), "Y-m-d H:i") if activity else ""
        contact.created_display = format_date(localtime(contact.created_at), short_date)


def _blocktranslate(text: str, **values: Any) -> SafeString:
    """``text % values`` as ``{% blocktranslate %}`` renders it: the (translated) text as is, the
    values localized and escaped."""
    return mark_safe(text % {name: conditional_escape(localize(value)) for name, value in values.items()})


@require_GET
@role_required(MARKETER, SALES)
def contact_list(request: HttpRequest) -> HttpResponse:
    return render_page(request, "contacts/list.html", _list_context(request, request.GET), partial="results")


@require_POST
@role_required(MARKETER)
def contact_bulk(request: HttpRequest) -> HttpResponse:
    """A bulk action on the ticked contacts (done now) or on all contacts matching the filters (a Job)."""
    form = BulkActionForm(request.POST, owner_choices=owner_choices())
    query = request.POST.get("query", "")
    if not form.is_valid():
        # "Tag: …", with the field's (translated) label
        errors = "; ".join(f"{(form.fields[name].label if name in form.fields else None) or name}: {' '.join(map(str, errs))}"
                           for name, errs in form.errors.items())
        return toast(HttpResponse(status=204), errors, "error")
    params = form.params()
    if form.cleaned_data["scope"] == "all":
        filterset = ContactFilterSet(QueryDict(query), queryset=Contact.objects.all())
        params["query"] = query
        # the job's title is stored: written in the language of the person who started it
        title = bulk_title(params, _("all contacts matching the filters") if filterset.is_filtered else _("all contacts"))
        job = job_start(contacts_bulk_task, title=title, params=params, user=request.user)
        response = render(request, "contacts/bulk_status.html", {"job": job, "poll_url": reverse(
            "contacts:bulk_status", kwargs={"job_id": job.pk})})
        return toast(response, _("Started: %(title)s") % {"title": title}, "info")
    ids = form.cleaned_data["ids"]
    if not ids:
        return toast(HttpResponse(status=204), _("Tick some contacts first, or use “all matching”."), "warning")
    changed = bulk_apply(Contact.objects.filter(pk__in=ids), params, user=request.user)
    response = render(request, "contacts/list.html#results", _list_context(request, QueryDict(query)))
    target = ngettext("%(count)d selected contact", "%(count)d selected contacts", len(ids)) % {"count": len(ids)}
    return toast(response, ngettext("%(action)s — %(changed)d changed.", "%(action)s — %(changed)d changed.", changed)
                 % {"action": bulk_title(params, target), "changed": changed})


def bulk_title(params: dict, target: str) -> str:
    """The action in words, on ``target`` ("all contacts", "3 selected contacts")."""
    action = params["action"]
    if action == "add_tag":
        score = int(params["score"])
        return _("Add %(tag)s (%(score)s) to %(target)s") % {
            "tag": params["tag"], "score": f"{'+' if score > 0 else ''}{score}", "target": target}
    if action == "set_tag_score":
        return _("Set %(tag)s to %(score)d on %(target)s") % {"tag": params["tag"], "score": int(params["score"]),
                                                              "target": target}
    if action == "remove_tag":
        return _("Remove %(tag)s from %(target)s") % {"tag": params["tag"], "target": target}
    return _("Assign an owner to %(target)s") % {"target": target}


@require_GET
@role_required(MARKETER)
def bulk_status(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id, kind="contacts_bulk")
    return render(request, "contacts/bulk_status.html",
                  {"job": job, "poll_url": reverse("contacts:bulk_status", kwargs={"job_id": job.pk})})


@require_POST
@role_required(MARKETER)
def contact_export(request: HttpRequest) -> HttpResponse:
    """Export the contacts matching the list's filters (``query``, the list's own parameters) or the
    ticked ones (``ids``) to CSV, as a Job: the worker writes the file and the job's page offers it
    for download. htmx shows the job's progress above the list; a plain POST goes to the job's page."""
    ids = list(dict.fromkeys(value.strip() for value in request.POST.getlist("ids") if value.strip().isdigit()))
    ids = ids[:SELECTION_LIMIT]
    params: dict[str, str] = {}
    link = None
    if ids:
        params["ids"] = ",".join(ids)
        target = ngettext("%(count)d selected contact", "%(count)d selected contacts", len(ids)) % {"count": len(ids)}
    else:
        # the list's parameters without the empty ones its form sends (they filter nothing), so the
        # job's page shows what was exported
        list_params = QueryDict(mutable=True)
        for name, values in QueryDict(request.POST.get("query", "")).lists():
            if name != "page" and any(values):
                list_params.setlist(name, [value for value in values if value])
        query = list_params.urlencode()
        filtered = ContactFilterSet(QueryDict(query), queryset=Contact.objects.all()).is_filtered
        if query:
            params["query"] = query
        target = _("all contacts matching the filters") if filtered else _("all contacts")
        if filtered:
            link = (_("Contacts"), _("The list with these filters"), f"{reverse('contacts:list')}?{query}")
    # the job's title and link are stored: written in the language of the person who started it
    title = _("Export %(target)s to CSV") % {"target": target}
    job = job_start(contacts_export_task, title=title, params=params, user=request.user, link=link)
    if not wants_fragment(request):
        return redirect("jobs:detail", job_id=job.pk)
    response = render(request, "includes/job_progress.html", {
        "job": job, "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk})})
    return toast(response, _("Started: %(title)s") % {"title": title}, "info")
