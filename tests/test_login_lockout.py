"""Login throttling: per username and IP, and per IP across usernames (password spraying)."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _login(client, username: str, password: str, ip: str):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_spraying_usernames_from_one_address_locks_the_address(client):
    # given real users
    users = [UserFactory(username=f"user{index}") for index in range(5)]
    # when one address tries a wrong password once for each of five usernames
    for user in users:
        _login(client, user.username, "wrong-password", "203.0.113.7")
    # then the address is locked: even a right password is refused from it
    locked = _login(client, users[0].username, PASSWORD, "203.0.113.7")
    assert locked.status_code in (403, 429)
    # while another address still signs in
    other = _login(client, users[0].username, PASSWORD, "198.51.100.9")
    assert other.status_code == 302


def test_the_limit_is_the_configured_one(client):
    # given a user
    user = UserFactory(username="ola")
    # when one address fails one time fewer than the limit, across usernames
    for index in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, f"nobody{index}", "wrong", "192.0.2.1")
    # then it may still sign in
    assert _login(client, user.username, PASSWORD, "192.0.2.1").status_code == 302
