"""Contacts: the list (filters, bulk actions, export), the contact card, the tags page and CSV import.

Function-based views; fragments are inline partials of each page's template, rendered for HTMX
requests through ``render_page``. Roles are checked here, never only in templates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import DataError, connection, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.csvio import (
    IMPORT_FIELDS,
    MAX_FILE_BYTES,
    contacts_export_rows,
    csv_lines,
    decode_upload,
    guess_mapping,
    read_header_and_preview,
)
from contacts.filters import ContactFilterSet, owner_choices
from contacts.forms import BulkActionForm, ImportMappingForm, ImportUploadForm, NoteForm, TagEditForm, TagMergeForm
from contacts.models import (
    EVENT_TYPE_CHOICES,
    SCORE_BANDS,
    Consent,
    ConsentChange,
    Contact,
    ContactImport,
    ContactTag,
    Event,
    Note,
    Tag,
    TagScoreChange,
    tag_key,
)
from contacts.services import (
    TagNameTaken,
    clean_tag_name,
    consents_record,
    contact_erase,
    contact_export,
    tag_delete,
    tag_merge,
    tag_overview,
    tag_rename,
)
from contacts.tasks import bulk_apply, contacts_bulk_task, contacts_import_task, tag_stats_recount_task
from core.htmx import render_page, wants_fragment
from core.jobs import job_start
from core.models import Job
from core.roles import ADMIN, MARKETER, SALES, has_role, role_required, roles_of

PER_PAGE = 50
COUNT_CAP = 1_000
MAX_PAGE = 200
SELECTION_LIMIT = 500
TIMELINE_PER_PAGE = 20
CARD_PANELS = (
    ("leads:card_panel", "Lead score & funnels"),
    ("loyalty:card_panel", "Loyalty"),
    ("segments:card_panel", "Segments"),
)


def _toast(response: HttpResponse, message: str, level: str = "success") -> HttpResponse:
    response["HX-Trigger"] = json.dumps({"toast": {"message": message, "level": level}})
    return response


def _can_edit_tags(user) -> bool:
    return has_role(user, MARKETER)


# --- list -----------------------------------------------------------------------------------------
def _planner_estimate(queryset) -> int:
    """The planner's row estimate for the queryset (EXPLAIN, no execution: about a millisecond)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _count(queryset) -> tuple[int, bool]:
    """(count, exact?) — exact up to COUNT_CAP (a LIMITed count is cheap); beyond that the
    planner's estimate, which the page labels as one, so counting never dominates the page time."""
    capped = queryset.order_by()[: COUNT_CAP + 1].count()
    if capped <= COUNT_CAP:
        return capped, True
    return max(_planner_estimate(queryset), COUNT_CAP + 1), False


