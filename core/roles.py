"""Roles are Django groups. Admin may do everything; superusers count as Admin."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

MARKETER = "Marketer"
SALES = "Sales"
ADMIN = "Admin"
ALL_ROLES = (MARKETER, SALES, ADMIN)
STAFF = (MARKETER, SALES, ADMIN)  # every signed-in role


def roles_of(user) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_mh_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = frozenset(names & set(ALL_ROLES))
        user._mh_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    user_roles = roles_of(user)
    return ADMIN in user_roles or bool(user_roles.intersection(roles))


def primary_role(user) -> str:
    user_roles = roles_of(user)
    for role in (ADMIN, MARKETER, SALES):
        if role in user_roles:
            return role
    return ""


def role_required(*roles: str) -> Callable:
    """View decorator: 403 unless the user holds one of ``roles`` (Admin always passes)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page needs the {' or '.join(roles)} role.")
            return view(request, *args, **kwargs)

        wrapper.allowed_roles = frozenset(roles) | {ADMIN}
        return wrapper

    return decorator
