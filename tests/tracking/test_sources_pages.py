"""Settings → Sources: admins create (the key shown once) and revoke, marketers read, sales nothing;
the debugger shows what each message became; the API for sources."""

from __future__ import annotations

import html
from unittest import mock

import pytest

from contacts.models import Contact
from tests.tracking.helpers import SHOP_ORIGIN, message, post
from tracking.models import MessageLog, Source
from tracking.services import source_issue

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def test_admin_creates_a_browser_source_and_sees_key_and_snippet_once(admin_client):
    # when an admin creates a browser source
    response = admin_client.post("/settings/sources/", {"name": "Shop website", "kind": "browser",
                                                       "allowed_origins": "https://shop.example/\nhttps://www.shop.example"})
    # then the key and the one-tag snippet are on the page, and only the key's hash is stored
    assert response.status_code == 200
    source = Source.objects.get()
    write_key = response.context["created"]["write_key"]
    assert source.key_hash == Source.hash_key(write_key) and write_key not in source.key_hash
    assert source.allowed_origins == ["https://shop.example", "https://www.shop.example"]
    body = html.unescape(response.content.decode())
    assert write_key in body
    assert f'/v1/snippet/{write_key}.js"></script>' in body
    # and a later visit does not show the key again
    assert write_key not in admin_client.get("/settings/sources/").content.decode()


def test_browser_source_needs_an_origin(admin_client):
    # when
    response = admin_client.post("/settings/sources/", {"name": "Shop", "kind": "browser", "allowed_origins": ""})
    # then
    assert response.status_code == 200
    assert "at least one allowed origin" in response.content.decode()
    assert not Source.objects.exists()


def test_marketer_reads_but_cannot_create_or_revoke(marketer_client):
    # given a source
    source, _ = source_issue(name="Shop", kind="server")
    # when a marketer opens the list, and tries to create and to revoke
    page = marketer_client.get("/settings/sources/")
    create = marketer_client.post("/settings/sources/", {"name": "Mine", "kind": "server"})
    revoke = marketer_client.post(f"/settings/sources/{source.pk}/revoke/")
    # then they see the source without the create form, and both writes are refused
    assert page.status_code == 200
    assert "Shop" in page.content.decode() and "Create source" not in page.content.decode()
    assert (create.status_code, revoke.status_code) == (403, 403)
    assert Source.objects.get().revoked_at is None


def test_sales_sees_nothing(sales_client):
    # given
    source, _ = source_issue(name="Shop", kind="server")
    # when
    # then
    assert sales_client.get("/settings/sources/").status_code == 403
    assert sales_client.get(f"/settings/sources/{source.pk}/").status_code == 403


def test_admin_revokes_and_the_key_stops_working(admin_client):
    # given a working key
    source, key = source_issue(name="Shop", kind="server")
    assert post("/v1/track", message(userId="m@example.com", event="x"), key=key).status_code == 200
    # when the admin revokes it
    response = admin_client.post(f"/settings/sources/{source.pk}/revoke/", follow=True)
    # then
    assert "revoked" in response.content.decode()
    assert post("/v1/track", message(userId="m@example.com", event="x"), key=key).status_code == 401


def test_debugger_shows_each_message_outcome(marketer_client):
    # given a source that received an accepted batch (one message of a known person, one of an
    # anonymous visitor), a duplicate and a refused batch
    source, key = source_issue(name="Shop", kind="server")
    accepted = message(userId="m@example.com", event="Product Viewed", properties={"category": "kurtki"})
    post("/v1/batch", {"batch": [accepted, message(anonymousId="anon-1", event="x")]}, key=key)
    post("/v1/track", accepted, key=key)
    post("/v1/batch", {"batch": [message(userId="m@example.com", event="x"), {"type": "track"}]}, key=key)
    # when the debugger is opened
    response = marketer_client.get(f"/settings/sources/{source.pk}/")
    # then each message is listed with what it became and whom it reached
    assert response.status_code == 200
    rows = [(row.status, row.event_type) for row in response.context["log"]]
    assert rows == [("rejected", ""), ("rejected", ""), ("duplicate", ""), ("accepted", "custom"), ("accepted", "product_view")]
    visitor = response.context["log"][3]
    assert visitor.contact.is_anonymous and visitor.reason == "reached the visitor's anonymous profile"
    contact = Contact.objects.get(email="m@example.com")
    assert response.context["log"][-1].contact == contact
    body = response.content.decode()
    assert "another message of the batch was invalid" in body and "messageId: is required" in body
    assert "anonymous visitor" in body
    assert sum(hour["accepted"] for hour in response.context["hours"]) == 2
    assert sum(hour["rejected"] for hour in response.context["hours"]) == 2


