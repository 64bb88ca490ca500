"""People: creating, editing, switching off and deleting users, and sending them a password reset
link, with the one rule that keeps the workspace manageable — at least one active Admin stays.

Every change is audited by the triggers of ``marketing_hub.models`` under the acting admin's
pghistory context. Changes that could remove an admin are serialised by a row lock on the Admin
group, so two admins demoting each other at the same moment cannot leave nobody in charge."""

from __future__ import annotations

from typing import Any

import pghistory
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from core.audit import actors_name
from core.roles import ADMIN, ALL_ROLES, role_label, roles_of
from marketing_hub.forms import UserPasswordResetForm
from marketing_hub.models import AuditedUser, UserPreference


class UserChangeRefused(Exception):
    """The change would lock the workspace out (the last active admin) or the acting admin out."""


# What an admin may not do to themselves, and to the last active admin: whole sentences per
# action (the verb's place and form differ between languages).
_REFUSALS = {
    "delete": (gettext_lazy("You cannot delete yourself; ask another admin."),
               gettext_lazy("%(username)s is the last active admin: make someone else an admin before you delete them.")),
    "deactivate": (gettext_lazy("You cannot deactivate yourself; ask another admin."),
                   gettext_lazy("%(username)s is the last active admin: make someone else an admin before you deactivate them.")),
    "take the Admin role from": (
        gettext_lazy("You cannot take the Admin role from yourself; ask another admin."),
        gettext_lazy("%(username)s is the last active admin: make someone else an admin before you take the Admin role from them.")),
}


def _active_admins() -> QuerySet[Any]:
    return get_user_model().objects.filter(is_active=True).filter(Q(is_superuser=True) | Q(groups__name=ADMIN)).distinct()


def _is_admin(user: AbstractUser) -> bool:
    user.__dict__.pop("_mh_roles", None)
    return ADMIN in roles_of(user)


def _keep_an_admin(user: AbstractUser, *, by: Any, doing: str) -> None:
    """Refuse ``doing`` to ``user`` when it would leave no active admin, or when an admin does it
    to themselves (another admin should). Call inside the transaction that makes the change."""
    Group.objects.select_for_update().filter(name=ADMIN).first()  # serialises admin removals
    if by is not None and by.pk == user.pk:
        raise UserChangeRefused(str(_REFUSALS[doing][0]))
    if _is_admin(user) and user.is_active and not _active_admins().exclude(pk=user.pk).exists():
        raise UserChangeRefused(_REFUSALS[doing][1] % {"username": user.username})


def _role_set(user: AbstractUser, role: str) -> None:
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    user.groups.remove(*Group.objects.filter(name__in=ALL_ROLES).exclude(name=role))
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    user.__dict__.pop("_mh_roles", None)


def user_create(*, username: str, email: str, first_name: str, last_name: str, password: str, role: str,
                by: Any = None) -> AbstractUser:
    with transaction.atomic(), pghistory.context(user=getattr(by, "pk", None)):
        user = get_user_model().objects.create_user(username=username, email=email, password=password,
                                                    first_name=first_name, last_name=last_name)
        _role_set(user, role)
    return user


def user_update(user: AbstractUser, *, username: str, first_name: str, last_name: str, email: str, role: str,
                by: Any = None) -> list[str]:
    """Save who ``user`` is and their role; returns what changed in words (empty: nothing)."""
    with transaction.atomic(), pghistory.context(user=getattr(by, "pk", None)):
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        changes = []
        if role != ADMIN and _is_admin(user):
            _keep_an_admin(user, by=by, doing="take the Admin role from")
        for field, value, said in (("username", username, _("username")), ("first_name", first_name, _("first name")),
                                   ("last_name", last_name, _("last name")), ("email", email, _("email"))):
            if getattr(user, field) != value:
                setattr(user, field, value)
                changes.append(said)
        superuser_dropped = role != ADMIN and user.is_superuser
        if superuser_dropped:
            user.is_superuser = False  # a superuser counts as Admin whatever their groups
        if changes or superuser_dropped:
            user.save(update_fields=["username", "first_name", "last_name", "email", "is_superuser"])
        current = sorted(roles_of(user))
        if current != [role]:
            _role_set(user, role)
            changes.append(_("role %(before)s → %(after)s") % {
                "before": ", ".join(role_label(name) for name in current) or pgettext("role", "none"), "after": role_label(role)})
    return changes


def user_active_set(user: AbstractUser, *, active: bool, by: Any = None) -> bool:
    """Switch a user on or off; returns whether anything changed. A user switched off cannot sign
    in, and their open sessions end at their next request (the auth backend refuses inactive
    users), whatever else they had."""
    with transaction.atomic(), pghistory.context(user=getattr(by, "pk", None)):
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        if user.is_active == active:
            return False
        if not active:
            _keep_an_admin(user, by=by, doing="deactivate")
        user.is_active = active
        user.save(update_fields=["is_active"])
    return True


def user_delete(user: AbstractUser, *, by: Any = None) -> None:
    """Delete a user. What they did stays (owned contacts become unassigned, authorship in the
    histories is kept by id and shown as "system" or by the recorded name)."""
    with transaction.atomic(), pghistory.context(user=getattr(by, "pk", None)):
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        _keep_an_admin(user, by=by, doing="delete")
        user.delete()


