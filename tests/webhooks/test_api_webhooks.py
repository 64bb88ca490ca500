"""The webhooks API as the contract says: create (secret once), list, get, patch, delete, rotate,
test, deliveries with a status filter, replay; 400 in the contract's shape; admin scope only."""

from __future__ import annotations

import pytest

from tests.webhooks.conftest import pump_until
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db


def create(admin_api, receiver, **fields):
    body = {"url": receiver.url_for("/hook"), "events": ["segment.entered", "consent.changed"], **fields}
    return admin_api.post("/api/v1/webhooks", json=body)


def test_create_returns_the_secret_once(admin_api, receiver):
    # when a webhook is created
    response = create(admin_api, receiver, description="Shop", filter={"segment_ids": []})
    # then 201 with the contract's fields and a whsec_ secret
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"id", "url", "events", "description", "active", "filter", "secret", "created_at"}
    assert body["secret"].startswith("whsec_") and body["active"] is True
    assert body["filter"] == {"segment_ids": [], "programs": [], "funnels": []}
    # and neither the collection nor the item shows the secret again
    listed = admin_api.get("/api/v1/webhooks").json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    assert "secret" not in admin_api.get(f"/api/v1/webhooks/{body['id']}").json()


def test_bad_input_is_400_with_field_paths(admin_api, receiver, settings):
    # given loopback not allowed
    settings.MH_WEBHOOK_ALLOWED_NETS = []
    # when bad webhooks are posted
    loopback = create(admin_api, receiver)
    scheme = admin_api.post("/api/v1/webhooks", json={"url": "ftp://example.com", "events": ["segment.entered"]})
    settings.MH_WEBHOOK_ALLOWED_NETS = ["127.0.0.0/8"]
    events = create(admin_api, receiver, events=["nope"])
    unknown_segment = create(admin_api, receiver, filter={"segment_ids": [999999]})
    missing = admin_api.post("/api/v1/webhooks", json={"events": ["segment.entered"]})
    # then 400s naming the field, and nothing was stored
    for response, field in ((loopback, "url"), (scheme, "url"), (events, "events"),
                            (unknown_segment, "filter.segment_ids.0"), (missing, "url")):
        assert response.status_code == 400, response.content
        assert field in [error["field"] for error in response.json()["errors"]]
    assert not Webhook.objects.exists()


def test_patch_delete_and_404(admin_api, receiver):
    # given a webhook
    webhook_id = create(admin_api, receiver).json()["id"]
    # when patched
    patched = admin_api.patch(f"/api/v1/webhooks/{webhook_id}", json={"active": False, "description": "Paused"})
    # then the fields changed and the others stayed
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["description"] == "Paused"
    assert patched.json()["events"] == ["segment.entered", "consent.changed"]
    # when deleted, then gone
    assert admin_api.delete(f"/api/v1/webhooks/{webhook_id}").status_code == 204
    missing = admin_api.get(f"/api/v1/webhooks/{webhook_id}")
    assert missing.status_code == 404 and "detail" in missing.json()


def test_rotate_test_deliveries_and_replay(admin_api, receiver):
    # given a webhook and a receiver
    receiver.expect_request("/hook").respond_with_data("ok")
    created = create(admin_api, receiver).json()
    webhook_id = created["id"]
    # when the secret is rotated
    rotated = admin_api.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in ("", created["secret"])
    # when a test is sent
    assert admin_api.post(f"/api/v1/webhooks/{webhook_id}/test").status_code == 202
    pump_until(lambda: Delivery.objects.filter(status="succeeded").exists())
    # then the deliveries list shows it, and the status filter works
    listed = admin_api.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()
    assert listed["count"] == 1
    (row,) = listed["results"]
    assert set(row) == {"id", "message_id", "type", "status", "attempts", "last_status_code", "last_error",
                        "created_at", "next_attempt_at", "delivered_at"}
    assert (row["type"], row["status"], row["attempts"], row["last_status_code"]) == ("webhook.test", "succeeded", 1, 200)
    assert admin_api.get(f"/api/v1/webhooks/{webhook_id}/deliveries?status=failed").json()["count"] == 0
    assert admin_api.get(f"/api/v1/webhooks/{webhook_id}/deliveries?status=bogus").status_code == 400
    # when replayed, then the same message id arrives again
    replay = admin_api.post(f"/api/v1/webhooks/deliveries/{row['id']}/replay")
    assert replay.status_code == 202 and replay.json()["message_id"] == row["message_id"]
    pump_until(lambda: len(receiver.log) == 2)
    assert {request.headers["webhook-id"] for request, _ in receiver.log} == {row["message_id"]}


def test_ingest_keys_may_not_touch_webhooks(ingest_api, receiver):
    # when an ingest key lists or creates webhooks, then 403
    assert ingest_api.get("/api/v1/webhooks").status_code == 403
    assert ingest_api.post("/api/v1/webhooks", json={"url": receiver.url_for("/x"), "events": ["segment.entered"]}).status_code == 403
