"""The card's Owner select obeys the lead holder rule: only the holder, marketers and admins may
reassign a held lead; Sales may take an unassigned lead or give up their own (horizontal access:
one seller cannot take over, clear or hand on another seller's lead)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def _owner_url(contact) -> str:
    return reverse("contacts:card_owner", args=[contact.pk])


def _toast(response) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


@pytest.fixture
def other_seller():
    return UserFactory(username="other_seller", first_name="Olga", last_name="Other", role="Sales")


@pytest.mark.parametrize("owner_value", ["self", "none", ""])
def test_sales_cannot_take_over_or_clear_another_sellers_lead(sales_client, sales, other_seller, owner_value):
    # given a lead another seller holds
    lead = ContactFactory(owner=other_seller)
    value = str(sales.pk) if owner_value == "self" else owner_value
    # when a Sales user posts the card's Owner select (taking it, or clearing it)
    response = sales_client.post(_owner_url(lead), {"owner": value})
    # then the holder keeps it and the seller is told who holds it
    lead.refresh_from_db()
    assert lead.owner == other_seller
    assert response.status_code == 200
    assert _toast(response)["level"] == "error"
    assert "Olga Other holds this lead" in _toast(response)["message"]


def test_sales_cannot_hand_an_unassigned_lead_to_another_seller(sales_client, other_seller):
    # given an unassigned lead
    lead = ContactFactory()
    # when a Sales user assigns it to someone else
    response = sales_client.post(_owner_url(lead), {"owner": str(other_seller.pk)})
    # then nothing changes
    lead.refresh_from_db()
    assert lead.owner is None
    assert _toast(response)["level"] == "error"


def test_the_holder_gives_up_their_lead_and_a_marketer_reassigns_any(sales_client, sales, marketer_client,
                                                                     other_seller):
    # given a lead the Sales user holds
    lead = ContactFactory(owner=sales)
    # when they clear the owner
    released = sales_client.post(_owner_url(lead), {"owner": "none"})
    lead.refresh_from_db()
    # then it is unassigned
    assert lead.owner is None and _toast(released)["message"] == "Owner cleared."
    # and when a marketer gives it to another seller, then it is theirs
    lead.owner = sales
    lead.save(update_fields=["owner"])
    marketer_client.post(_owner_url(lead), {"owner": str(other_seller.pk)})
    lead.refresh_from_db()
    assert lead.owner == other_seller


def test_the_card_shows_another_sellers_lead_read_only(sales_client, other_seller, marketer_client):
    # given a lead another seller holds
    lead = ContactFactory(owner=other_seller)
    # when a Sales user and a marketer open its card
    for_sales = sales_client.get(reverse("contacts:card", args=[lead.pk])).content.decode()
    for_marketer = marketer_client.get(reverse("contacts:card", args=[lead.pk])).content.decode()
    # then only the marketer gets the Owner select; Sales read who holds it
    assert 'id="owner-select"' not in for_sales and "<p>Olga Other</p>" in for_sales
    assert 'id="owner-select"' in for_marketer


def test_an_owner_outside_the_list_is_refused(marketer_client, marketer):
    # given an unassigned lead and a user who is not a seller
    lead = ContactFactory()
    # when the marketer posts that user as owner
    response = marketer_client.post(_owner_url(lead), {"owner": str(marketer.pk)})
    # then the form refuses it
    lead.refresh_from_db()
    assert lead.owner is None
    assert _toast(response) == {"message": "Pick an owner from the list (a Sales user).", "level": "error"}