def user_password_reset(user: AbstractUser, *, request: HttpRequest, by: Any = None) -> None:
    """Email ``user`` Django's one-time password reset link (valid for PASSWORD_RESET_TIMEOUT, used
    up once the password changes). Raises ``UserChangeRefused`` for a user without an email or
    switched off, and the mail backend's error when sending fails."""
    if not user.is_active:
        raise UserChangeRefused(_("%(username)s is deactivated; reactivate them first.") % {"username": user.username})
    if not user.email:
        raise UserChangeRefused(_("%(username)s has no email address; add one first.") % {"username": user.username})
    form = UserPasswordResetForm(user)
    if not form.is_valid():
        raise UserChangeRefused(_("%(email)s is not an address a reset link can be sent to.") % {"email": user.email})
    # In the recipient's language (their saved one; else the admin's, who knows them).
    recipient_language = UserPreference.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
    with translation.override(recipient_language or translation.get_language()):
        form.save(request=request, use_https=request.is_secure(),
                  subject_template_name="registration/password_reset_subject.txt",
                  email_template_name="registration/password_reset_email.txt",
                  extra_email_context={"sent_by": by.get_full_name() or by.get_username() if by else ""})
    with pghistory.context(user=getattr(by, "pk", None)):
        pghistory.create_event(AuditedUser.objects.get(pk=user.pk), label="password_reset_sent")


# --- the audit trail ------------------------------------------------------------------------------
_USER_HEADLINES = {"created": gettext_lazy("Created"), "deleted": gettext_lazy("Deleted"),
                   "password_changed": gettext_lazy("Password changed"),
                   "password_reset_sent": gettext_lazy("Password reset link sent")}


def _user_changes(before: Any, after: Any) -> list[str]:
    changes = []
    if before.is_active != after.is_active:
        changes.append(_("reactivated") if after.is_active else _("deactivated"))
    if before.username != after.username:
        changes.append(_("username %(before)s → %(after)s") % {"before": before.username, "after": after.username})
    if (before.first_name, before.last_name) != (after.first_name, after.last_name):
        changes.append(_("name changed"))
    if before.email != after.email:
        changes.append(_("email %(before)s → %(after)s") % {"before": before.email or "—", "after": after.email or "—"})
    return changes


def users_history(*, user_id: int | None = None, limit: int = 20) -> list[dict]:
    """What happened to users (one, or all), newest first: ``at``, ``who`` did it, ``username``,
    ``headline`` and ``changes``."""
    # pghistory generates the event models (marketing_hub.models); fetched by name for the type checker
    UserEvent: Any = apps.get_model("marketing_hub", "UserEvent")  # noqa: N806
    UserRoleEvent: Any = apps.get_model("marketing_hub", "UserRoleEvent")  # noqa: N806
    user_events = UserEvent.objects.select_related("pgh_context").order_by("-pgh_id")
    role_events = UserRoleEvent.objects.select_related("pgh_context", "group").order_by("-pgh_id")
    if user_id is not None:
        user_events = user_events.filter(pgh_obj_id=user_id)
        role_events = role_events.filter(user_id=user_id)
    events = list(user_events.annotate(previous_id=Subquery(
        UserEvent.objects.filter(pgh_obj_id=OuterRef("pgh_obj_id"), pgh_id__lt=OuterRef("pgh_id"))
        .order_by("-pgh_id").values("pgh_id")[:1]))[:limit])
    previous = UserEvent.objects.in_bulk([event.previous_id for event in events if event.previous_id])
    roles = list(role_events[:limit])
    # the name a role event's user had last (they may have been deleted since)
    names = dict(UserEvent.objects.filter(pgh_obj_id__in={event.user_id for event in roles})
                 .order_by("pgh_obj_id", "-pgh_id").distinct("pgh_obj_id").values_list("pgh_obj_id", "username"))
    entries = []
    for event in events:
        changes: list[str] = []
        headline = str(_USER_HEADLINES.get(event.pgh_label, event.pgh_label))
        if event.pgh_label == "changed":
            before = previous.get(event.previous_id)
            changes = _user_changes(before, event) if before is not None else []
            switched = before is not None and before.is_active != event.is_active
            headline = changes.pop(0).capitalize() if switched else _("Changed")
        entries.append({"at": event.pgh_created_at, "username": event.username, "user_id": event.pgh_obj_id,
                        "headline": headline, "changes": changes,
                        "context": event.pgh_context.metadata if event.pgh_context else {}})
    # A role change is one role taken and another given in the same transaction (one context):
    # told as one line, "Role Marketer → Sales".
    changes_of: dict[tuple, dict[str, list[str]]] = {}
    for event in roles:
        key = (event.user_id, event.pgh_context_id) if event.pgh_context_id else (event.user_id, event.pgh_id)
        group = role_label(event.group.name) if event.group_id and event.group else _("a role")
        change = changes_of.get(key)
        if change is None:
            change = changes_of[key] = {"role_given": [], "role_taken": []}
            entries.append({"at": event.pgh_created_at, "username": names.get(event.user_id, f"#{event.user_id}"),
                            "user_id": event.user_id, "roles": change, "changes": [],
                            "context": event.pgh_context.metadata if event.pgh_context else {}})
        change[event.pgh_label].append(group)
    for entry in entries:
        change = entry.pop("roles", None)
        if change is None:
            continue
        given, taken = ", ".join(sorted(change["role_given"])), ", ".join(sorted(change["role_taken"]))
        entry["headline"] = (_("Role %(taken)s → %(given)s") % {"taken": taken, "given": given} if given and taken
                             else _("Role %(role)s given") % {"role": given} if given
                             else _("Role %(role)s taken") % {"role": taken})
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    entries = entries[:limit]
    actors_name(entries)
    return entries


def user_language_set(*, user_id: int, language: str) -> None:
    """Save the person's interface language ("" = follow the browser)."""
    UserPreference.objects.update_or_create(user_id=user_id, defaults={"language": language})
