"""The role × URL matrix. Every named page must be listed in tests/access/<area>.py with the roles
that may use it; a view added without an entry fails ``test_every_view_is_listed``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import tests.access
from core.roles import ADMIN, MARKETER, SALES
from tests.factories import UserFactory

ACCESS: dict[str, dict] = {}
PUBLIC: set[str] = set()
for module_info in pkgutil.iter_modules(tests.access.__path__):
    module = importlib.import_module(f"tests.access.{module_info.name}")
    ACCESS.update(getattr(module, "ACCESS", {}))
    PUBLIC.update(getattr(module, "PUBLIC", set()))

ROLES = (MARKETER, SALES, ADMIN, "outsider")


def _named_views(patterns, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "api-1":
                continue  # the JSON API authenticates with keys; its tests live with each app
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names |= _named_views(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(f"{namespace}{entry.name}")
    return names


def test_every_view_is_listed():
    # given every named URL of the project
    names = _named_views(get_resolver().url_patterns)
    # then each has an entry in the matrix (or is public by design)
    missing = sorted(names - set(ACCESS) - PUBLIC)
    assert not missing, f"add these views to tests/access/<area>.py with their roles: {missing}"
    stale = sorted(set(ACCESS) - names)
    assert not stale, f"these matrix entries name no view: {stale}"


CASES = [(name, role) for name in sorted(ACCESS) for role in ROLES]


@pytest.mark.parametrize(("url_name", "role"), CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_role_access(db, client, url_name, role):
    # given a user of the role, signed in
    entry = ACCESS[url_name]
    user = UserFactory(username=f"matrix_{role.lower()}", role=None if role == "outsider" else role)
    client.force_login(user)
    kwargs = entry["kwargs"]() if "kwargs" in entry else {}
    url = reverse(url_name, kwargs=kwargs)
    # when they request the view
    response = getattr(client, entry.get("method", "get"))(url)
    # then the server refuses exactly the roles not listed
    allowed = role == ADMIN or role in entry["roles"]
    if allowed:
        assert response.status_code != 403, f"{role} should reach {url_name}"
        assert response.status_code < 500
    else:
        assert response.status_code == 403, f"{role} must get 403 at {url_name}, got {response.status_code}"


@pytest.mark.parametrize("url_name", sorted(ACCESS))
def test_anonymous_is_sent_to_login(db, client, url_name):
    entry = ACCESS[url_name]
    kwargs = entry["kwargs"]() if "kwargs" in entry else {}
    response = getattr(client, entry.get("method", "get"))(reverse(url_name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
