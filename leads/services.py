"""Working a lead: claiming, assigning, status changes and notes.

Who may do what (enforced here, not in templates):
- Marketers and Admins may assign any lead to anyone, and change any lead's status.
- Sales may claim an unassigned lead, release their own, and change the status of leads they
  own. Changing the status of an unassigned lead claims it first (in the same transaction);
  a lead held by someone else is read-only for them — they see who holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import Contact, Note
from core.roles import ADMIN, MARKETER, SALES, has_role
from leads.models import LeadStatusChange

STATUSES = [choice for choice, _ in Contact.LeadStatus.choices]
OPEN_STATUSES = ("new", "contacted", "qualified")
NOTE_MAX = 5000


class LeadError(Exception):
    """A refused lead action, with the field it concerns and a message for the user."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def lead_is_manager(user) -> bool:
    """Marketers and Admins manage every lead."""
    return has_role(user, MARKETER)


def lead_can_edit(user, contact: Contact) -> bool:
    if lead_is_manager(user):
        return True
    return has_role(user, SALES) and contact.owner_id in (None, user.pk)


def lead_assignees():
    """Users a lead may be assigned to: people with the Sales, Marketer or Admin role."""
    return (
        get_user_model()
        .objects.filter(Q(groups__name__in=[SALES, MARKETER, ADMIN]) | Q(is_superuser=True), is_active=True)
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


def lead_claim(*, contact: Contact, user) -> Contact:
    """Take an unassigned lead. A race with another claimer is settled by the conditional UPDATE:
    exactly one wins, the other is told who holds it."""
    if not has_role(user, SALES, MARKETER):
        raise LeadError(_("Your role may not claim leads."))
    claimed = Contact.objects.filter(pk=contact.pk).filter(Q(owner__isnull=True) | Q(owner=user)).update(
        owner=user, updated_at=timezone.now()
    )
    contact.refresh_from_db(fields=["owner", "updated_at"])
    if not claimed:
        raise LeadError(_("%(holder)s already holds this lead.") % {"holder": _user_label(contact.owner)}, "owner")
    return contact


def lead_release(*, contact: Contact, user) -> Contact:
    if not (lead_is_manager(user) or contact.owner_id == user.pk):
        raise LeadError(_("Only the lead's holder or a manager may release it."), "owner")
    Contact.objects.filter(pk=contact.pk).update(owner=None, updated_at=timezone.now())
    contact.refresh_from_db(fields=["owner", "updated_at"])
    return contact


def lead_assign(*, contact: Contact, owner_id: int | None, user) -> Contact:
    """Managers assign to anyone (or nobody); Sales may only take an unassigned lead or give theirs up."""
    if owner_id == contact.owner_id:
        return contact
    if not lead_is_manager(user):
        if owner_id == user.pk:
            return lead_claim(contact=contact, user=user)
        if owner_id is None:
            return lead_release(contact=contact, user=user)
        raise LeadError(_("Only marketers and admins may assign leads to other people."), "owner")
    if owner_id is not None and not lead_assignees().filter(pk=owner_id).exists():
        raise LeadError(_("Choose a sales, marketing or admin user."), "owner")
    Contact.objects.filter(pk=contact.pk).update(owner_id=owner_id, updated_at=timezone.now())
    contact.refresh_from_db(fields=["owner", "updated_at"])
    return contact


@dataclass
class LeadUpdate:
    changed_status: bool = False
    note: Note | None = None


def lead_update(*, contact: Contact, user, status: str, note_text: str = "") -> LeadUpdate:
    """Set the status and/or add a note in one step. A lost lead needs a reason: the note text.
    Everything or nothing is written."""
    status = (status or "").strip()
    note_text = (note_text or "").strip()
    if status not in STATUSES:
        raise LeadError(_("Choose one of new, contacted, qualified, won, lost."), "status")
    if len(note_text) > NOTE_MAX:
        raise LeadError(_("A note may be at most %(max)s characters.") % {"max": NOTE_MAX}, "note")
    status_changes = status != contact.lead_status
    if status_changes and status == Contact.LeadStatus.LOST and not note_text:
        raise LeadError(_("Say why the lead was lost: a reason is required."), "note")
    if not status_changes and not note_text:
        raise LeadError(_("Nothing to save: change the status or write a note."), "note")
    result = LeadUpdate()
    with transaction.atomic():
        locked = Contact.objects.select_for_update(of=("self",)).select_related("owner").get(pk=contact.pk)
        if not lead_can_edit(user, locked):
            raise LeadError(_("%(holder)s holds this lead; only they or a manager may update it.")
                            % {"holder": _user_label(locked.owner)}, "owner")
        if locked.owner_id is None and not lead_is_manager(user):
            locked.owner = user  # Sales working an unassigned lead claims it
        now = timezone.now()
        if status != locked.lead_status:
            LeadStatusChange.objects.create(
                contact=locked, from_status=locked.lead_status, to_status=status,
                reason=note_text if status == Contact.LeadStatus.LOST else "", user=user, created_at=now,
            )
            locked.lead_status = status
            locked.lead_status_reason = note_text if status == Contact.LeadStatus.LOST else ""
            locked.lead_status_changed_at = now
            result.changed_status = True
        locked.updated_at = now
        locked.save(update_fields=["owner", "lead_status", "lead_status_reason", "lead_status_changed_at", "updated_at"])
        if note_text:
            text = _("Lost: %(reason)s") % {"reason": note_text} if result.changed_status and status == Contact.LeadStatus.LOST else note_text
            result.note = Note.objects.create(contact=locked, author=user, text=text, created_at=now, updated_at=now)
    contact.refresh_from_db()
    return result


def _user_label(user) -> str:
    if user is None:
        return _("Nobody")
    return user.get_full_name() or user.username
