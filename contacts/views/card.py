"""The contact card (/contacts/<id>/) and its fragments: tags with their score history, the
timeline, notes, owner, consents, the GDPR export and erasure.

What other areas know about the contact comes from ``contacts.registry``: the words beside the
score (leads' temperature) and the panels the card loads from leads, loyalty and segments. Sales
read the card, write notes and take or give up leads; everything else is the Marketer's."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.db import DataError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.filters import owner_choices
from contacts.forms import (
    ConsentForm,
    EraseForm,
    NoteForm,
    OwnerForm,
    TagAddForm,
    TagStepForm,
    first_error,
)
from contacts.models import (
    CONSENT_CHANNEL_LABELS,
    CONSENT_CHANNELS,
    EVENT_TYPE_CHOICES,
    Consent,
    ConsentChange,
    Contact,
    Note,
    Tag,
)
from contacts.registry import CARD_PANELS, CARD_SUMMARIES, SCORE_LABELS
from contacts.selectors import contact_notes, contact_tags, contact_timeline, product_preferences, tag_changes
from contacts.services import (
    OwnerChangeRefused,
    consents_record,
    contact_erase,
    contact_export,
    contact_owner_set,
    contact_representation,
)
from core.htmx import ToastLevel, toast
from core.roles import ADMIN, MARKETER, SALES, has_role, role_required, roles_of


def _get_contact(contact_id: int, *, anonymous: bool = False) -> Contact:
    """The contact; ``anonymous``: an anonymous visitor's profile too (admins may look at one)."""
    contacts = Contact.all_objects if anonymous else Contact.objects
    return get_object_or_404(contacts.select_related("owner").defer("search_document"), pk=contact_id)


def _can_edit_tags(user: object) -> bool:
    return has_role(user, MARKETER)


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
        "layout": {"margin": {"l": 110, "r": 16, "t": 8, "b": 32}, "xaxis": {"title": {"text": _("score")}},
                   "yaxis": {"automargin": True}, "bargap": 0.35},
    }


def _tags_context(request: HttpRequest, contact: Contact) -> dict:
    tags = contact_tags(contact)
    # ~18px a bar: at a fixed 200px Plotly drops every other tag name once there are ~10 tags
    tags_chart_height = 60 + 18 * min(len(tags), 15)
    return {"contact": contact, "tags": tags, "tags_chart": _tags_chart(tags),
            "tags_chart_height": tags_chart_height, "can_edit_tags": _can_edit_tags(request.user)}


def _timeline_context(contact: Contact, data: QueryDict) -> dict:
    event_type = data.get("type", "")
    if event_type not in dict(EVENT_TYPE_CHOICES):
        event_type = ""
    try:
        page = max(int(data.get("page", 1)), 1)
    except ValueError:
        page = 1
    timeline = contact_timeline(contact, event_type=event_type, page=page)
    query = {"type": event_type} if event_type else {}
    return {
        "contact": contact, "events": timeline.events, "event_type": event_type, "event_types": EVENT_TYPE_CHOICES,
        "timeline_page": page, "timeline_has_next": timeline.has_next,
        "timeline_next_query": urlencode({**query, "page": page + 1}),
        "timeline_previous_query": urlencode({**query, "page": page - 1}) if page > 1 else "",
    }


def _notes_context(request: HttpRequest, contact: Contact, *, form: NoteForm | None = None) -> dict:
    notes = contact_notes(contact, reader_id=request.user.pk)
    return {"contact": contact, "notes": notes, "note_form": form or NoteForm()}


def _consents_context(request: HttpRequest, contact: Contact) -> dict:
    consents = list(Consent.objects.filter(contact=contact).order_by("channel"))
    history = list(ConsentChange.objects.filter(contact=contact).select_related("user")[:20])
    for consent in consents:
        consent.channel_label = CONSENT_CHANNEL_LABELS.get(consent.channel, consent.channel)  # type: ignore[attr-defined]
    for change in history:
        change.channel_label = CONSENT_CHANNEL_LABELS.get(change.channel, change.channel)  # type: ignore[attr-defined]
    return {
        "contact": contact,
        "consents": consents,
        "consent_history": history,
        "can_edit_tags": _can_edit_tags(request.user),
        "consent_channels": [(channel, CONSENT_CHANNEL_LABELS[channel]) for channel in CONSENT_CHANNELS],
    }


