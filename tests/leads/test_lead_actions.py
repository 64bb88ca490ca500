"""Claim, assign, status and notes from the hot-leads row — permissions enforced on the server."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from contacts.models import Contact, Note
from leads.models import LeadStatusChange
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def _toast(response) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


def test_sales_claims_an_unassigned_lead(sales_client, sales):
    lead = ContactFactory()
    response = sales_client.post(reverse("leads:lead_claim", args=[lead.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.owner == sales
    assert _toast(response)["level"] == "success"
    assert f'id="lead-{lead.pk}"' in response.content.decode()


def test_claiming_a_lead_someone_holds_fails_and_names_them(sales_client, marketer):
    lead = ContactFactory(owner=marketer)
    response = sales_client.post(reverse("leads:lead_claim", args=[lead.pk]))
    lead.refresh_from_db()
    assert lead.owner == marketer
    assert _toast(response)["level"] == "error"
    assert marketer.get_full_name() in _toast(response)["message"]


def test_status_with_note_writes_status_history_and_note(sales_client, sales):
    lead = ContactFactory(owner=sales)
    response = sales_client.post(
        reverse("leads:lead_update", args=[lead.pk]), {"status": "contacted", "note": "Called, wants a quote"}
    )
    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.lead_status == "contacted" and lead.lead_status_changed_at is not None
    change = LeadStatusChange.objects.get(contact=lead)
    assert (change.from_status, change.to_status, change.user) == ("new", "contacted", sales)
    assert Note.objects.get(contact=lead).text == "Called, wants a quote"


def test_sales_working_an_unassigned_lead_claims_it(sales_client, sales):
    lead = ContactFactory()
    sales_client.post(reverse("leads:lead_update", args=[lead.pk]), {"status": "qualified", "note": ""})
    lead.refresh_from_db()
    assert (lead.owner, lead.lead_status) == (sales, "qualified")


def test_lost_needs_a_reason(sales_client, sales):
    lead = ContactFactory(owner=sales)
    response = sales_client.post(reverse("leads:lead_update", args=[lead.pk]), {"status": "lost", "note": "  "})
    assert response.status_code == 200  # re-rendered with the message, htmx swaps it
    assert "reason is required" in response.content.decode()
    lead.refresh_from_db()
    assert lead.lead_status == "new"
    assert not LeadStatusChange.objects.exists()
    sales_client.post(reverse("leads:lead_update", args=[lead.pk]), {"status": "lost", "note": "Chose a competitor"})
    lead.refresh_from_db()
    assert (lead.lead_status, lead.lead_status_reason) == ("lost", "Chose a competitor")
    assert LeadStatusChange.objects.get(contact=lead).reason == "Chose a competitor"


def test_sales_may_not_change_a_lead_someone_else_holds(sales_client, marketer):
    lead = ContactFactory(owner=marketer)
    response = sales_client.post(reverse("leads:lead_update", args=[lead.pk]), {"status": "won", "note": "mine now"})
    assert "holds this lead" in response.content.decode()
    lead.refresh_from_db()
    assert lead.lead_status == "new"
    assert not Note.objects.exists()


def test_unknown_status_is_refused(sales_client, sales):
    lead = ContactFactory(owner=sales)
    response = sales_client.post(reverse("leads:lead_update", args=[lead.pk]), {"status": "boiling"})
    assert response.status_code == 200
    assert Contact.objects.get(pk=lead.pk).lead_status == "new"


def test_marketer_assigns_and_sales_may_not(marketer_client, sales_client, sales):
    lead = ContactFactory()
    other = UserFactory(username="other_sales", role="Sales")
    marketer_client.post(reverse("leads:lead_assign", args=[lead.pk]), {"owner": other.pk})
    lead.refresh_from_db()
    assert lead.owner == other
    assert sales_client.post(reverse("leads:lead_assign", args=[lead.pk]), {"owner": sales.pk}).status_code == 403


def test_release_only_by_holder(sales_client, sales, marketer):
    held = ContactFactory(owner=marketer)
    sales_client.post(reverse("leads:lead_release", args=[held.pk]))
    held.refresh_from_db()
    assert held.owner == marketer
    own = ContactFactory(owner=sales)
    sales_client.post(reverse("leads:lead_release", args=[own.pk]))
    own.refresh_from_db()
    assert own.owner is None


def test_unknown_lead_is_404(sales_client):
    assert sales_client.post(reverse("leads:lead_claim", args=[999999])).status_code == 404
