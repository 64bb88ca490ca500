"""POST/GET /api/v1/funnels, the report, and PUT /api/v1/contacts/{email}/stages — the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from leads.models import ContactStage, Funnel, StageTransition
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

STAGES = ["New", "Engaged", "MQL", "SQL", "Customer"]


def test_create_funnel_answers_201_with_ordered_stages(admin_api):
    response = admin_api.post("/api/v1/funnels", json={"name": "B2B", "stages": STAGES})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "B2B" and body["stages"] == STAGES and isinstance(body["id"], int)
    listing = admin_api.get("/api/v1/funnels").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == body["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "stages": ["A"]}, "name"),
        ({"name": "X", "stages": []}, "stages"),
        ({"name": "X", "stages": ["A", "a"]}, "stages.1"),
        ({"name": "X", "stages": ["A", "  "]}, "stages.1"),
        ({"name": "X"}, "stages"),
        ({"name": "X", "stages": "A"}, "stages"),
    ],
)
def test_invalid_funnel_is_rejected(admin_api, body, field):
    response = admin_api.post("/api/v1/funnels", json=body)
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Funnel.objects.exists()


def test_duplicate_funnel_name_is_rejected_case_insensitively(admin_api):
    admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": ["A"]})
    response = admin_api.post("/api/v1/funnels", json={"name": " sales ", "stages": ["A"]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"


def test_put_stage_moves_the_contact_and_answers_with_it(admin_api):
    # given a funnel and a contact
    admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": STAGES})
    contact = ContactFactory(email="ala@example.com")
    # when the API moves it (names and email in any case)
    response = admin_api.put("/api/v1/contacts/ALA@example.com/stages", json={"funnel": "sales", "stage": "mql"})
    # then 200 with the contact showing its stage, and the move is logged with cause api
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == "ala@example.com"
    assert body["stages"] == {"Sales": "MQL"}
    assert ContactStage.objects.get(contact=contact).stage.name == "MQL"
    assert StageTransition.objects.get(contact=contact).cause == "api"


def test_put_stage_unknown_names_are_400_with_field(admin_api):
    admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": STAGES})
    ContactFactory(email="ala@example.com")
    unknown_funnel = admin_api.put("/api/v1/contacts/ala@example.com/stages", json={"funnel": "Nope", "stage": "New"})
    unknown_stage = admin_api.put("/api/v1/contacts/ala@example.com/stages", json={"funnel": "Sales", "stage": "Nope"})
    missing_field = admin_api.put("/api/v1/contacts/ala@example.com/stages", json={"funnel": "Sales"})
    assert unknown_funnel.status_code == 400 and unknown_funnel.json()["errors"][0]["field"] == "funnel"
    assert unknown_stage.status_code == 400 and unknown_stage.json()["errors"][0]["field"] == "stage"
    assert missing_field.status_code == 400 and missing_field.json()["errors"][0]["field"] == "stage"
    assert not ContactStage.objects.exists()


def test_put_stage_unknown_contact_is_404(admin_api):
    admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": STAGES})
    response = admin_api.put("/api/v1/contacts/nobody@example.com/stages", json={"funnel": "Sales", "stage": "New"})
    assert response.status_code == 404
    assert "detail" in response.json()


def test_report_counts_entries_conversion_and_median(admin_api):
    # given a funnel where 4 contacts entered New, 2 went on to Engaged, 1 to MQL
    funnel_id = admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": ["New", "Engaged", "MQL"]}).json()["id"]
    contacts = [ContactFactory() for _ in range(4)]
    for contact in contacts:
        admin_api.put(f"/api/v1/contacts/{contact.email}/stages", json={"funnel": "Sales", "stage": "New"})
    for contact in contacts[:2]:
        admin_api.put(f"/api/v1/contacts/{contact.email}/stages", json={"funnel": "Sales", "stage": "Engaged"})
    admin_api.put(f"/api/v1/contacts/{contacts[0].email}/stages", json={"funnel": "Sales", "stage": "MQL"})
    # and the stays in New lasted 2 days each (moved back in time)
    StageTransition.objects.filter(to_stage__name="New").update(created_at=timezone.now() - timedelta(days=2))
    # when the report is read
    response = admin_api.get(f"/api/v1/funnels/{funnel_id}/report")
    # then
    assert response.status_code == 200
    stages = response.json()["stages"]
    assert [(s["name"], s["count"], s["entered"]) for s in stages] == [("New", 2, 4), ("Engaged", 1, 2), ("MQL", 1, 1)]
    assert [s["conversion_to_next"] for s in stages] == [0.5, 0.5, None]
    # two stays in New ended ~2 days later, two are still open (~2 days): median ≈ 2
    assert stages[0]["median_days_in_stage"] == pytest.approx(2.0, abs=0.01)
    assert stages[2]["median_days_in_stage"] == pytest.approx(0.0, abs=0.01)


def test_report_date_range_limits_entered(admin_api):
    funnel_id = admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": ["New", "Won"]}).json()["id"]
    contact = ContactFactory()
    admin_api.put(f"/api/v1/contacts/{contact.email}/stages", json={"funnel": "Sales", "stage": "New"})
    StageTransition.objects.update(created_at=timezone.now() - timedelta(days=40))
    today = timezone.localdate()
    recent = admin_api.get(f"/api/v1/funnels/{funnel_id}/report?start={today - timedelta(days=30)}&end={today}").json()
    assert [s["entered"] for s in recent["stages"]] == [0, 0]
    assert [s["count"] for s in recent["stages"]] == [1, 0]
    bad = admin_api.get(f"/api/v1/funnels/{funnel_id}/report?start={today}&end={today - timedelta(days=1)}")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "end"
    assert admin_api.get(f"/api/v1/funnels/{funnel_id}/report?start=notadate").status_code == 400


def test_report_unknown_funnel_is_404(admin_api):
    assert admin_api.get("/api/v1/funnels/999999/report").status_code == 404


def test_openapi_schema_lists_the_leads_operations(admin_api):
    from django.test import Client

    schema = Client().get("/api/v1/openapi.json").json()
    for path in ("/api/v1/settings/temperature", "/api/v1/funnels", "/api/v1/funnels/{funnel_id}/report",
                 "/api/v1/contacts/{email}/stages"):
        assert path in schema["paths"], path