def _owner_context(request: HttpRequest, contact: Contact) -> dict:
    # Sales change the owner only of a lead nobody or they themselves hold (the holder rule of
    # contact_owner_set); a lead someone else holds shows its holder, read-only.
    can_set_owner = has_role(request.user, MARKETER) or (
        has_role(request.user, SALES) and contact.owner_id in (None, request.user.pk))
    return {"contact": contact, "owner_choices": owner_choices()[1:], "can_set_owner": can_set_owner}


def _score_labels(contact: Contact) -> tuple[list[SafeString], list[str]]:
    """The badges after the name and the notes after the score (leads' temperature)."""
    badges: list[SafeString] = []
    notes: list[str] = []
    for label in SCORE_LABELS:
        badge, note = label.card(contact)
        badges.append(mark_safe(badge))  # safe HTML by the registry's contract
        notes.append(note)
    return badges, notes


@require_GET
@role_required(MARKETER, SALES)
def contact_card(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id, anonymous=has_role(request.user, ADMIN))
    if contact.is_anonymous:
        return _anonymous_card(request, contact)
    score_badges, score_notes = _score_labels(contact)
    context = {
        "contact": contact,
        "score_badges": score_badges,
        "score_notes": score_notes,
        # safe HTML by the registry's contract
        "card_summaries": [mark_safe(html) for summary in CARD_SUMMARIES if (html := summary(contact))],
        "preferences": product_preferences(contact),
        "panels": [{"url": reverse(panel.url_name, kwargs={"contact_id": contact.pk}), "title": panel.title,
                    "slug": panel.slug} for panel in CARD_PANELS],
        "can_edit": _can_edit_tags(request.user),
        "can_export": has_role(request.user, MARKETER),
        "can_erase": has_role(request.user, ADMIN),  # GDPR erasure is for admins only
    }
    context.update(_tags_context(request, contact))
    context.update(_timeline_context(contact, request.GET))
    context.update(_notes_context(request, contact))
    context.update(_consents_context(request, contact))
    context.update(_owner_context(request, contact))
    return render(request, "contacts/card.html", context)


def _anonymous_card(request: HttpRequest, contact: Contact) -> HttpResponse:
    """An anonymous visitor's profile, read-only (admins): what the rules made of its events."""
    timeline = contact_timeline(contact)
    identities = contact_representation(contact)
    return render(request, "contacts/anonymous_card.html", {
        "contact": contact, "tags": contact_tags(contact), "events": timeline.events, "has_more": timeline.has_next,
        "anonymous_ids": identities.get("anonymous_ids") or [], "user_id": identities.get("user_id"),
        "retention_days": settings.MH_ANONYMOUS_RETENTION_DAYS,
    })


# --- tags -------------------------------------------------------------------------------------------
def _render_tags(request: HttpRequest, contact: Contact, message: str = "", level: ToastLevel = "success") -> HttpResponse:
    response = render(request, "contacts/card.html#tags", _tags_context(request, contact))
    return toast(response, message, level) if message else response


