"""An admin switches a programme off (tiers frozen: nothing recomputes them) and on again (a
recompute catches up), or deletes it; both are confirmed in the browser and audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import ContactTag
from contacts.signals import contacts_changed
from core.models import Job
from loyalty.models import ContactTier, Program, ProgramEvent, Tier, TierChange
from loyalty.services import program_recompute, program_switch, tiers_apply_due, tiers_refresh_for_contacts
from loyalty.tasks import programs_recompute_daily_task
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program, tier_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def bronze_contact():
    """A Bronze contact (PURCHASE 2) whose score then rises to Silver's 6 unseen."""
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 2)
    program = make_program()
    assert tier_of(program, contact) == "Bronze"
    ContactTag.objects.filter(contact=contact).update(score=9)
    return program, contact


def test_switched_off_nothing_moves_the_tiers(admin_client, admin, bronze_contact):
    program, contact = bronze_contact
    changes_before = TierChange.objects.count()
    # when the admin switches the programme off
    response = admin_client.post(reverse("loyalty:program_switch", kwargs={"program_id": program.pk}), {"active": "0"})
    assert response.status_code == 302
    program.refresh_from_db()
    assert program.active is False
    # then events, full recomputes, the daily job and the card's pins change nothing
    contacts_changed.send(sender=None, contact_ids=[contact.pk])
    tiers_refresh_for_contacts([contact.pk])
    result = program_recompute(program)
    programs_recompute_daily_task()
    assert result["frozen"] and result["written"] == 0 and result["up"] == 0
    assert tier_of(program, contact) == "Bronze"
    assert TierChange.objects.count() == changes_before
    # and neither the Recompute button nor its URL start anything
    page = admin_client.get(reverse("loyalty:program_detail", kwargs={"program_id": program.pk})).content.decode()
    assert "Switched off — tiers are frozen" in page and ">Recompute<" not in page
    admin_client.post(reverse("loyalty:program_recompute", kwargs={"program_id": program.pk}))
    assert not Job.objects.filter(kind="loyalty_recompute").exists()
    # and the audit trail says who switched it off
    assert "Programme switched off (tiers frozen)" in page
    event = ProgramEvent.objects.filter(pgh_obj_id=program.pk, pgh_label="update").latest("pgh_id")
    assert event.active is False and event.pgh_context.metadata["user"] == admin.pk


def test_switched_off_grace_period_drops_wait():
    # given a Silver contact with a pending drop in a grace-period programme
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 8)
    program = make_program("Graced", downgrade_policy=Program.Downgrade.GRACE, grace_days=30)
    ContactTag.objects.filter(contact=contact).update(score=2)
    program_recompute(program)
    assert ContactTier.objects.get(program=program, contact=contact).downgrade_due_at is not None
    # when switched off, the due date passes without a drop
    program_switch(program, active=False)
    assert tiers_apply_due(now=timezone.now() + timedelta(days=31)) == 0
    assert tier_of(program, contact) == "Silver"


def test_switching_on_recomputes(admin_client, bronze_contact):
    program, contact = bronze_contact
    program_switch(program, active=False)
    # when switched on
    response = admin_client.post(reverse("loyalty:program_switch", kwargs={"program_id": program.pk}), {"active": "1"})
    # then a recompute job starts, and the recompute it runs catches up
    job = Job.objects.get(kind="loyalty_recompute")
    assert response["Location"].endswith(f"?job={job.pk}") and job.params["program_id"] == program.pk
    program_recompute(program)
    assert tier_of(program, contact) == "Silver"


def test_pins_are_refused_while_switched_off(admin_client, bronze_contact):
    program, contact = bronze_contact
    program_switch(program, active=False)
    silver = Tier.objects.get(program=program, name="Silver")
    url = reverse("loyalty:pin", kwargs={"program_id": program.pk, "contact_id": contact.pk})
    response = admin_client.post(url, {f"pin{program.pk}-tier": silver.pk,
                                       f"pin{program.pk}-until": (timezone.localdate() + timedelta(days=5)).isoformat()})
    assert response.status_code == 200 and "is switched off" in response["HX-Trigger"]
    row = ContactTier.objects.get(program=program, contact=contact)
    assert row.pinned_tier_id is None and row.tier.name == "Bronze"
    panel = admin_client.get(reverse("loyalty:card_panel", kwargs={"contact_id": contact.pk})).content.decode()
    assert "switched off, tier frozen" in panel and "Pin a tier" not in panel


def test_delete_removes_the_programme_and_is_audited(admin_client, admin, bronze_contact):
    program, contact = bronze_contact
    # when the admin deletes it
    response = admin_client.post(reverse("loyalty:program_delete", kwargs={"program_id": program.pk}))
    # then it is gone with its tiers and every contact's place in it
    assert response.status_code == 302 and response["Location"] == reverse("loyalty:programs")
    assert not Program.objects.exists() and not Tier.objects.exists()
    assert not ContactTier.objects.exists() and not TierChange.objects.exists()
    # and the list says who deleted what
    deleted = ProgramEvent.objects.get(pgh_obj_id=program.pk, pgh_label="delete")
    assert deleted.pgh_context.metadata["user"] == admin.pk
    page = admin_client.get(reverse("loyalty:programs")).content.decode()
    assert "Deleted programmes" in page and "PURCHASE club" in page


def test_marketers_may_not_switch_or_delete(marketer_client, bronze_contact):
    program, _ = bronze_contact
    page = marketer_client.get(reverse("loyalty:program_detail", kwargs={"program_id": program.pk})).content.decode()
    assert "Switch off" not in page and "program-delete" not in page
    assert marketer_client.post(reverse("loyalty:program_switch", kwargs={"program_id": program.pk}),
                                {"active": "0"}).status_code == 403
    assert marketer_client.post(reverse("loyalty:program_delete", kwargs={"program_id": program.pk})).status_code == 403
    program.refresh_from_db()
    assert program.active


def test_editing_a_switched_off_programme_keeps_its_tiers_frozen(admin_client, bronze_contact):
    # given a switched-off programme whose Silver threshold the admin lowers
    from tests.loyalty.test_pages import editor_data, tier_rows

    program, contact = bronze_contact
    program_switch(program, active=False)
    # when saved
    response = admin_client.post(reverse("loyalty:program_edit", kwargs={"program_id": program.pk}),
                                 editor_data(program, tier_rows(program, 4)))
    # then the thresholds are saved but nothing is recomputed
    assert response.status_code == 302
    assert Tier.objects.get(program=program, name="Silver").min == 4
    assert not Job.objects.filter(kind="loyalty_recompute").exists()
    assert tier_of(program, contact) == "Bronze"


def test_an_api_update_of_a_switched_off_programme_moves_nobody(admin_api, bronze_contact):
    # given a switched-off programme and a contact whose score reached Silver meanwhile
    program, contact = bronze_contact
    program_switch(program, active=False)
    # when its name changes through the API (which recomputes a live programme at once)
    response = admin_api.put(f"/api/v1/loyalty/programs/{program.pk}", json={"name": "Renamed club"})
    # then it is saved, and the recompute says the tiers are frozen
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Renamed club" and body["recompute"]["frozen"] is True and body["recompute"]["up"] == 0
    assert tier_of(program, contact) == "Bronze"
