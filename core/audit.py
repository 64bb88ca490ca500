"""Who did it: the actor of pghistory events, from their context (the request's user, the API key
an API call came with, or "system" for workers, migrations and commands)."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.translation import gettext as _


def actors_name(entries: Iterable[dict]) -> None:
    """Set ``entry["who"]`` from ``entry["context"]`` (pghistory context metadata) on every entry,
    loading the users named in one query."""
    from django.contrib.auth import get_user_model

    entries = list(entries)
    user_ids = {entry["context"].get("user") for entry in entries if entry["context"].get("user")}
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=user_ids)} if user_ids else {}
    for entry in entries:
        context = entry["context"]
        user = users.get(context.get("user"))
        if user is not None:
            entry["who"] = user.get_full_name() or user.username
        elif context.get("api_key"):
            entry["who"] = _("API key “%(name)s”") % {"name": context["api_key"]}
        else:
            entry["who"] = _("system")


def api_actor(request) -> dict:
    """The pghistory context of an API call: the name of the key it came with."""
    api_key = getattr(request, "api_key", None)
    return {"api_key": api_key.name if api_key else None}
