"""Visitors who never identify are forgotten after the retention period; an erased contact's
identities go with it and later messages do not bring it back."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from contacts.models import Contact, ContactTag, Event
from contacts.services import contact_erase
from tests.tracking.helpers import message, post, server_source
from tracking.models import HourlyCount, Identity
from tracking.services import tracking_purge

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def test_purge_drops_only_visitors_inactive_for_the_retention_period(settings):
    # given two anonymous visitors' profiles, each with a tag: one last active 100 days ago, one today
    settings.MH_ANONYMOUS_RETENTION_DAYS = 90
    _, key = server_source()
    post("/v1/batch", {"batch": [message(anonymousId="gone", event="x"), message(anonymousId="back", event="x")]}, key=key)
    for profile in Contact.all_objects.filter(is_anonymous=True):
        profile.add_tag("kurtki", 2)
    gone = Identity.objects.get(value="gone").contact_id
    Contact.all_objects.filter(pk=gone).update(last_activity_at=timezone.now() - timedelta(days=100))
    HourlyCount.objects.update(hour=timezone.now() - timedelta(days=100))
    known = Contact.objects.create(email="old@example.com", last_activity_at=timezone.now() - timedelta(days=400))
    # when the daily purge runs
    result = tracking_purge()
    # then the inactive visitor's profile, events, tags and identity are gone; the active one and
    # every known contact stay
    assert result == {"anonymous_profiles": 1, "hourly_counts": 1}
    assert list(Identity.objects.values_list("value", flat=True)) == ["back"]
    assert list(Contact.all_objects.filter(is_anonymous=True).values_list("identities__value", flat=True)) == ["back"]
    assert not Event.objects.filter(contact_id=gone).exists() and Event.objects.count() == 1
    assert not ContactTag.objects.filter(contact_id=gone).exists()
    assert Contact.objects.filter(pk=known.pk).exists()
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
    # then its identities are gone and nothing re-creates it, not even as an anonymous profile
    assert not Identity.objects.exists()
    assert not Contact.all_objects.exists()
    assert not Event.objects.exists()
