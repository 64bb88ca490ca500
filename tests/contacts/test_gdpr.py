"""GDPR from the card: a JSON export of everything, and erasure with a suppression record."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from automation.models import Event
from contacts.models import Contact, ContactOwnerEvent, Note, Suppression, TagScoreChange, email_hash
from segments.models import Segment, SegmentMember
from tests.contacts.factories import make_event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_export_contains_profile_tags_notes_events(marketer_client, marketer):
    contact = ContactFactory(email="ala@example.com")
    contact.add_tag("vip", 2, user=marketer)
    Note.objects.create(contact=contact, author=marketer, text="likes red")
    make_event(contact, "page_view", properties={"url": "/sale"})
    response = marketer_client.get(reverse("contacts:card_export", args=[contact.pk]))
    data = json.loads(response.content)
    assert response["Content-Disposition"].startswith("attachment")
    assert data["email"] == "ala@example.com" and data["tags"] == [{"name": "vip", "score": 2}]
    assert data["notes"][0]["text"] == "likes red" and data["events"][0]["properties"] == {"url": "/sale"}
    assert data["tag_history"][0]["delta"] == 2


def test_erase_needs_the_email_typed_and_removes_everything(marketer_client, marketer, sales):
    # given a contact with history, events, an owner change and a saved segment counting it
    contact = ContactFactory(email="ola@example.com")
    contact.add_tag("vip", user=marketer)
    make_event(contact, "purchase", value=10)
    Contact.objects.filter(pk=contact.pk).assign_owner(sales)
    segment = Segment.objects.create(name="All", definition={"all": []}, count=1)
    SegmentMember.objects.create(segment=segment, contact=contact)
    url = reverse("contacts:card_erase", args=[contact.pk])
    # when the confirmation is wrong, nothing happens
    marketer_client.post(url, {"confirm_email": "someone@else.com"})
    assert Contact.objects.filter(pk=contact.pk).exists()
    # when it is right
    response = marketer_client.post(url, {"confirm_email": " OLA@example.com "})
    # then the contact and every row about it are gone, the count is corrected, a suppression hash stays
    assert response.status_code == 302
    assert not Contact.objects.exists() and not Event.objects.exists() and not TagScoreChange.objects.exists()
    assert not ContactOwnerEvent.objects.filter(pgh_obj_id=contact.pk).exists()
    assert Segment.objects.get().count == 0
    assert Suppression.objects.filter(email_hash=email_hash("ola@example.com")).exists()
