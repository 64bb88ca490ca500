"""The programme's switch through the API: ``active`` is shown by GET, defaults to true on POST, and
PUT switches off (tiers frozen, nothing recomputed) or on (recomputed at once), audited like the page."""

from __future__ import annotations

import pytest

from contacts.models import ContactTag
from loyalty.models import Program, ProgramEvent
from loyalty.services import program_switch
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import SEEDS_EXAMPLE, make_program, tier_of

pytestmark = pytest.mark.django_db


def test_post_without_active_creates_a_live_programme(admin_api):
    # when
    response = admin_api.post("/api/v1/loyalty/programs", json=SEEDS_EXAMPLE)
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["active"] is True
    assert Program.objects.get(pk=body["id"]).active is True


def test_get_and_list_show_active(admin_api):
    # given one live and one switched-off programme
    live = make_program("Live club")
    frozen = make_program("Frozen club")
    program_switch(frozen, active=False)
    # when
    one = admin_api.get(f"/api/v1/loyalty/programs/{frozen.pk}").json()
    listing = admin_api.get("/api/v1/loyalty/programs").json()["results"]
    # then
    assert one["active"] is False
    assert {program["name"]: program["active"] for program in listing} == {live.name: True, frozen.name: False}


def test_post_switched_off_freezes_from_the_start(admin_api):
    # given a contact that would be Silver
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 8)
    # when the programme is created switched off
    response = admin_api.post("/api/v1/loyalty/programs", json={**SEEDS_EXAMPLE, "active": False})
    # then it is saved off and nobody got a tier
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["active"] is False and body["recompute"]["frozen"] is True and body["recompute"]["up"] == 0
    assert tier_of(Program.objects.get(pk=body["id"]), contact) is None


def test_put_switches_off_and_tiers_stay(admin_api):
    # given a Bronze contact whose score reached Silver's 6 unseen
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 2)
    program = make_program()
    ContactTag.objects.filter(contact=contact).update(score=9)
    # when the API switches the programme off
    response = admin_api.put(f"/api/v1/loyalty/programs/{program.pk}", json={"active": False})
    # then it is off, nothing moved, and the audit trail has the switch (with the API key's name)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["active"] is False and body["recompute"]["frozen"] is True and body["recompute"]["up"] == 0
    assert tier_of(program, contact) == "Bronze"
    event = ProgramEvent.objects.filter(pgh_obj_id=program.pk, pgh_label="update").latest("pgh_id")
    assert event.active is False and event.pgh_context.metadata["api_key"] == "test admin"


def test_put_switches_on_and_recomputes_at_once(admin_api):
    # given a switched-off programme and a contact whose score reached Silver meanwhile
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 2)
    program = make_program()
    program_switch(program, active=False)
    ContactTag.objects.filter(contact=contact).update(score=9)
    # when the API switches it on
    response = admin_api.put(f"/api/v1/loyalty/programs/{program.pk}", json={"active": True})
    # then the tiers caught up before the answer
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["active"] is True and body["recompute"]["up"] == 1 and "frozen" not in body["recompute"]
    assert tier_of(program, contact) == "Silver"


def test_put_without_active_keeps_it(admin_api):
    # given a switched-off programme
    program = make_program()
    program_switch(program, active=False)
    # when another setting changes
    response = admin_api.put(f"/api/v1/loyalty/programs/{program.pk}", json={"name": "Renamed club"})
    # then it stays off
    assert response.status_code == 200
    assert response.json()["active"] is False
    program.refresh_from_db()
    assert program.active is False


@pytest.mark.parametrize("value", ["false", 0, None, "yes"])
def test_active_must_be_a_boolean(admin_api, value):
    # when
    response = admin_api.post("/api/v1/loyalty/programs", json={**SEEDS_EXAMPLE, "active": value})
    # then
    assert response.status_code == 400
    assert "active" in [error["field"] for error in response.json()["errors"]]
    assert not Program.objects.exists()