def top_tags_by_contact(contact_ids: list[int], limit: int = 3) -> dict[int, list[dict]]:
    """The strongest ``limit`` tags of each contact, in one query."""
    if not contact_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT contact_id, name, score, colour FROM (
                SELECT ct.contact_id, t.name, ct.score, t.colour,
                       row_number() OVER (PARTITION BY ct.contact_id ORDER BY ct.score DESC, t.name) AS rank
                FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id
                WHERE ct.contact_id = ANY(%s::bigint[])
            ) ranked WHERE rank <= %s ORDER BY contact_id, rank
            """,
            [contact_ids, limit],
        )
        result: dict[int, list[dict]] = defaultdict(list)
        for contact_id, name, score, colour in cursor.fetchall():
            result[contact_id].append({"name": name, "score": score, "colour": colour})
    return result


def _row_icons() -> dict[str, str]:
    """The few icons every row repeats, rendered once per page (an include per row per icon is
    most of a 50-row page's rendering time)."""
    return {name: render_to_string("includes/icon.html", {"name": name, "size": size})
            for name, size in (("star", 12), ("flame", 20), ("sun", 20), ("snowflake", 20))}


def _list_context(request: HttpRequest, data: QueryDict) -> dict:
    from leads.models import TemperatureSettings

    filterset = ContactFilterSet(data, queryset=Contact.objects.all())
    queryset = filterset.qs
    filtered = filterset.is_filtered
    count, exact = _count(queryset)
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
    thresholds = TemperatureSettings.current()
    tags = top_tags_by_contact([contact.pk for contact in rows])
    for contact in rows:
        contact.temperature = thresholds.temperature_of(contact.score)
        contact.top_tags = tags.get(contact.pk, [])
    query = data.copy()
    query.pop("page", None)
    return {
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
        "is_filtered": filtered,
        "thresholds": thresholds,
        "can_bulk": has_role(request.user, MARKETER),
        "bulk_form": BulkActionForm(owner_choices=owner_choices()),
        "selection_limit": SELECTION_LIMIT,
        "count_cap": COUNT_CAP,
        "icons": _row_icons(),
    }


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
        errors = "; ".join(f"{form.fields[name].label if name in form.fields else name}: {' '.join(errs)}"
                           for name, errs in form.errors.items())
        return _toast(HttpResponse(status=204), errors, "error")
    params = {
        "action": form.cleaned_data["action"],
        "tag": form.cleaned_data.get("tag") or "",
        "score": form.cleaned_data.get("score") or 1,
        "owner": form.cleaned_data.get("owner") or "",
    }
    if form.cleaned_data["scope"] == "all":
        filterset = ContactFilterSet(QueryDict(query), queryset=Contact.objects.all())
        params["query"] = query
        title = _bulk_title(params, "all contacts matching the filters" if filterset.is_filtered else "all contacts")
        job = job_start(contacts_bulk_task, title=title, params=params, user=request.user)
        response = render(request, "contacts/bulk_status.html", {"job": job, "poll_url": reverse(
            "contacts:bulk_status", kwargs={"job_id": job.pk})})
        return _toast(response, "Started: " + title, "info")
    ids = form.cleaned_data["ids"]
    if not ids:
        return _toast(HttpResponse(status=204), "Tick some contacts first, or use “all matching”.", "warning")
    with transaction.atomic():
        changed = bulk_apply(Contact.objects.filter(pk__in=ids), params, user=request.user)
    context = _list_context(request, QueryDict(query))
    response = render(request, "contacts/list.html#results", context)
    return _toast(response, _bulk_title(params, f"{len(ids)} selected contacts") + f" — {changed} changed.")


def _bulk_title(params: dict, target: str) -> str:
    action = params["action"]
    if action == "add_tag":
        score = int(params["score"])
        return f"Add {params['tag']} ({'+' if score > 0 else ''}{score}) to {target}"
    if action == "remove_tag":
        return f"Remove {params['tag']} from {target}"
    return f"Assign an owner to {target}"


@require_GET
@role_required(MARKETER)
def bulk_status(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id, kind="contacts_bulk")
    return render(request, "contacts/bulk_status.html",
                  {"job": job, "poll_url": reverse("contacts:bulk_status", kwargs={"job_id": job.pk})})


@require_GET
@role_required(MARKETER)
def contact_export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """CSV of the filtered list, or of ``ids``; streamed, every cell formula-escaped."""
    ids = [int(value) for value in request.GET.get("ids", "").split(",") if value.strip().isdigit()]
    if ids:
        queryset = Contact.objects.filter(pk__in=ids[:SELECTION_LIMIT]).order_by("id")
    else:
        queryset = ContactFilterSet(request.GET, queryset=Contact.objects.all()).qs
    response = StreamingHttpResponse(csv_lines(contacts_export_rows(queryset)), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="contacts-{stamp}.csv"'
    return response


# --- card -------------------------------------------------------------------------------------------
def _contact_tags(contact: Contact) -> list[dict]:
    rows = list(
        ContactTag.objects.filter(contact=contact).order_by("-score", "tag__name")
        .values("tag_id", "tag__name", "tag__colour", "score", "last_assigned_at")
    )
    strongest = rows[0]["score"] if rows else None
    return [{"id": row["tag_id"], "name": row["tag__name"], "colour": row["tag__colour"], "score": row["score"],
             "last_assigned_at": row["last_assigned_at"], "strongest": row["score"] == strongest} for row in rows]


def _tags_chart(tags: list[dict]) -> dict | None:
    if not tags:
        return None
    shown = tags[:15][::-1]  # horizontal bars, strongest on top
    return {
        "data": [{
            "type": "bar", "orientation": "h",
            "x": [tag["score"] for tag in shown], "y": [tag["name"] for tag in shown],
            "marker": {"color": ["#4f46e5" if tag["strongest"] else "#a5b4fc" for tag in shown]},
            "hovertemplate": "%{y}: %{x}<extra></extra>",
        }],
        "layout": {"margin": {"l": 110, "r": 16, "t": 8, "b": 32}, "xaxis": {"title": {"text": "score"}},
                   "yaxis": {"automargin": True}, "bargap": 0.35},
    }


def _tags_context(request: HttpRequest, contact: Contact) -> dict:
    tags = _contact_tags(contact)
    # ~18px a bar: at a fixed 200px Plotly drops every other tag name once there are ~10 tags
    tags_chart_height = 60 + 18 * min(len(tags), 15)
    return {"contact": contact, "tags": tags, "tags_chart": _tags_chart(tags),
            "tags_chart_height": tags_chart_height, "can_edit_tags": _can_edit_tags(request.user)}


def _timeline_context(contact: Contact, data: QueryDict) -> dict:
    """One page of events, each with what it caused (tag scores, points, stage moves) and by which rule."""
    from automation.models import Rule
    from leads.models import ScoreChange, StageTransition

    event_type = data.get("type", "")
    if event_type not in dict(EVENT_TYPE_CHOICES):
        event_type = ""
    try:
        page = max(int(data.get("page", 1)), 1)
    except ValueError:
        page = 1
    events = Event.objects.filter(contact=contact)
    if event_type:
        events = events.filter(type=event_type)
    offset = (page - 1) * TIMELINE_PER_PAGE
    rows = list(events.order_by("-occurred_at").values("id", "event_id", "type", "occurred_at", "properties",
                                                      "value")[offset: offset + TIMELINE_PER_PAGE + 1])
    has_next = len(rows) > TIMELINE_PER_PAGE
    rows = rows[:TIMELINE_PER_PAGE]
    pks = [row["id"] for row in rows]
    effects: dict[int, list[dict]] = defaultdict(list)
    rule_ids: set[int] = set()
    if pks:
        for event_pk, name, delta, rule_id in TagScoreChange.objects.filter(
                event_pk__in=pks, contact=contact).values_list("event_pk", "tag__name", "delta", "rule_id"):
            effects[event_pk].append({"kind": "tag", "text": f"{delta:+d} {name}", "rule_id": rule_id})
            rule_ids.add(rule_id)
        for event_pk, delta, rule_id in ScoreChange.objects.filter(
                event_pk__in=pks, contact=contact).values_list("event_pk", "delta", "rule_id"):
            effects[event_pk].append({"kind": "score", "text": f"{delta:+d} points", "rule_id": rule_id})
            rule_ids.add(rule_id)
        for event_pk, funnel, stage, rule_id in StageTransition.objects.filter(
                event_pk__in=pks, contact=contact).values_list("event_pk", "funnel__name", "to_stage__name", "rule_id"):
            effects[event_pk].append({"kind": "stage", "text": f"→ {stage} ({funnel})", "rule_id": rule_id})
            rule_ids.add(rule_id)
    rule_ids.discard(None)
    rule_names = dict(Rule.objects.filter(pk__in=rule_ids).values_list("pk", "name")) if rule_ids else {}
    type_labels = dict(EVENT_TYPE_CHOICES)
    for row in rows:
        row["type_label"] = type_labels.get(row["type"], row["type"])
        caused = effects.get(row["id"], [])
        by_rule: dict = defaultdict(list)
        for effect in caused:
            by_rule[effect["rule_id"]].append(effect)
        row["effects"] = [
            {"items": items, "rule": rule_names.get(rule_id, f"rule #{rule_id}" if rule_id else "")}
            for rule_id, items in by_rule.items()
        ]
        properties = row["properties"] or {}
        row["summary"] = " · ".join(
            str(properties[key]) for key in ("product_name", "category", "brand", "url", "campaign", "name")
            if properties.get(key) not in (None, "")
        )[:160]
    query = {"type": event_type} if event_type else {}
    return {
        "contact": contact, "events": rows, "event_type": event_type, "event_types": EVENT_TYPE_CHOICES,
        "timeline_page": page, "timeline_has_next": has_next,
        "timeline_next_query": urlencode({**query, "page": page + 1}),
        "timeline_previous_query": urlencode({**query, "page": page - 1}) if page > 1 else "",
    }


def _product_preferences(contact: Contact) -> dict:
    """Top categories and brands and the price band of the products this contact viewed (last 2000 views)."""
    with connection.cursor() as cursor:
        cursor.execute(
            r"""
            WITH views AS (
                SELECT properties ->> 'category' AS category, properties ->> 'brand' AS brand,
                       CASE WHEN properties ->> 'price' ~ '^\d{1,12}(\.\d+)?$' THEN (properties ->> 'price')::numeric END AS price
                FROM automation_event
                WHERE contact_id = %s AND type = 'product_view'
                ORDER BY occurred_at DESC LIMIT 2000
            )
            SELECT
                (SELECT coalesce(json_agg(c), '[]') FROM (
                    SELECT category AS name, count(*) AS views FROM views WHERE coalesce(category, '') <> ''
                    GROUP BY category ORDER BY views DESC, category LIMIT 5) c),
                (SELECT coalesce(json_agg(b), '[]') FROM (
                    SELECT brand AS name, count(*) AS views FROM views WHERE coalesce(brand, '') <> ''
                    GROUP BY brand ORDER BY views DESC, brand LIMIT 5) b),
                (SELECT json_build_object(
                    'low', percentile_cont(0.25) WITHIN GROUP (ORDER BY price),
                    'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY price),
                    'high', percentile_cont(0.75) WITHIN GROUP (ORDER BY price),
                    'priced', count(price), 'views', count(*)) FROM views)
            """,
            [contact.pk],
        )
        categories, brands, prices = cursor.fetchone()

    def decode(value):
        return json.loads(value) if isinstance(value, str) else value

    categories, brands, prices = decode(categories), decode(brands), decode(prices)
    top = max([item["views"] for item in categories + brands] or [1])
    for item in categories + brands:
        item["percent"] = round(100 * item["views"] / top)
    return {"categories": categories, "brands": brands, "prices": prices}


def _notes_context(request: HttpRequest, contact: Contact, *, form: NoteForm | None = None) -> dict:
    notes = list(Note.objects.filter(contact=contact).select_related("author")[:30])
    for note in notes:
        note.editable = note.author_id == request.user.pk
        # created_at and updated_at both default to now() on insert, microseconds apart: only a
        # later save is an edit
        note.was_edited = (note.updated_at - note.created_at).total_seconds() > 1
    return {"contact": contact, "notes": notes, "note_form": form or NoteForm()}


def _consents_context(request: HttpRequest, contact: Contact) -> dict:
    return {
        "contact": contact,
        "consents": list(Consent.objects.filter(contact=contact).order_by("channel")),
        "consent_history": list(ConsentChange.objects.filter(contact=contact).select_related("user")[:20]),
        "can_edit_tags": _can_edit_tags(request.user),
        "consent_channels": ("email", "sms", "phone", "push"),
    }


def _owner_context(request: HttpRequest, contact: Contact) -> dict:
    return {"contact": contact, "owner_choices": owner_choices()[1:],
            "can_set_owner": has_role(request.user, MARKETER, SALES)}


def _panels(contact: Contact) -> list[dict]:
    panels = []
    for url_name, title in CARD_PANELS:
        try:
            panels.append({"url": reverse(url_name, kwargs={"contact_id": contact.pk}), "title": title,
                           "slug": url_name.split(":")[0]})
        except NoReverseMatch:
            continue  # that area has not wired its panel yet
    return panels


def _get_contact(contact_id: int) -> Contact:
    return get_object_or_404(Contact.objects.select_related("owner").defer("search_document"), pk=contact_id)


@require_GET
@role_required(MARKETER, SALES)
def contact_card(request: HttpRequest, contact_id: int) -> HttpResponse:
    from leads.models import TemperatureSettings

    contact = _get_contact(contact_id)
    thresholds = TemperatureSettings.current()
    context = {
        "contact": contact,
        "temperature": thresholds.temperature_of(contact.score),
        "thresholds": thresholds,
        "preferences": _product_preferences(contact),
        "panels": _panels(contact),
        "can_edit": _can_edit_tags(request.user),
        "can_erase": has_role(request.user, MARKETER),
    }
    context.update(_tags_context(request, contact))
    context.update(_timeline_context(contact, request.GET))
    context.update(_notes_context(request, contact))
    context.update(_consents_context(request, contact))
    context.update(_owner_context(request, contact))
    return render(request, "contacts/card.html", context)


def _render_tags(request: HttpRequest, contact: Contact, message: str = "", level: str = "success") -> HttpResponse:
    response = render(request, "contacts/card.html#tags", _tags_context(request, contact))
    return _toast(response, message, level) if message else response


@require_POST
@role_required(MARKETER)
def card_tag_add(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    try:
        name = clean_tag_name(request.POST.get("tag", ""))
        score = int(request.POST.get("score") or 1)
        if not -1_000_000 <= score <= 1_000_000 or score == 0:
            raise ValueError("Score must be a whole number other than 0, at most 1,000,000 either way.")
    except ValueError as exc:
        return _render_tags(request, contact, f"Tag not added: {exc}", "error")
    try:
        new_score = contact.add_tag(name, score, user=request.user)
    except DataError:
        return _render_tags(request, contact, "The tag's score would leave the allowed range.", "error")
    verb = f"now {new_score}" if new_score else "removed"
    return _render_tags(request, contact, f"{name}: {score:+d}, {verb}.")


@require_POST
@role_required(MARKETER)
def card_tag_change(request: HttpRequest, contact_id: int, tag_id: int) -> HttpResponse:
    """+1 / −1 on a chip (``delta``), or remove it (``remove``)."""
    contact = _get_contact(contact_id)
    tag = get_object_or_404(Tag, pk=tag_id)
    if request.POST.get("remove"):
        contact.remove_tag(tag.name, user=request.user)
        return _render_tags(request, contact, f"Removed {tag.name}.")
    try:
        delta = int(request.POST.get("delta", "1"))
    except ValueError:
        delta = 0
    if delta not in (1, -1):
        return _render_tags(request, contact, "Use + or − to change a score by one.", "error")
    new_score = contact.add_tag(tag.name, delta, user=request.user)
    return _render_tags(request, contact, f"{tag.name}: {new_score}" if new_score else f"Removed {tag.name}.")


@require_GET
@role_required(MARKETER, SALES)
def card_tag_history(request: HttpRequest, contact_id: int, tag_id: int) -> HttpResponse:
    from automation.models import Rule

    contact = _get_contact(contact_id)
    tag = get_object_or_404(Tag, pk=tag_id)
    changes = list(TagScoreChange.objects.filter(contact=contact, tag=tag).select_related("user")
                   .order_by("-created_at", "-id")[:50])
    rule_ids = {change.rule_id for change in changes if change.rule_id}
    rule_names = dict(Rule.objects.filter(pk__in=rule_ids).values_list("pk", "name")) if rule_ids else {}
    for change in changes:
        change.rule_name = rule_names.get(change.rule_id, f"rule #{change.rule_id}" if change.rule_id else "")
    return render(request, "contacts/card.html#tag_history", {"contact": contact, "tag": tag, "changes": changes})


@require_GET
@role_required(MARKETER, SALES)
def tag_autocomplete(request: HttpRequest) -> HttpResponse:
    """Tag names starting with (then containing) what was typed, most used first is not needed: A→Z."""
    text = tag_key(request.GET.get("tag") or request.GET.get("q") or request.GET.get("into") or "")
    tags = []
    if text:
        starts = list(Tag.objects.filter(key__startswith=text).order_by("key").values_list("name", flat=True)[:8])
        more = list(Tag.objects.filter(key__contains=text).exclude(key__startswith=text).order_by("key")
                    .values_list("name", flat=True)[: 8 - len(starts)]) if len(starts) < 8 else []
        tags = starts + more
    return render(request, "contacts/tag_autocomplete.html", {"tags": tags, "typed": text,
                                                               "exact": text in {tag_key(t) for t in tags}})


@require_GET
@role_required(MARKETER, SALES)
def card_timeline(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    return render(request, "contacts/card.html#timeline", _timeline_context(contact, request.GET))


@require_POST
@role_required(MARKETER, SALES)
def card_note_add(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    form = NoteForm(request.POST)
    if form.is_valid():
        Note.objects.create(contact=contact, author=request.user, text=form.cleaned_data["text"])
        response = render(request, "contacts/card.html#notes", _notes_context(request, contact))
        return _toast(response, "Note added.")
    return render(request, "contacts/card.html#notes", _notes_context(request, contact, form=form))


@require_http_methods(["GET", "POST"])
@role_required(MARKETER, SALES)
def card_note_edit(request: HttpRequest, contact_id: int, note_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    # Only the author edits a note (Admin may fix any): someone else's note is simply not found.
    notes = Note.objects.filter(contact=contact)
    if ADMIN not in roles_of(request.user):
        notes = notes.filter(author=request.user)
    note = get_object_or_404(notes, pk=note_id)
    if request.method == "POST":
        form = NoteForm(request.POST)
        if not form.is_valid():
            response = render(request, "contacts/card.html#notes", _notes_context(request, contact))
            return _toast(response, "Note not saved: " + " ".join(form.errors.get("text", [])), "error")
        Note.objects.filter(pk=note.pk).update(text=form.cleaned_data["text"], updated_at=timezone.now())
        return _toast(render(request, "contacts/card.html#notes", _notes_context(request, contact)), "Note saved.")
    else:
        form = NoteForm(initial={"text": note.text})
    return render(request, "contacts/note_edit.html", {"contact": contact, "note": note, "form": form})


@require_POST
@role_required(MARKETER, SALES)
def card_owner_set(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    value = request.POST.get("owner", "")
    allowed = {key for key, _ in owner_choices()}
    if value not in allowed and value != "":
        response = render(request, "contacts/card.html#owner", _owner_context(request, contact))
        return _toast(response, "Pick an owner from the list (a Sales user).", "error")
    owner = get_user_model().objects.get(pk=int(value)) if value not in ("", "none") else None
    Contact.objects.filter(pk=contact.pk).assign_owner(owner)
    contact.owner = owner
    response = render(request, "contacts/card.html#owner", _owner_context(request, contact))
    return _toast(response, f"Owner: {owner.get_full_name() or owner.username}." if owner else "Owner cleared.")


@require_POST
@role_required(MARKETER)
def card_consent_set(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    channel = request.POST.get("channel", "")
    granted = request.POST.get("granted")
    if channel not in ("email", "sms", "phone", "push") or granted not in ("yes", "no"):
        response = render(request, "contacts/card.html#consents", _consents_context(request, contact))
        return _toast(response, "Pick a channel and grant or withdraw.", "error")
    with transaction.atomic(), connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=[channel], granted=[granted == "yes"],
                        source="manual", user_id=request.user.pk)
    response = render(request, "contacts/card.html#consents", _consents_context(request, contact))
    return _toast(response, f"Consent for {channel} {'granted' if granted == 'yes' else 'withdrawn'}.")


@require_GET
@role_required(MARKETER)
def card_export_json(request: HttpRequest, contact_id: int) -> JsonResponse:
    contact = _get_contact(contact_id)
    response = JsonResponse(contact_export(contact), json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
    return response


@require_POST
@role_required(MARKETER)
def card_erase(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    if request.POST.get("confirm_email", "").strip().lower() != contact.email:
        messages.error(request, "Type the contact's email exactly to confirm the erasure.")
        return redirect("contacts:card", contact_id=contact.pk)
    email = contact.email
    contact_erase(contact, user=request.user)
    messages.success(request, f"{email} was erased. A hash of the address keeps it from being re-created "
                              "without new consent.")
    return redirect("contacts:list")


# --- tags page ------------------------------------------------------------------------------------
def _tags_page_context(request: HttpRequest) -> dict:
    search = (request.GET.get("q") or "").strip()
    overview = tag_overview(search=search)
    list_url = reverse("contacts:list")
    for tag in overview.tags:
        tag.list_url = f"{list_url}?{urlencode({'tag': tag.name})}"
    chart = None
    if any(overview.bands):
        chart = {
            "data": [{"type": "bar", "x": SCORE_BANDS, "y": overview.bands,
                      "marker": {"color": "#6366f1"}, "hovertemplate": "score %{x}: %{y} contact-tags<extra></extra>"}],
            "layout": {"margin": {"l": 56, "r": 16, "t": 8, "b": 40}, "xaxis": {"title": {"text": "score"}, "type": "category"},
                       "yaxis": {"title": {"text": "contact-tags"}}, "bargap": 0.3},
        }
    icons = {name: render_to_string("includes/icon.html", {"name": name}) for name in ("edit", "trash")}
    return {"tags": overview.tags, "overview": overview, "search": search, "chart": chart, "icons": icons,
            "can_edit": has_role(request.user, MARKETER)}


@require_GET
@role_required(MARKETER)
def tag_list(request: HttpRequest) -> HttpResponse:
    return render_page(request, "contacts/tags.html", _tags_page_context(request), partial="tag_table")


@require_GET
@role_required(MARKETER)
def tag_dialog(request: HttpRequest, tag_id: int, kind: str) -> HttpResponse:
    """The edit, merge or delete form of one tag, for the Tags page's shared dialog, with the
    exact number of contacts that carry it (one index-only count)."""
    if kind not in ("edit", "merge", "delete"):
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
    job = job_start(tag_stats_recount_task, title="Recount tags", user=request.user)
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
            messages.success(request, f"Saved {tag.name}.")
        except TagNameTaken as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
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
            messages.error(request, f"No tag is named “{name}”: pick an existing tag to merge into.")
        elif target.pk == source.pk:
            messages.error(request, f"{source.name} cannot be merged into itself: pick another tag.")
        else:
            merged = tag_merge(source, target, user=request.user)
            messages.success(request, f"Merged {source.name} into {target.name}: {merged} contacts' scores added up.")
    else:
        messages.error(request, "Pick the tag to merge into.")
    return redirect("contacts:tags")


@require_POST
@role_required(MARKETER)
def tag_delete_view(request: HttpRequest, tag_id: int) -> HttpResponse:
    tag = get_object_or_404(Tag, pk=tag_id)
    name = tag.name
    removed = tag_delete(tag)
    messages.success(request, f"Deleted {name}; {removed} contacts lost it.")
    return redirect("contacts:tags")


# --- import ---------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            text = decode_upload(upload.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES])
            header, _preview = read_header_and_preview(text)
        except ValueError as exc:
            form.add_error("file", str(exc))
        else:
            contact_import = ContactImport.objects.create(
                filename=upload.name[:255], content=text, header=header, mapping=guess_mapping(header),
                created_by=request.user,
            )
            return redirect("contacts:import_detail", import_id=contact_import.pk)
    recent = ContactImport.objects.only("pk", "filename", "status", "created_at", "total_rows", "imported_rows",
                                        "error_rows").order_by("-created_at")[:10]
    return render(request, "contacts/import.html", {"form": form, "recent": recent, "fields": IMPORT_FIELDS})


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    contact_import = get_object_or_404(ContactImport, pk=import_id)
    header = contact_import.header
    if request.method == "POST" and contact_import.status == ContactImport.Status.UPLOADED:
        form = ImportMappingForm(request.POST, header=header)
        if form.is_valid():
            contact_import.mapping = form.mapping()
            contact_import.status = ContactImport.Status.QUEUED
            job = job_start(contacts_import_task, title=f"Import {contact_import.filename}",
                            params={"import_id": contact_import.pk}, user=request.user)
            contact_import.job_id = job.pk
            contact_import.save(update_fields=["mapping", "status", "job_id"])
            return redirect("contacts:import_detail", import_id=contact_import.pk)
    else:
        form = ImportMappingForm(initial=contact_import.mapping, header=header)
    _, preview = read_header_and_preview(contact_import.content)
    return render(request, "contacts/import_detail.html", {
        "contact_import": contact_import, "form": form, "header": header, "preview": preview,
        **_import_status_context(contact_import),
    })


def _import_status_context(contact_import: ContactImport) -> dict:
    job = Job.objects.filter(pk=contact_import.job_id).first() if contact_import.job_id else None
    return {"contact_import": contact_import, "job": job,
            "poll_url": reverse("contacts:import_status", kwargs={"import_id": contact_import.pk}),
            "errors_preview": contact_import.errors[:20] if contact_import.status == ContactImport.Status.DONE else []}


@require_GET
@role_required(MARKETER)
def import_status(request: HttpRequest, import_id: int) -> HttpResponse:
    contact_import = get_object_or_404(ContactImport.objects.defer("content"), pk=import_id)
    return render(request, "contacts/import_detail.html#status", _import_status_context(contact_import))


@require_GET
@role_required(MARKETER)
def import_errors(request: HttpRequest, import_id: int) -> StreamingHttpResponse:
    contact_import = get_object_or_404(ContactImport.objects.defer("content"), pk=import_id)
    rows = [["row", "column", "problem"], *contact_import.errors]
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{contact_import.pk}-errors.csv"'
    return response

