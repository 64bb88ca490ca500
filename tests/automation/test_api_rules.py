"""/api/v1/rules CRUD, /rules/{id}/run and /jobs/{id}, per the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import Rule
from automation.tasks import rule_backfill_task
from core.models import Job
from tests.automation.factories import event, process_all, tags_of

pytestmark = pytest.mark.django_db

RULE = {
    "name": "Category view",
    "active": True,
    "trigger": {"event_type": "product_view", "where": [{"property": "category", "op": "eq", "value": "kurtki"}]},
    "actions": [{"type": "add_tag", "tag": "{category}", "score": 2}, {"type": "add_score", "points": 5}],
}


def test_create_get_list_patch_delete(admin_api):
    # when a rule is created
    created = admin_api.post("/api/v1/rules", json=RULE)
    # then 201 with the object and its id
    assert created.status_code == 201
    body = created.json()
    assert body["id"] and body["name"] == "Category view" and body["trigger"] == RULE["trigger"]
    assert body["actions"] == RULE["actions"] and body["active"] is True and body["activated_at"]
    rule_id = body["id"]
    # and it can be read, listed, patched and deleted
    assert admin_api.get(f"/api/v1/rules/{rule_id}").json()["summary"].startswith("When a product view with category = kurtki")
    listing = admin_api.get("/api/v1/rules").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == rule_id
    patched = admin_api.patch(f"/api/v1/rules/{rule_id}", json={"active": False, "name": "Renamed"})
    assert patched.status_code == 200 and patched.json()["active"] is False and patched.json()["name"] == "Renamed"
    assert patched.json()["trigger"] == RULE["trigger"]  # untouched fields stay
    assert admin_api.delete(f"/api/v1/rules/{rule_id}").status_code == 204
    assert admin_api.get(f"/api/v1/rules/{rule_id}").status_code == 404
    assert admin_api.get(f"/api/v1/rules/{rule_id}").json() == {"detail": f"No rule with id {rule_id}."}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"trigger": {"event_type": "teleport"}}, "trigger.event_type"),
        ({"trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "gt", "value": "big"}]}},
         "trigger.where.0.value"),
        ({"trigger": {"event_type": "purchase", "where": [{"property": "value", "op": "between", "value": 1}]}},
         "trigger.where.0.op"),
        ({"actions": []}, "actions"),
        ({"actions": [{"type": "add_tag", "tag": "{cat"}]}, "actions.0.tag"),
        ({"actions": [{"type": "add_score", "points": 0}]}, "actions.0.points"),
        ({"actions": [{"type": "add_score", "points": 1.5}]}, "actions.0.points"),
        ({"actions": [{"type": "send_email"}]}, "actions.0.type"),
        ({"actions": [{"type": "set_stage", "funnel": "Nope", "stage": "X"}]}, "actions.0.funnel"),
        ({"max_points_per_contact": -1}, "max_points_per_contact"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_rules_name_the_field(admin_api, change, field):
    response = admin_api.post("/api/v1/rules", json={**RULE, **change})
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Rule.objects.exists()


@pytest.mark.parametrize("body", [[], "x", 5, None])
def test_non_object_bodies_are_400(admin_api, body):
    import json

    response = admin_api.client.post("/api/v1/rules", data=json.dumps(body), content_type="application/json",
                                     headers=admin_api.headers)
    assert response.status_code == 400


def test_cap_needs_points(admin_api):
    response = admin_api.post("/api/v1/rules", json={**RULE, "actions": [{"type": "add_tag", "tag": "X"}],
                                                      "max_points_per_contact": 10})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "max_points_per_contact"


def test_ingest_key_cannot_manage_rules(ingest_api):
    assert ingest_api.post("/api/v1/rules", json=RULE).status_code == 403
    assert ingest_api.get("/api/v1/rules").status_code == 403


def test_run_on_past_events_is_a_job_that_skips_applied_pairs(admin_api, ingest_api, django_capture_on_commit_callbacks,
                                                               monkeypatch):
    # given events accepted while no rule existed (processed: nothing happened)
    monkeypatch.setattr("automation.tasks.events_process_enqueue", lambda: None)
    old = timezone.now() - timedelta(days=3)
    ingest_api.post("/api/v1/events", json={"events": [
        event("r1", category="kurtki", occurred_at=old), event("r2", category="kurtki", occurred_at=old),
        event("r3", category="buty", occurred_at=old),
    ]})
    process_all()
    rule_id = admin_api.post("/api/v1/rules", json=RULE).json()["id"]
    # when the rule is run on the past (the job's task body runs in-process here)
    monkeypatch.setattr(rule_backfill_task, "delay", lambda job_id: None)
    response = admin_api.post(f"/api/v1/rules/{rule_id}/run", json={"since": (old - timedelta(hours=1)).isoformat()})
    assert response.status_code == 202
    job_id = response.json()["job"]
    assert admin_api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    rule_backfill_task(job_id)
    # then the two matching events took effect, and a second run changes nothing
    job = admin_api.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["status"], job["progress"], job["error"]) == ("done", 1.0, None)
    assert tags_of("anna@example.com") == {"kurtki": 4}
    second = Job.objects.create(kind="rule_backfill", params=Job.objects.get(pk=job_id).params)
    rule_backfill_task(second.pk)
    assert tags_of("anna@example.com") == {"kurtki": 4}
    assert Job.objects.get(pk=second.pk).result["applied"] == 0


def test_run_validates_since(admin_api):
    rule_id = admin_api.post("/api/v1/rules", json=RULE).json()["id"]
    assert admin_api.post(f"/api/v1/rules/{rule_id}/run", json={"since": "2025-01-01T00:00:00"}).status_code == 400
    assert admin_api.post(f"/api/v1/rules/{rule_id}/run", json={"since": "soon"}).status_code == 400
    assert admin_api.post(f"/api/v1/rules/{rule_id}/run", json={}).status_code == 400
    assert admin_api.post("/api/v1/rules/999999/run", json={"since": timezone.now().isoformat()}).status_code == 404


def test_unknown_job_is_404(admin_api):
    assert admin_api.get("/api/v1/jobs/999999").json() == {"detail": "No job with id 999999."}
