"""The loyalty pages: read-only for marketers, the admin editor, its preview, the card panel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import Job
from loyalty.models import Program, Tier, TierEvent
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program

pytestmark = pytest.mark.django_db


def editor_data(program: Program | None, tiers: list[tuple], **overrides) -> dict:
    """The editor form as the browser posts it (rows: (id or None, name, min, discount))."""
    data = {
        "name": program.name if program else "New club", "description": "",
        "metric_type": "tag_score", "metric_tag": "PURCHASE", "metric_within_days": "",
        "downgrade_policy": "immediate", "grace_days": "0",
        "tiers-TOTAL_FORMS": str(len(tiers)), "tiers-INITIAL_FORMS": str(sum(1 for row in tiers if row[0])),
        "tiers-MIN_NUM_FORMS": "1", "tiers-MAX_NUM_FORMS": "1000",
    }
    if program:
        data["program_id"] = str(program.pk)
    for index, (tier_id, name, minimum, discount) in enumerate(tiers):
        data[f"tiers-{index}-id"] = str(tier_id or "")
        data[f"tiers-{index}-name"] = name
        data[f"tiers-{index}-min"] = str(minimum)
        data[f"tiers-{index}-discount_percent"] = "" if discount is None else str(discount)
    data.update(overrides)
    return data


@pytest.fixture
def program():
    for score in (2, 6, 8):
        give_tag(ContactFactory(), "PURCHASE", score)
    return make_program()


def tier_rows(program: Program, silver_min: int) -> list[tuple]:
    bronze = Tier.objects.get(program=program, name="Bronze")
    silver = Tier.objects.get(program=program, name="Silver")
    return [(bronze.pk, "Bronze", 0, 5), (silver.pk, "Silver", silver_min, 7)]


def test_marketer_reads_list_and_overview_without_edit_buttons(marketer_client, program):
    # when
    listing = marketer_client.get(reverse("loyalty:programs"))
    detail = marketer_client.get(reverse("loyalty:program_detail", kwargs={"program_id": program.pk}))
    # then
    assert listing.status_code == 200 and b"PURCHASE club" in listing.content
    assert detail.status_code == 200 and b"Tier distribution" in detail.content
    edit_url = reverse("loyalty:program_edit", kwargs={"program_id": program.pk}).encode()
    assert edit_url not in listing.content and edit_url not in detail.content


def test_admin_sees_edit_buttons(admin_client, program):
    listing = admin_client.get(reverse("loyalty:programs"))
    assert reverse("loyalty:program_edit", kwargs={"program_id": program.pk}).encode() in listing.content


def test_marketer_cannot_save_thresholds_on_the_server(marketer_client, program):
    # when a marketer posts the editor form directly
    url = reverse("loyalty:program_edit", kwargs={"program_id": program.pk})
    response = marketer_client.post(url, editor_data(program, tier_rows(program, 9)))
    # then
    assert response.status_code == 403
    assert Tier.objects.get(program=program, name="Silver").min == 6
    assert not Job.objects.exists()


def test_overlapping_thresholds_are_rejected_with_a_clear_message(admin_client, program):
    # when Silver's minimum equals Bronze's
    url = reverse("loyalty:program_edit", kwargs={"program_id": program.pk})
    response = admin_client.post(url, editor_data(program, tier_rows(program, 0)))
    # then the form comes back (200) naming the problem; nothing saved
    assert response.status_code == 200
    text = response.content.decode()
    assert "equals the previous tier’s minimum (Bronze: 0)" in text
    assert Tier.objects.get(program=program, name="Silver").min == 6


def test_unordered_thresholds_are_rejected(admin_client, program):
    url = reverse("loyalty:program_edit", kwargs={"program_id": program.pk})
    rows = tier_rows(program, 6)
    response = admin_client.post(url, editor_data(program, [rows[1], rows[0]]))
    assert response.status_code == 200
    assert "is below the previous tier’s minimum" in response.content.decode()


def test_saving_records_the_change_and_starts_a_recompute_job(admin_client, admin, program):
    # when the admin raises Silver to 8
    url = reverse("loyalty:program_edit", kwargs={"program_id": program.pk})
    response = admin_client.post(url, editor_data(program, tier_rows(program, 8)))
    # then
    assert response.status_code == 302
    job = Job.objects.get(kind="loyalty_recompute")
    assert job.params["program_id"] == program.pk and job.created_by == admin
    assert response["Location"].endswith(f"?job={job.pk}")
    assert Tier.objects.get(program=program, name="Silver").min == 8
    event = TierEvent.objects.filter(name="Silver", pgh_label="update").latest("pgh_created_at")
    assert event.min == 8 and event.pgh_context.metadata["user"] == admin.pk


def test_create_programme_from_the_editor(admin_client):
    # when
    data = editor_data(None, [(None, "Bronze", 0, 5), (None, "Silver", 6, 7)], name="Seeds club")
    response = admin_client.post(reverse("loyalty:program_create"), data)
    # then
    assert response.status_code == 302
    program = Program.objects.get(name="Seeds club")
    assert list(program.tiers.values_list("name", "benefits")) == [
        ("Bronze", {"discount_percent": 5}), ("Silver", {"discount_percent": 7})
    ]


def test_editor_metric_fields_are_validated(admin_client):
    data = editor_data(None, [(None, "Bronze", 0, 5)], metric_tag="")
    response = admin_client.post(reverse("loyalty:program_create"), data)
    assert response.status_code == 200
    assert "Is required for a tag_score metric" in response.content.decode()
    assert not Program.objects.exists()


def test_live_preview_fragment_shows_the_impact(admin_client, program):
    # when Silver would need 7 (the contact at 6 drops)
    response = admin_client.post(reverse("loyalty:preview"), editor_data(program, tier_rows(program, 7)),
                                 headers={"HX-Request": "true"})
    # then
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-testid="preview-down">1<' in text and 'data-testid="preview-up">0<' in text
    assert "<html" not in text


def test_preview_of_invalid_tiers_explains_instead_of_failing(admin_client, program):
    response = admin_client.post(reverse("loyalty:preview"), editor_data(program, tier_rows(program, 0)),
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Fix these to see the impact" in response.content.decode()


def test_card_panel_shows_tier_benefits_and_distance(sales_client, program, django_assert_max_num_queries):
    # given a contact at PURCHASE 2 (Bronze, 4 short of Silver)
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 2)
    from loyalty.services import tiers_refresh_for_contacts

    tiers_refresh_for_contacts([contact.pk])
    # when
    with django_assert_max_num_queries(12):
        response = sales_client.get(reverse("loyalty:card_panel", kwargs={"contact_id": contact.pk}))
    # then
    text = response.content.decode()
    assert response.status_code == 200
    assert "Bronze" in text and "5% discount" in text and "4 more points of PURCHASE to <strong>Silver</strong>" in text
    assert "Pin a tier" not in text  # Admins only


def test_admin_pins_from_the_card_and_it_shows(admin_client, program):
    # given
    contact = ContactFactory()
    silver = Tier.objects.get(program=program, name="Silver")
    until = timezone.localdate() + timedelta(days=14)
    # when
    response = admin_client.post(
        reverse("loyalty:pin", kwargs={"program_id": program.pk, "contact_id": contact.pk}),
        {f"pin{program.pk}-tier": silver.pk, f"pin{program.pk}-until": until.isoformat(), f"pin{program.pk}-note": "goodwill"},
        headers={"HX-Request": "true"},
    )
    # then
    text = response.content.decode()
    assert response.status_code == 200
    assert f"Pinned to Silver until {until.day} {until:%b %Y}" in text and "goodwill" in text


def test_a_pin_in_the_past_is_refused(admin_client, program):
    contact = ContactFactory()
    silver = Tier.objects.get(program=program, name="Silver")
    response = admin_client.post(
        reverse("loyalty:pin", kwargs={"program_id": program.pk, "contact_id": contact.pk}),
        {f"pin{program.pk}-tier": silver.pk, f"pin{program.pk}-until": "2000-01-01"},
    )
    assert response.status_code == 200 and "Pick today or a later date." in response.content.decode()
    assert "Pinned to" not in response.content.decode()
