"""Visitors who never identify are forgotten after the retention period; an erased contact's
identities go with it and later messages do not bring it back."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from contacts.models import Contact, Event
from contacts.services import contact_erase
from tests.tracking.helpers import message, post, server_source
from tracking.models import HeldMessage, HourlyCount, Identity
from tracking.services import tracking_purge

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def test_purge_drops_only_visitors_inactive_for_the_retention_period(settings):
    # given two anonymous visitors: one last seen 100 days ago, one with an old and a recent message
    settings.MH_ANONYMOUS_RETENTION_DAYS = 90
    _, key = server_source()
    post("/v1/batch", {"batch": [message(anonymousId="gone", event="x"), message(anonymousId="back", event="x")]}, key=key)
    HeldMessage.objects.update(received_at=timezone.now() - timedelta(days=100))
    post("/v1/track", message(anonymousId="back", event="y"), key=key)
    HourlyCount.objects.update(hour=timezone.now() - timedelta(days=100))
    # when the daily purge runs
    result = tracking_purge()
    # then the inactive visitor's messages and the old counts are gone, the active visitor keeps all
    assert sorted(HeldMessage.objects.values_list("anonymous_id", flat=True)) == ["back", "back"]
    assert result == {"held_messages": 1, "hourly_counts": 1}
    assert not HourlyCount.objects.exists()


def test_erased_contact_takes_its_identities_and_is_not_recreated(admin):
    # given a contact known by a userId and an anonymousId
    _, key = server_source()
    post("/v1/identify", message("identify", userId="u5", anonymousId="a5", traits={"email": "erase@example.com"}), key=key)
    contact = Contact.objects.get(email="erase@example.com")
    # when it is erased (GDPR) and the shop keeps sending for that visitor
    contact_erase(contact, user=admin)
    post("/v1/batch", {"batch": [message(userId="u5", event="Product Viewed"),
                                 message("identify", userId="u5", traits={"email": "erase@example.com"})]}, key=key)
    # then its identities are gone and nothing re-creates it
    assert not Identity.objects.exists()
    assert not Contact.objects.filter(email="erase@example.com").exists()
    assert not Event.objects.exists()
