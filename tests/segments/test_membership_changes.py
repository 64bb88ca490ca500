"""The membership drain re-evaluates a segment only for the contacts whose changes can move them
in or out of it: what each leaf depends on, that a change it does not name is skipped, and that
after events of every kind the stored memberships are what an independent evaluator says."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection

from automation.ingestion import events_ingest
from contacts.csvio import ImportChunk, ParsedRow, contacts_import_write
from contacts.models import Consent, Contact
from contacts.services import consents_record, contacts_upsert
from contacts.signals import (
    CHANGED_ACTIVITY,
    CHANGED_CONSENT,
    CHANGED_FIELDS,
    CHANGED_SCORE,
    CHANGED_STAGE,
    CHANGED_TAGS,
    CHANGED_TIER,
    changed_events,
)
from contacts.tasks import bulk_apply
from segments.compiler import definition_changes
from segments.dirty import segments_dirty_refresh, segments_mark_dirty
from segments.models import Segment, SegmentDirtyContact, SegmentMember
from segments.services import segment_members_refresh_for_contacts, segment_refresh
from tests.automation.factories import event, make_rule, process_all
from tests.factories import ContactFactory, give_tag
from tests.segments.evaluator import World
from tests.segments.factories import consent

pytestmark = pytest.mark.django_db

KURTKI = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 2}
EMAIL_CONSENT = {"type": "consent", "channel": "email", "value": True}
APP_USERS = {"type": "event_count", "event_type": "custom", "op": "gte", "value": 1,
             "where": [{"property": "name", "op": "eq", "value": "app_open"}]}


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"), \
            mock.patch("segments.tasks.segments_dirty_refresh_enqueue"):
        yield


def members(segment: Segment) -> set[int]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("contact_id", flat=True))


@pytest.mark.parametrize(("leaf", "needs"), [
    ({"type": "has_tag", "tag": "kurtki"}, {CHANGED_TAGS}),
    (KURTKI, {CHANGED_TAGS}),
    ({"type": "score", "op": "gte", "value": 10}, {CHANGED_SCORE}),
    ({"type": "temperature", "value": "hot"}, {CHANGED_SCORE}),
    ({"type": "purchase_total", "op": "gte", "value": 100}, {changed_events("purchase")}),
    (APP_USERS, {changed_events("custom")}),
    ({"type": "inactive_days", "value": 30}, {CHANGED_ACTIVITY}),
    ({"type": "attribute", "name": "country", "op": "eq", "value": "PL"}, {CHANGED_FIELDS}),
    ({"type": "age", "op": "gte", "value": 18}, {CHANGED_FIELDS}),
    (EMAIL_CONSENT, {CHANGED_CONSENT}),
    ({"type": "stage", "funnel": "Sales", "stage": "Lead"}, {CHANGED_STAGE}),
    ({"type": "tier", "program": "Club", "tier": "Gold"}, {CHANGED_TIER}),
])
def test_each_leaf_names_what_can_move_a_contact(leaf, needs):
    assert definition_changes(leaf, {}) == needs
    # under NOT and inside trees alike
    assert definition_changes({"not": leaf}, {}) == needs
    assert definition_changes({"any": [leaf, {"type": "score", "op": "lt", "value": 0}]}, {}) == needs | {CHANGED_SCORE}


def test_segment_references_are_followed_and_unknown_leaves_mean_anything():
    segments = {1: {"all": [KURTKI, APP_USERS]}, 2: {"any": [{"type": "segment", "segment_id": 1}, EMAIL_CONSENT]},
                3: None, 4: {"type": "segment", "segment_id": 4}}
    assert definition_changes({"type": "segment", "segment_id": 2}, segments) == {
        CHANGED_TAGS, changed_events("custom"), CHANGED_CONSENT}
    # a segment that is gone, or a cycle, matches nobody: nothing moves a contact
    assert definition_changes({"type": "segment", "segment_id": 3}, segments) == frozenset()
    assert definition_changes({"type": "segment", "segment_id": 4}, segments) == frozenset()
    # a segment not read, or a leaf this does not know: anything may
    assert definition_changes({"type": "segment", "segment_id": 99}, segments) is None
    assert definition_changes({"all": [KURTKI, {"type": "something_new"}]}, segments) is None


def test_a_change_a_segment_does_not_depend_on_skips_it_for_that_contact():
    # given segments on a tag, on email consent and on a custom event, materialised
    contact = ContactFactory()
    by_tags, by_consent, by_app = (Segment.objects.create(name=name, definition=definition)
                                   for name, definition in (("Kurtki", KURTKI), ("Consent", EMAIL_CONSENT),
                                                            ("App", APP_USERS)))
    for segment in (by_tags, by_consent, by_app):
        segment_refresh(segment.pk)
    # when the contact gains the tag and (without being said) an email consent, and only its
    # tags are said to have changed
    give_tag(contact, "kurtki", 3)
    consent(contact, "email", True)
    segment_members_refresh_for_contacts([contact.pk], changes={contact.pk: {CHANGED_TAGS}})
    # then the tag segment took it in and the consent segment was not re-evaluated for it
    assert members(by_tags) == {contact.pk}
    assert members(by_consent) == set()
    # when its consent is said to have changed too (or anything, None), the consent segment follows
    segment_members_refresh_for_contacts([contact.pk], changes={contact.pk: None})
    assert members(by_consent) == {contact.pk}
    assert members(by_app) == set()


def test_the_queue_keeps_what_changed_and_merges_it_per_contact():
    # given one contact queued twice (tags, then consent) and one queued for anything
    first, second = ContactFactory(), ContactFactory()
    segments_mark_dirty([first.pk], {first.pk: [CHANGED_TAGS]})
    segments_mark_dirty([first.pk, second.pk], [CHANGED_CONSENT])
    segments_mark_dirty([second.pk])
    assert sorted(SegmentDirtyContact.objects.values_list("contact_id", "changes"), key=str) == sorted([
        (first.pk, "tags"), (first.pk, "consent"), (second.pk, "consent"), (second.pk, None)], key=str)
    # when drained: the refresh hears the union per contact, and "anything" wins
    with mock.patch("segments.dirty.segment_members_refresh_for_contacts") as refresh:
        segments_dirty_refresh()
    heard: dict = {}
    for call in refresh.call_args_list:  # one call per partition holding queued contacts
        assert call.args == (sorted(call.kwargs["changes"]),)
        heard.update(call.kwargs["changes"])
    assert heard == {first.pk: {CHANGED_TAGS, CHANGED_CONSENT}, second.pk: None}


def test_after_events_of_every_kind_memberships_are_what_the_evaluator_says():
    # given segments of every shape the skipping decides on, one nested, one for sending
    contacts = [ContactFactory(email=f"c{number}@example.com", country="PL" if number % 2 else "DE")
                for number in range(8)]
    make_rule(actions=[{"type": "add_tag", "tag": "{category}", "score": 1}])
    make_rule(event_type="purchase", actions=[{"type": "add_score", "points": 30}])
    definitions = [
        KURTKI, EMAIL_CONSENT, APP_USERS,
        {"type": "purchase_total", "op": "gte", "value": 200},
        {"type": "score", "op": "gte", "value": 30},
        {"all": [{"type": "attribute", "name": "country", "op": "eq", "value": "PL"},
                 {"type": "event_count", "event_type": "add_to_cart", "op": "gte", "value": 1}]},
        {"not": {"type": "inactive_days", "value": 7}},
    ]
    segments = [Segment.objects.create(name=f"s{number}", definition=definition)
                for number, definition in enumerate(definitions)]
    segments.append(Segment.objects.create(name="nested", definition={
        "any": [{"type": "segment", "segment_id": segments[0].pk}, {"type": "segment", "segment_id": segments[2].pk}]}))
    segments.append(Segment.objects.create(name="for sending", definition=KURTKI, for_sending=True))
    for segment in segments:
        segment_refresh(segment.pk)
    # when events of many kinds arrive for some contacts, and consents change for others
    items = []
    for number, contact in enumerate(contacts[:6]):
        kinds = [("product_view", {"category": "kurtki"})] * (number % 3 + 1)
        if number % 2:
            kinds.append(("purchase", {"value": 150 * number}))
        if number % 3 == 0:
            kinds.append(("custom", {"name": "app_open"}))
        if number == 4:
            kinds.append(("add_to_cart", {"category": "buty"}))
        items += [event(email=contact.email, type=kind, **properties) for kind, properties in kinds]
    events_ingest(items)
    process_all()
    with connection.cursor() as cursor:
        consents_record(cursor, contact_ids=[contact.pk for contact in contacts[3:]], channels=["email"] * 5,
                        granted=[True] * 5, source="test")
    segments_dirty_refresh()
    # then every segment's stored members are those the evaluator finds
    assert Consent.objects.filter(granted=True).count() == 5
    world = World()
    for segment in segments:
        definition = {"all": [segment.definition, EMAIL_CONSENT]} if segment.for_sending else segment.definition
        assert members(segment) == world.members(definition), segment.name
    assert any(members(segment) for segment in segments[:4])


def test_a_contact_new_to_the_segments_is_evaluated_against_all_of_them():
    # given segments its first events cannot move: no email consent, not from Poland
    no_consent = Segment.objects.create(name="No consent", definition={"not": EMAIL_CONSENT})
    abroad = Segment.objects.create(name="Abroad", definition={
        "not": {"type": "attribute", "name": "country", "op": "eq", "value": "PL"}})
    for segment in (no_consent, abroad):
        segment_refresh(segment.pk)
    # when an event creates a contact and the engine and the drain run
    events_ingest([event(email="new@example.com", type="page_view", url="/")])
    process_all()
    segments_dirty_refresh()
    # then it is a member of both (its first batch alone would have named only what events move)
    new = Contact.objects.get(email="new@example.com")
    assert members(no_consent) == members(abroad) == {new.pk}


def test_contacts_written_by_the_api_or_an_import_follow_into_their_segments():
    # given segments on a country and on a tag
    polish = Segment.objects.create(name="PL", definition={"type": "attribute", "name": "country", "op": "eq",
                                                           "value": "PL"})
    by_tags = Segment.objects.create(name="Kurtki", definition=KURTKI)
    for segment in (polish, by_tags):
        segment_refresh(segment.pk)
    existing = ContactFactory(email="old@example.com", country="DE")
    # when an upsert moves one contact to Poland and creates another there
    contacts_upsert([{"email": "old@example.com", "country": "PL"}, {"email": "pl@example.com", "country": "PL"}],
                    source="api")
    # and an import gives a third its tag scores
    chunk = ImportChunk(last_row=2, rows=1, valid=[ParsedRow(2, {"email": "tagged@example.com", "consents": {}},
                                                              [("kurtki", 3)])], errors=[], error_rows=0)
    contacts_import_write(chunk)
    segments_dirty_refresh()
    # then each is where the drain put it
    assert members(polish) == {existing.pk, Contact.objects.get(email="pl@example.com").pk}
    assert members(by_tags) == {Contact.objects.get(email="tagged@example.com").pk}


def test_an_upsert_announces_the_contacts_it_created_or_changed_and_no_other():
    # given two stored contacts
    same, moved = ContactFactory(email="same@example.com", country="PL"), ContactFactory(email="moved@example.com",
                                                                                         country="DE")
    SegmentDirtyContact.objects.all().delete()
    # when an upsert names one unchanged, changes the other's country and creates a third
    contacts_upsert([{"email": "same@example.com", "country": "PL"}, {"email": "moved@example.com", "country": "PL"},
                     {"email": "new@example.com"}], source="api")
    # then the changed one is queued for its fields, the new one for anything, the unchanged not at all
    new = Contact.objects.get(email="new@example.com")
    assert sorted(SegmentDirtyContact.objects.values_list("contact_id", "changes"), key=str) == sorted(
        [(moved.pk, CHANGED_FIELDS), (new.pk, None)], key=str)
    assert same.pk not in set(SegmentDirtyContact.objects.values_list("contact_id", flat=True))


def test_a_bulk_tag_re_evaluates_only_the_segments_tags_can_move():
    # given a tag segment and a consent segment, materialised, and a contact that (without being
    # said) was given an email consent
    contact = ContactFactory()
    by_tags = Segment.objects.create(name="Kurtki", definition=KURTKI)
    by_consent = Segment.objects.create(name="Consent", definition=EMAIL_CONSENT)
    for segment in (by_tags, by_consent):
        segment_refresh(segment.pk)
    consent(contact, "email", True)
    # when a bulk action tags it (memberships in the same transaction)
    bulk_apply(Contact.objects.filter(pk=contact.pk), {"action": "add_tag", "tag": "kurtki", "score": 3})
    # then the tag segment took it in; the consent segment was not re-evaluated
    assert members(by_tags) == {contact.pk}
    assert members(by_consent) == set()
