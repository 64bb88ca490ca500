"""The contact in the API carries its score and the temperature from the current thresholds."""

from __future__ import annotations

import pytest

from tests.factories import ContactFactory
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db


def test_contact_score_and_temperature_follow_the_thresholds(admin_api):
    contact = ContactFactory(email="ola@example.com")
    give_points(contact, 40, 20)
    body = admin_api.get("/api/v1/contacts/ola@example.com").json()
    assert (body["score"], body["temperature"]) == (60, "warm")
    admin_api.put("/api/v1/settings/temperature", json={"warm": 10, "hot": 60})
    body = admin_api.get("/api/v1/contacts/ola@example.com").json()
    assert (body["score"], body["temperature"]) == (60, "hot")
    admin_api.put("/api/v1/settings/temperature", json={"warm": 61, "hot": 62})
    assert admin_api.get("/api/v1/contacts/ola@example.com").json()["temperature"] == "cold"


def test_stage_put_answers_the_same_shape_as_contact_get(admin_api):
    admin_api.post("/api/v1/funnels", json={"name": "Sales", "stages": ["New", "Won"]})
    ContactFactory(email="ola@example.com")
    put = admin_api.put("/api/v1/contacts/ola@example.com/stages", json={"funnel": "Sales", "stage": "Won"}).json()
    got = admin_api.get("/api/v1/contacts/ola@example.com").json()
    assert put == got
    assert got["stages"] == {"Sales": "Won"}
