"""While PostgreSQL is unavailable every page and API answers 503 with Retry-After, and the body
says nothing about the server (no traceback, driver message or socket path), in any mode."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)

INTERNALS = ("Traceback", "psycopg", "OperationalError", "connection", "5432", ".s.PGSQL", "settings")


@contextmanager
def database_down():
    """Point this process's connection at a port where nothing listens, as if PostgreSQL were
    down; put it back afterwards."""
    settings_dict = connection.settings_dict
    saved = {key: settings_dict.get(key) for key in ("HOST", "PORT")}
    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", "1"
    try:
        yield
    finally:
        connection.close()
        settings_dict.update(saved)


def _assert_unavailable(response) -> None:
    body = response.content.decode()
    assert response.status_code == 503, body[:500]
    assert int(response["Retry-After"]) > 0
    for word in INTERNALS:
        assert word not in body, (word, body[:500])


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "production"])
def test_pages_answer_503_with_retry_after_when_postgres_is_down(admin, settings, debug):
    # given a signed-in user (the session lives in the database) and either mode
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    client.force_login(admin)
    with database_down():
        # when pages are requested (the session is read before any view runs)
        responses = [client.get(path) for path in ("/", "/contacts/", "/leads/hot/")]
        # and an anonymous page that reads the database in its view
        anonymous = Client(raise_request_exception=False).post("/login/", {"username": "x", "password": "y"})
    # then each is a 503 with Retry-After and no internals
    for response in [*responses, anonymous]:
        _assert_unavailable(response)
        assert "Temporarily unavailable" in response.content.decode()


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "production"])
def test_api_answers_503_json_with_retry_after_when_postgres_is_down(admin_api, ingest_api, settings, debug):
    # given API clients whose keys are checked in the database
    settings.DEBUG = debug
    clients = [admin_api, ingest_api]
    for api in clients:
        api.client = Client(raise_request_exception=False)
    with database_down():
        # when the API is called
        responses = [
            admin_api.get("/api/v1/contacts/anna@example.com"),
            admin_api.get("/api/v1/rules"),
            admin_api.get("/api/v1/events/status"),
            ingest_api.post("/api/v1/contacts", json={"email": "anna@example.com"}),
        ]
    # then a JSON 503 with Retry-After, no internals
    for response in responses:
        _assert_unavailable(response)
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["detail"]


def test_the_app_answers_normally_again_once_postgres_is_back(admin_client):
    # given the database was down for a request
    with database_down():
        assert Client(raise_request_exception=False).post("/login/", {"username": "x", "password": "y"}).status_code == 503
    # when it is back, then pages work without a restart
    assert admin_client.get("/contacts/").status_code == 200