def test_debugger_partial_for_polling(marketer_client):
    # given
    source, _ = source_issue(name="Shop", kind="server")
    # when
    response = marketer_client.get(f"/settings/sources/{source.pk}/", headers={"HX-Request": "true"})
    # then
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="log"')


def test_debugger_keeps_the_last_100_messages(marketer_client):
    # given a source that received 250 messages in five requests
    source, key = source_issue(name="Shop", kind="server")
    # when
    for start in range(0, 250, 60):
        batch = [message(userId="m@example.com", event="x", message_id=f"m{n}") for n in range(start, min(start + 60, 250))]
        post("/v1/batch", {"batch": batch}, key=key)
    # then the debugger shows the newest 100, and the table keeps no more than the last request's
    # rows beyond them
    log = marketer_client.get(f"/settings/sources/{source.pk}/").context["log"]
    assert [row.message_id for row in log] == [f"m{n}" for n in range(249, 149, -1)]
    assert MessageLog.objects.filter(source=source).count() <= MessageLog.LOG_KEEP + 60


def test_refused_origin_is_in_the_debugger():
    # given
    source, key = source_issue(name="Shop", kind="browser", allowed_origins=[SHOP_ORIGIN])
    # when
    post("/v1/t", message(anonymousId="a", event="x"), key=key, HTTP_ORIGIN="https://evil.example")
    [row] = MessageLog.objects.filter(source=source)
    # then
    assert row.status == "rejected" and "https://evil.example" in row.reason


# --- the API --------------------------------------------------------------------------------------
def test_sources_api_create_list_delete(admin_api):
    # when a source is created through the API
    created = admin_api.post("/api/v1/sources", json={"name": "App", "kind": "browser",
                                                      "allowed_origins": ["https://shop.example"]})
    # then the key is returned once and works
    assert created.status_code == 201
    data = created.json()
    assert data["write_key"].startswith(data["key_prefix"])
    assert post("/v1/t", message(anonymousId="a", event="x"), key=data["write_key"], HTTP_ORIGIN="https://shop.example").status_code == 200
    listed = admin_api.get("/api/v1/sources").json()
    assert [s["id"] for s in listed["results"]] == [data["id"]] and "write_key" not in listed["results"][0]
    # when it is deleted, the key is refused
    assert admin_api.delete(f"/api/v1/sources/{data['id']}").status_code == 204
    assert post("/v1/t", message(anonymousId="a", event="x"), key=data["write_key"], HTTP_ORIGIN="https://shop.example").status_code == 401
    assert admin_api.delete("/api/v1/sources/999999").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "A", "kind": "phone"}, "kind"), ({"name": "A", "kind": "browser", "allowed_origins": ["shop.example"]}, "allowed_origins"),
     ({"name": "A", "kind": "browser"}, "allowed_origins")],
)
def test_sources_api_validates(admin_api, body, field):
    # when
    response = admin_api.post("/api/v1/sources", json=body)
    # then
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_sources_api_needs_an_admin_key(ingest_api):
    # when
    # then
    assert ingest_api.get("/api/v1/sources").status_code == 403
    assert ingest_api.post("/api/v1/sources", json={"name": "A", "kind": "server"}).status_code == 403
