"""The ledger and the maintained score agree; the recompute is set-based and finds nothing to fix."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact
from leads.models import ScoreChange, ScoreTrend
from leads.scoring import score_add, score_mismatches, score_recompute_all
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_score_add_writes_ledger_and_maintained_score():
    # given two contacts
    first, second = ContactFactory(), ContactFactory()
    # when a batch adds points, one contact twice and a zero delta
    with connection.cursor() as cursor:
        score_add(cursor, contact_ids=[first.pk, second.pk, first.pk, second.pk], deltas=[25, 10, -5, 0], reason="batch")
    # then the maintained score is the sum and zero deltas leave no ledger row
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.score, second.score) == (20, 10)
    assert ScoreChange.objects.filter(contact=first).count() == 2
    assert ScoreChange.objects.filter(contact=second).count() == 1
    assert ScoreTrend.objects.get(contact=first).points_7d == 20


def test_score_add_records_user_and_reason():
    contact = ContactFactory()
    user = UserFactory()
    with connection.cursor() as cursor:
        score_add(cursor, contact_ids=[contact.pk], deltas=[7], user_id=user.pk, reason="manual bonus")
    change = ScoreChange.objects.get(contact=contact)
    assert (change.delta, change.user_id, change.reason) == (7, user.pk, "manual bonus")


def test_score_add_rejects_mismatched_lengths():
    with connection.cursor() as cursor, pytest.raises(ValueError):
        score_add(cursor, contact_ids=[1, 2], deltas=[1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.tuples(st.integers(0, 4), st.integers(-50, 80)), max_size=12), max_size=6))
def test_recompute_equals_maintained(batches):
    # given contacts and any sequence of batches of point changes
    contacts = list(Contact.objects.order_by("id")[:5])
    while len(contacts) < 5:
        contacts.append(ContactFactory())
    with connection.cursor() as cursor:
        for batch in batches:
            score_add(cursor, contact_ids=[contacts[i].pk for i, _ in batch], deltas=[d for _, d in batch])
        # when everything is recomputed from the ledger
        corrected = score_recompute_all(cursor)
        # then nothing needed correcting
        assert corrected == 0
        assert score_mismatches(cursor) == []


def test_recompute_repairs_a_drifted_score():
    # given a maintained score that was tampered with behind the ledger's back
    contact = ContactFactory()
    untouched = ContactFactory()
    with connection.cursor() as cursor:
        score_add(cursor, contact_ids=[contact.pk], deltas=[30])
    Contact.objects.filter(pk=contact.pk).update(score=999)
    Contact.objects.filter(pk=untouched.pk).update(score=5)
    # when recomputed
    with connection.cursor() as cursor:
        corrected = score_recompute_all(cursor)
    # then exactly the two wrong rows were rewritten
    assert corrected == 2
    contact.refresh_from_db()
    untouched.refresh_from_db()
    assert (contact.score, untouched.score) == (30, 0)
