"""Materialised membership: the worker's full refresh (versioned, size history) and the
incremental refresh the rules engine calls for the contacts a batch changed."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection

from contacts.models import ContactTag
from core.models import Job
from segments.dirty import segments_dirty_refresh
from segments.models import Segment, SegmentDirtyContact, SegmentMember, SegmentSize
from segments.services import segment_members_refresh_for_contacts, segment_refresh, segments_refresh_due
from segments.tasks import segment_refresh_task
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import add_event, consent, make_segment

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


def members(segment: Segment) -> set[str]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("contact__email", flat=True))


def test_full_refresh_writes_members_count_and_size():
    # given two matching contacts and one not
    for email, score in (("a@example.com", 3), ("b@example.com", 7), ("c@example.com", 1)):
        give_tag(ContactFactory(email=email), "kurtki", score)
    segment = make_segment(KURTKI_3)
    # when
    count = segment_refresh(segment.pk)
    # then
    segment.refresh_from_db()
    assert count == segment.count == 2
    assert members(segment) == {"a@example.com", "b@example.com"}
    assert segment.refreshed_at is not None and segment.version == 1
    assert list(SegmentSize.objects.filter(segment=segment).values_list("count", flat=True)) == [2]


def test_full_refresh_only_writes_the_differences():
    # given a refreshed segment, then one contact leaves and one joins
    stays = ContactFactory(email="stays@example.com")
    leaves = ContactFactory(email="leaves@example.com")
    joins = ContactFactory(email="joins@example.com")
    give_tag(stays, "kurtki", 5)
    leaving_tag = give_tag(leaves, "kurtki", 5)
    segment = make_segment(KURTKI_3)
    segment_refresh(segment.pk)
    stayed_since = SegmentMember.objects.get(segment=segment, contact=stays).added_at
    leaving_tag.delete()
    give_tag(joins, "kurtki", 9)
    # when
    segment_refresh(segment.pk)
    # then the stayer's row is untouched, the others moved
    assert members(segment) == {"stays@example.com", "joins@example.com"}
    assert SegmentMember.objects.get(segment=segment, contact=stays).added_at == stayed_since
    assert SegmentSize.objects.filter(segment=segment).count() == 2
    assert Segment.objects.get(pk=segment.pk).version == 2


def test_for_sending_segments_need_email_consent():
    # given two contacts with the tag, one with email consent
    with_consent = ContactFactory(email="yes@example.com")
    give_tag(with_consent, "kurtki", 5)
    consent(with_consent, "email", True)
    give_tag(ContactFactory(email="no@example.com"), "kurtki", 5)
    segment = make_segment(KURTKI_3, for_sending=True)
    # when
    segment_refresh(segment.pk)
    # then
    assert members(segment) == {"yes@example.com"}


def test_incremental_refresh_moves_only_the_given_contacts():
    # given a refreshed segment
    anna = ContactFactory(email="anna@example.com")
    bob = ContactFactory(email="bob@example.com")
    give_tag(anna, "kurtki", 1)
    segment = make_segment(KURTKI_3)
    other = make_segment({"type": "has_tag", "tag": "kurtki"})
    segment_refresh(segment.pk)
    segment_refresh(other.pk)
    assert members(segment) == set()
    # when anna's tag grows and bob gets one, but only anna is reported as changed
    anna.contact_tags.update(score=4)
    give_tag(bob, "kurtki", 8)
    segment_members_refresh_for_contacts([anna.pk])
    # then anna joined, bob waits for his own batch (or the schedule); counts follow
    assert members(segment) == {"anna@example.com"}
    assert Segment.objects.get(pk=segment.pk).count == 1
    assert members(other) == {"anna@example.com"}
    # and when bob is reported, and anna's tag is gone again
    anna.contact_tags.all().delete()
    segment_members_refresh_for_contacts([anna.pk, bob.pk])
    assert members(segment) == {"bob@example.com"}
    assert members(other) == {"bob@example.com"}
    assert Segment.objects.get(pk=segment.pk).count == 1


def test_incremental_refresh_uses_few_queries_for_many_segments(django_assert_max_num_queries):
    # given 12 saved segments of different shapes and 30 changed contacts
    contacts = [ContactFactory() for _ in range(30)]
    for index, contact in enumerate(contacts):
        give_tag(contact, "kurtki", index % 6)
        add_event(contact, "product_view", days_ago=index % 40, category="Kurtki")
    definitions = [
        KURTKI_3,
        {"type": "event_count", "event_type": "product_view", "within_days": 30, "op": "gte", "value": 1},
        {"type": "event_count", "event_type": "product_view", "op": "lt", "value": 2,
         "where": [{"property": "category", "op": "eq", "value": "kurtki"}]},
        {"not": {"type": "inactive_days", "value": 10}},
    ] * 3
    for definition in definitions:
        make_segment(definition)
    # when / then: a constant number of statements, whatever the number of segments
    with django_assert_max_num_queries(12):
        segment_members_refresh_for_contacts([contact.pk for contact in contacts])
    assert SegmentMember.objects.exists()


def test_incremental_refresh_binds_the_contact_ids_once_per_use_not_once_per_id():
    # given segments whose definitions restrict several subqueries to the batch's contacts
    for definition in (KURTKI_3, {"all": [KURTKI_3, {"type": "consent", "channel": "email", "value": True}]},
                       {"type": "event_count", "event_type": "product_view", "op": "gte", "value": 1}):
        make_segment(definition)
    few = [ContactFactory() for _ in range(3)]
    for contact in few:
        give_tag(contact, "kurtki", 4)
    # (ids that name nobody cost the statement the same as contacts)
    many = [contact.pk for contact in few] + list(range(10**9, 10**9 + 3000))

    def parameters(contact_ids: list[int]) -> int:
        """The parameters of the largest statement the refresh sends."""
        sent: list[int] = []

        def record(execute, sql, params, many, context):
            sent.append(len(params or ()))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            segment_members_refresh_for_contacts(contact_ids)
        return max(sent)

    # when the same segments are refreshed for 3 contacts and for 3,003 (the same statement's
    # shape for both: per-contact aggregates): the same number of parameters (the ids go as
    # arrays; one placeholder per id made Python compose and PostgreSQL parse a statement that
    # grew with every id, for every segment and leaf)
    with mock.patch("segments.compiler.PER_CONTACT_AGGREGATES_BELOW", 10**6):
        assert parameters(many) == parameters([contact.pk for contact in few])
    assert members(Segment.objects.get(definition=KURTKI_3)) == {contact.email for contact in few}


def test_incremental_refresh_never_breaks_the_callers_transaction():
    # given a segment whose stored definition is broken (written around validation)
    contact = ContactFactory()
    make_segment({"type": "tag_score", "tag": "x", "op": "between", "value": "nonsense"})
    good = make_segment({"type": "has_tag", "tag": "kurtki"})
    give_tag(contact, "kurtki", 1)
    # when
    segment_members_refresh_for_contacts([contact.pk])
    # then the good one still refreshed and the connection is usable
    assert members(good) == {contact.email}


def test_refresh_now_job_records_progress_and_result(marketer):
    # given
    give_tag(ContactFactory(), "kurtki", 4)
    segment = make_segment(KURTKI_3)
    job = Job.objects.create(kind="segment_refresh", params={"segment_id": segment.pk})
    # when the task body runs (the worker does this)
    segment_refresh_task(job.pk)
    # then
    job.refresh_from_db()
    assert job.status == Job.Status.DONE
    assert job.result == {"members": 1}
    assert job.progress == 1.0


def test_scheduled_refresh_picks_due_segments_only():
    # given one fresh and one never refreshed segment
    fresh = make_segment(KURTKI_3, name="fresh")
    segment_refresh(fresh.pk)
    stale = make_segment(KURTKI_3, name="stale")
    # when
    refreshed = segments_refresh_due()
    # then
    assert refreshed == [stale.pk]


@pytest.mark.parametrize("where", ["card", "api"])
def test_a_consent_withdrawn_takes_the_contact_out_of_segments_for_sending(where, marketer_client, admin_api):
    # given a contact with email consent in a refreshed segment "for sending"
    contact = ContactFactory(email="leaving@example.com")
    give_tag(contact, "kurtki", 5)
    consent(contact, "email", True)
    segment = make_segment(KURTKI_3, for_sending=True)
    segment_refresh(segment.pk)
    assert members(segment) == {"leaving@example.com"}
    # when the consent is withdrawn on the contact's card, or through the API
    if where == "card":
        response = marketer_client.post(f"/contacts/{contact.pk}/consents/", {"channel": "email", "granted": "no"})
    else:
        response = admin_api.post("/api/v1/contacts", json={"email": contact.email, "consents": {"email": False}})
    assert response.status_code in (200, 201)
    # then its memberships are queued for the worker's drain (the API's upsert queues the contact
    # too), which takes it out (no full refresh)
    assert set(SegmentDirtyContact.objects.values_list("contact_id", flat=True)) == {contact.pk}
    segments_dirty_refresh()
    assert members(segment) == set()


def _nested_loops_outside_the_definition(plan: dict) -> list[str]:
    """The nested-loop joins of a plan, except inside the definition's own CTE (``target``)."""
    if plan.get("Subplan Name") == "CTE target":
        return []
    found = [plan.get("Subplan Name") or plan["Node Type"]] if plan["Node Type"] == "Nested Loop" else []
    for child in plan.get("Plans", []):
        found += _nested_loops_outside_the_definition(child)
    return found


def test_a_refresh_plans_no_join_on_the_members_whatever_their_statistics_say():
    # given a segment of 200 contacts refreshed once, after the membership table's statistics were
    # taken while it was empty (a new install's autovacuum, or ANALYZE before the first refresh)
    for index in range(200):
        give_tag(ContactFactory(email=f"m{index}@example.com"), "kurtki", 5)
    segment = make_segment(KURTKI_3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE segments_segmentmember")
    segment_refresh(segment.pk)
    # when it is refreshed again (100 leave, 100 stay), the statement captured and explained
    ContactTag.objects.filter(contact__email__in=[f"m{i}@example.com" for i in range(100)]).delete()
    statements: list = []

    def capture(execute, sql, params, many, context):
        if "segments_segmentmember" in sql and "target" in sql:
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        assert segment_refresh(segment.pk) == 100
    # then the members moved, and the statement's plan has no nested loop over the members (with
    # such statistics the anti-joins became nested loops rescanning them for every contact)
    assert members(segment) == {f"m{i}@example.com" for i in range(100, 200)}
    [(sql, params)] = statements
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]
    assert _nested_loops_outside_the_definition(plan) == []
