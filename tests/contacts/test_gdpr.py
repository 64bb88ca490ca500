"""GDPR from the card: a JSON export of everything, and erasure with a suppression record."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from contacts.models import Contact, ContactOwnerEvent, Event, Note, Suppression, TagScoreChange, email_hash
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


def test_erase_needs_the_email_typed_and_removes_everything(admin_client, marketer, sales):
    # given a contact with history, events, an owner change and a saved segment counting it
    contact = ContactFactory(email="ola@example.com")
    contact.add_tag("vip", user=marketer)
    make_event(contact, "purchase", value=10)
    Contact.objects.filter(pk=contact.pk).assign_owner(sales)
    segment = Segment.objects.create(name="All", definition={"all": []}, count=1)
    SegmentMember.objects.create(segment=segment, contact=contact)
    url = reverse("contacts:card_erase", args=[contact.pk])
    # when the confirmation is wrong, nothing happens
    admin_client.post(url, {"confirm_email": "someone@else.com"})
    assert Contact.objects.filter(pk=contact.pk).exists()
    # when it is right
    response = admin_client.post(url, {"confirm_email": " OLA@example.com "})
    # then the contact and every row about it are gone, the count is corrected, a suppression hash stays
    assert response.status_code == 302
    assert not Contact.objects.exists() and not Event.objects.exists() and not TagScoreChange.objects.exists()
    assert not ContactOwnerEvent.objects.filter(pgh_obj_id=contact.pk).exists()
    assert Segment.objects.get().count == 0
    assert Suppression.objects.filter(email_hash=email_hash("ola@example.com")).exists()


def test_only_admins_may_erase_and_only_they_see_the_button(marketer_client, admin_client):
    # given a contact
    contact = ContactFactory(email="kept@example.com")
    url = reverse("contacts:card_erase", args=[contact.pk])
    # a marketer sees the export but no Erase button, and the server refuses them
    card = marketer_client.get(reverse("contacts:card", args=[contact.pk])).content.decode()
    assert 'data-dialog-open="erase-dialog"' not in card and "GDPR export" in card
    assert marketer_client.post(url, {"confirm_email": "kept@example.com"}).status_code == 403
    assert Contact.objects.filter(pk=contact.pk).exists()
    # an admin sees it
    assert 'data-dialog-open="erase-dialog"' in admin_client.get(reverse("contacts:card", args=[contact.pk])).content.decode()


def test_erase_removes_receipts_and_queued_events_too(admin_client):
    # given a contact with one processed and one still queued event (receipts and the queue have
    # no database constraint on the contact: the ORM's cascade must remove them)
    from unittest import mock

    from automation.engine import events_process_pending
    from automation.ingestion import events_ingest
    from automation.models import EventReceipt, PendingEvent
    from tests.automation.factories import event

    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event("done-1", email="eve@example.com")])
        events_process_pending(time_budget=30)
        events_ingest([event("queued-1", email="eve@example.com")])
    contact = Contact.objects.get(email="eve@example.com")
    assert EventReceipt.objects.filter(contact=contact).count() == 2 and PendingEvent.objects.count() == 1
    # when the contact is erased
    response = admin_client.post(reverse("contacts:card_erase", args=[contact.pk]),
                                 {"confirm_email": "eve@example.com"})
    # then nothing about it is left for the engine or the idempotency check
    assert response.status_code == 302
    assert not EventReceipt.objects.exists() and not PendingEvent.objects.exists()
    from automation.engine import events_status

    assert events_status()["pending"] == 0  # its queued membership work went too
