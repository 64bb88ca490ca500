"""Roles are Django groups. Admin may do everything; superusers count as Admin."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.text import get_text_list
from django.utils.translation import gettext, pgettext_lazy

View = TypeVar("View", bound=Callable[..., Any])

MARKETER = "Marketer"
SALES = "Sales"
ADMIN = "Admin"
ALL_ROLES = (MARKETER, SALES, ADMIN)
STAFF = (MARKETER, SALES, ADMIN)  # every signed-in role
# What people read: the Group names in the database stay English (code and the API use those).
ROLE_LABELS = {ADMIN: pgettext_lazy("role", "Admin"), MARKETER: pgettext_lazy("role", "Marketer"),
               SALES: pgettext_lazy("role", "Sales")}


def role_label(role: str) -> str:
    """The role's display name in the active language ("" for none, an unknown name as it is)."""
    return str(ROLE_LABELS.get(role, role))


def roles_of(user: object) -> frozenset[str]:
    # Only signed-in users with groups (django.contrib.auth's User; request.user may be anonymous).
    if not isinstance(user, AbstractUser) or not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_mh_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = frozenset(names & set(ALL_ROLES))
        user._mh_roles = cached  # type: ignore[attr-defined]  # per-request cache on the user object
    return cached


def has_role(user: object, *roles: str) -> bool:
    user_roles = roles_of(user)
    return ADMIN in user_roles or bool(user_roles.intersection(roles))


def primary_role(user: object) -> str:
    user_roles = roles_of(user)
    for role in (ADMIN, MARKETER, SALES):
        if role in user_roles:
            return role
    return ""


def role_required(*roles: str) -> Callable[[View], View]:
    """View decorator: 403 unless the user holds one of ``roles`` (Admin always passes)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not has_role(request.user, *roles):
                raise PermissionDenied(gettext("This page needs the %(roles)s role.") % {
                    "roles": get_text_list([role_label(role) for role in roles], gettext("or"))})
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]  # same signature as ``view``

    return decorator