@require_POST
@role_required(MARKETER)
def card_tag_add(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    form = TagAddForm(request.POST)
    if not form.is_valid():
        return _render_tags(request, contact, _("Tag not added: %(problem)s") % {"problem": first_error(form)}, "error")
    name, score = form.cleaned_data["tag"], form.cleaned_data["score"]
    try:
        new_score = contact.add_tag(name, score, user=request.user)
    except DataError:
        return _render_tags(request, contact, _("The tag's score would leave the allowed range."), "error")
    if new_score:
        message = _("%(tag)s: %(delta)s, now %(score)s.") % {"tag": name, "delta": f"{score:+d}", "score": new_score}
    else:
        message = _("%(tag)s: %(delta)s, removed.") % {"tag": name, "delta": f"{score:+d}"}
    return _render_tags(request, contact, message)


@require_POST
@role_required(MARKETER)
def card_tag_change(request: HttpRequest, contact_id: int, tag_id: int) -> HttpResponse:
    """+1 / −1 on a chip (``delta``), a typed score (``score``), or remove it (``remove``)."""
    contact = _get_contact(contact_id)
    tag = get_object_or_404(Tag, pk=tag_id)
    form = TagStepForm(request.POST)
    if not form.is_valid():
        return _render_tags(request, contact, first_error(form), "error")
    if form.cleaned_data["remove"]:
        contact.remove_tag(tag.name, user=request.user)
        return _render_tags(request, contact, _("Removed %(tag)s.") % {"tag": tag.name})
    if form.cleaned_data["score"] is not None:
        new_score = contact.set_tag_score(tag.name, form.cleaned_data["score"], user=request.user)
        message = (_("%(tag)s: set to %(score)s.") % {"tag": tag.name, "score": new_score} if new_score
                   else _("Removed %(tag)s.") % {"tag": tag.name})
        return _render_tags(request, contact, message)
    new_score = contact.add_tag(tag.name, form.cleaned_data["delta"], user=request.user)
    return _render_tags(request, contact, f"{tag.name}: {new_score}" if new_score else _("Removed %(tag)s.") % {"tag": tag.name})


@require_GET
@role_required(MARKETER, SALES)
def card_tag_history(request: HttpRequest, contact_id: int, tag_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    tag = get_object_or_404(Tag, pk=tag_id)
    return render(request, "contacts/card.html#tag_history",
                  {"contact": contact, "tag": tag, "changes": tag_changes(contact, tag)})


# --- timeline, notes --------------------------------------------------------------------------------
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
        Note.objects.create(contact=contact, author_id=request.user.pk, text=form.cleaned_data["text"])
        return toast(render(request, "contacts/card.html#notes", _notes_context(request, contact)), _("Note added."))
    return render(request, "contacts/card.html#notes", _notes_context(request, contact, form=form))


@require_http_methods(["GET", "POST"])
@role_required(MARKETER, SALES)
def card_note_edit(request: HttpRequest, contact_id: int, note_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    # Only the author edits a note (Admin may fix any): someone else's note is simply not found.
    notes = Note.objects.filter(contact=contact)
    if ADMIN not in roles_of(request.user):
        notes = notes.filter(author_id=request.user.pk)
    note = get_object_or_404(notes, pk=note_id)
    if request.method == "POST":
        form = NoteForm(request.POST)
        if not form.is_valid():
            response = render(request, "contacts/card.html#notes", _notes_context(request, contact))
            problem = " ".join(map(str, form.errors.get("text", [])))
            return toast(response, _("Note not saved: %(problem)s") % {"problem": problem}, "error")
        Note.objects.filter(pk=note.pk).update(text=form.cleaned_data["text"], updated_at=timezone.now())
        return toast(render(request, "contacts/card.html#notes", _notes_context(request, contact)), _("Note saved."))
    form = NoteForm(initial={"text": note.text})
    return render(request, "contacts/note_edit.html", {"contact": contact, "note": note, "form": form})


# --- owner, consents --------------------------------------------------------------------------------
@require_POST
@role_required(MARKETER, SALES)
def card_owner_set(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    form = OwnerForm(request.POST, owner_choices=owner_choices())
    if not form.is_valid():
        response = render(request, "contacts/card.html#owner", _owner_context(request, contact))
        return toast(response, first_error(form), "error")
    try:
        contact_owner_set(contact, owner_id=form.cleaned_data["owner"], user=request.user)
    except OwnerChangeRefused as exc:
        return toast(render(request, "contacts/card.html#owner", _owner_context(request, contact)), str(exc), "error")
    owner = contact.owner
    response = render(request, "contacts/card.html#owner", _owner_context(request, contact))
    if owner is None:
        return toast(response, _("Owner cleared."))
    return toast(response, _("Owner: %(name)s.") % {"name": owner.get_full_name() or owner.username})


@require_POST
@role_required(MARKETER)
def card_consent_set(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    form = ConsentForm(request.POST)
    if not form.is_valid():
        response = render(request, "contacts/card.html#consents", _consents_context(request, contact))
        return toast(response, _("Pick a channel and grant or withdraw."), "error")
    channel, granted = form.cleaned_data["channel"], form.cleaned_data["granted"]
    with transaction.atomic(), connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk], channels=[channel], granted=[granted],
                        source="manual", user_id=request.user.pk)
    response = render(request, "contacts/card.html#consents", _consents_context(request, contact))
    label = CONSENT_CHANNEL_LABELS.get(channel, channel)
    if granted:
        return toast(response, _("Consent for %(channel)s granted.") % {"channel": label})
    return toast(response, _("Consent for %(channel)s withdrawn.") % {"channel": label})


# --- GDPR -------------------------------------------------------------------------------------------
@require_GET
@role_required(MARKETER)
def card_export_json(request: HttpRequest, contact_id: int) -> JsonResponse:
    contact = _get_contact(contact_id)
    response = JsonResponse(contact_export(contact), json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
    return response


@require_POST
@role_required(ADMIN)
def card_erase(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _get_contact(contact_id)
    form = EraseForm(request.POST, email=contact.email)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("contacts:card", contact_id=contact.pk)
    email = contact.email
    contact_erase(contact, user=request.user)
    messages.success(request, _("%(email)s was erased. A hash of the address keeps it from being re-created "
                                "without new consent.") % {"email": email})
    return redirect("contacts:list")
