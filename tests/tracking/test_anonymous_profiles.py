"""Anonymous visitors' profiles are scored like anyone but are nobody's contact — not in lists,
counts, segments, exports, webhooks or the contacts API — until a merge moves everything they
gathered (events, tag scores, points, stages) into the contact they identify as."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection

from contacts.models import Contact, ContactTag, TagScoreChange
from core.outbox import OutboxMessage
from leads.api import funnel_create
from leads.dashboard import dashboard_data
from leads.funnels import contact_stage_set, funnel_report
from leads.models import ContactStage, Notification, ScoreChange, TemperatureSettings
from leads.scoring import score_add
from leads.temperature import temperature_counts
from segments.dirty import segments_dirty_refresh
from segments.models import SegmentDirtyContact, SegmentMember
from segments.services import segment_count, segment_refresh, segment_save
from tests.automation.factories import make_rule, process_all
from tests.contacts.exports import export_csv
from tests.tracking.helpers import merge_queued, message, post, server_source
from webhooks.fanout import outbox_fanout
from webhooks.models import Delivery
from webhooks.services import validate_webhook, webhook_save

pytestmark = pytest.mark.django_db

KURTKI = {"type": "has_tag", "tag": "kurtki"}


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


@pytest.fixture
def key():
    return server_source()[1]


def _visitor(key: str, visitor: str = "v-1", *, kurtki: int = 3, points: int = 0) -> Contact:
    assert post("/v1/track", message(anonymousId=visitor, event="Product Viewed", properties={"category": "kurtki"}),
                key=key).status_code == 200
    profile = Contact.all_objects.get(identities__value=visitor)
    profile.add_tag("kurtki", kurtki)
    if points:
        with connection.cursor() as cursor:
            score_add(cursor, contact_ids=[profile.pk], deltas=[points], reason="test points")
    profile.refresh_from_db()
    return profile


def test_a_profile_is_in_no_list_count_segment_export_or_api(key, marketer_client, admin_client, admin_api):
    # given a known contact and an anonymous visitor, both tagged kurtki, the visitor hot by its score
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    Contact.objects.create(email="known@example.com").add_tag("kurtki", 1)
    profile = _visitor(key, kurtki=5, points=50)
    # then lists, counts and segments see the contact only
    assert list(Contact.objects.values_list("email", flat=True)) == ["known@example.com"]
    assert segment_count(KURTKI) == 1  # answered from the tag rows alone
    assert segment_count({"all": [KURTKI, {"type": "score", "op": "gte", "value": 0}]}) == 1  # through the contacts
    segment = segment_save(name="Kurtki", definition=KURTKI, refresh=False)
    segment_refresh(segment.pk)
    assert list(segment.members.values_list("contact__email", flat=True)) == ["known@example.com"]
    assert temperature_counts(10, 20) == {"cold": 1, "warm": 0, "hot": 0}
    data = dashboard_data(use_cache=False)
    assert data["contacts"]["total"] == 1 and data["top_tags"] == [("kurtki", 1)]
    assert data["traffic"]["anonymous_profiles"] == 1 and data["traffic"]["anonymous_events"] == 1
    page = marketer_client.get("/contacts/").content.decode()
    assert "known@example.com" in page and "Anonymous visitor" not in page
    export = export_csv(marketer_client).decode()
    assert "known@example.com" in export and profile.email not in export
    assert admin_api.get(f"/api/v1/contacts/{profile.email}").status_code == 404
    # and no sales user is alerted about an anonymous visitor
    assert not Notification.objects.exists()
    # but an admin may list and open them, asking for it
    assert "Anonymous visitor" in admin_client.get("/contacts/?anonymous=include").content.decode()
    assert "Anonymous visitor" not in marketer_client.get("/contacts/?anonymous=include").content.decode()
    assert admin_client.get(f"/contacts/{profile.pk}/").status_code == 200
    assert marketer_client.get(f"/contacts/{profile.pk}/").status_code == 404


def test_webhooks_never_hear_of_a_profile(key, settings):
    # given a webhook subscribed to temperature changes, and one such change for a contact and a profile
    settings.MH_WEBHOOK_ALLOWED_NETS = ["127.0.0.0/8"]
    webhook_save(None, validate_webhook({"url": "http://127.0.0.1:9/hook", "events": ["lead.temperature_changed"]}))
    known = Contact.objects.create(email="known@example.com")
    profile = _visitor(key)
    for contact in (known, profile):
        OutboxMessage.objects.create(type="lead.temperature_changed", contact_id=contact.pk, data={"from": "cold", "to": "hot"})
    # when the outbox is fanned out
    outbox_fanout()
    # then only the contact's change becomes a delivery
    assert list(Delivery.objects.values_list("contact_id", flat=True)) == [known.pk]


def test_merge_moves_points_stages_and_alerts_when_the_sum_is_hot(key, sales):
    # given a funnel, a contact at "New" with 15 points, and a visitor at "Engaged" with 10 points
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    funnel = funnel_create(name="Lejek", stages=["New", "Engaged", "MQL"])
    new, engaged = funnel.stages.order_by("position")[:2]
    contact = Contact.objects.create(email="anna@example.com")
    with connection.cursor() as cursor:
        score_add(cursor, contact_ids=[contact.pk], deltas=[15], reason="earlier")
    contact_stage_set(contact_id=contact.pk, stage=new, cause="manual")
    profile = _visitor(key, kurtki=2, points=10)
    contact_stage_set(contact_id=profile.pk, stage=engaged, cause="manual")
    assert [row["count"] for row in funnel_report(funnel)] == [1, 0, 0]  # the profile is in no report
    assert not Notification.objects.exists()
    # when the visitor identifies as the contact
    response = post("/v1/identify", message("identify", anonymousId="v-1", traits={"email": "anna@example.com"}), key=key)
    assert response.status_code == 200
    assert merge_queued() == 1
    # then its points moved to the contact's ledger and score (25: hot), sales are alerted, the
    # contact is at the further stage, its tag scores add up with the history saying why
    contact.refresh_from_db()
    assert contact.score == 25
    assert sorted(ScoreChange.objects.filter(contact=contact).values_list("delta", flat=True)) == [10, 15]
    assert list(Notification.objects.values_list("user_id", "contact_id")) == [(sales.pk, contact.pk)]
    assert ContactStage.objects.get(contact=contact, funnel=funnel).stage == engaged
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 2
    merge_row = TagScoreChange.objects.get(contact=contact, source="visitor")
    assert (merge_row.delta, merge_row.score_after) == (2, 2)
    assert not Contact.all_objects.filter(pk=profile.pk).exists()


def test_contact_api_names_the_tracked_ids(key, admin_api):
    # given a visitor that identified with a userId, and a second device of the same person
    post("/v1/track", message(anonymousId="phone", event="x"), key=key)
    post("/v1/identify", message("identify", anonymousId="laptop", userId="cust-1", traits={"email": "ola@example.com"}), key=key)
    post("/v1/identify", message("identify", anonymousId="phone", userId="cust-1"), key=key)
    merge_queued()
    # when the contact is read through the API
    body = admin_api.get("/api/v1/contacts/ola@example.com").json()
    # then it names the userId and both anonymousIds, and the phone's profile merged into it
    assert body["user_id"] == "cust-1"
    assert sorted(body["anonymous_ids"]) == ["laptop", "phone"]
    assert not Contact.all_objects.filter(is_anonymous=True).exists()


def test_a_repeated_merge_does_nothing(key):
    # given a visitor merged into its contact
    profile = _visitor(key, kurtki=3)
    Contact.objects.create(email="twice@example.com")
    post("/v1/identify", message("identify", anonymousId="v-1", traits={"email": "twice@example.com"}), key=key)
    merge_queued()
    # when the same merge is asked again (a replayed pair)
    from contacts.merging import profiles_merge

    contact = Contact.objects.get(email="twice@example.com")
    assert profiles_merge([(profile.pk, contact.pk)]) == []
    # then nothing doubled
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 3


def test_a_profiles_changes_queue_no_membership_work_its_merge_queues_the_contact(key):
    # given a rule tagging product views, a saved segment on that tag, and a known contact
    make_rule(actions=[{"type": "add_tag", "tag": "{category}", "score": 1}])
    segment = segment_save(name="Kurtki", definition=KURTKI)
    contact = Contact.objects.create(email="ola@example.com")
    SegmentDirtyContact.objects.all().delete()
    # when an anonymous visitor's views are scored
    for number in range(2):
        assert post("/v1/track", message(anonymousId="v-9", message_id=f"view-{number}", event="Product Viewed",
                                         properties={"category": "kurtki"}), key=key).status_code == 200
    process_all()
    profile = Contact.all_objects.get(identities__value="v-9")
    assert ContactTag.objects.get(contact=profile, tag__key="kurtki").score == 2
    # then no segment can hold the profile, so the drain gets nothing to re-evaluate for it
    assert not SegmentDirtyContact.objects.filter(contact_id=profile.pk).exists()
    # when it identifies as the contact and is merged: the contact is queued, and the drain
    # takes it into the segment
    assert post("/v1/identify", message("identify", anonymousId="v-9", traits={"email": "ola@example.com"}),
                key=key).status_code == 200
    assert merge_queued() == 1
    assert SegmentDirtyContact.objects.filter(contact_id=contact.pk).exists()
    segments_dirty_refresh()
    assert list(SegmentMember.objects.filter(segment=segment).values_list("contact_id", flat=True)) == [contact.pk]
