"""The tag-score primitive: adding, aggregating, removing at ≤ 0, history with score_after."""

from __future__ import annotations

import pytest
from django.db import connection

from contacts.models import ContactTag, Tag, TagScoreChange
from contacts.scoring import tag_remove, tag_scores_add, tags_ensure
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def scores_of(contact) -> dict[str, int]:
    return dict(ContactTag.objects.filter(contact=contact).values_list("tag__name", "score"))


def test_tags_ensure_creates_missing_tags_keeping_the_first_spelling():
    # given a tag that exists in one spelling
    Tag.objects.create(name="Kurtki", key="kurtki")
    # when names are ensured in other spellings and a new one twice
    with connection.cursor() as cursor:
        ids = tags_ensure(cursor, ["KURTKI", "  Nowa   Kolekcja ", "nowa kolekcja", ""])
    # then every name maps to its tag, matched case-insensitively, the new one spelled as first given
    kurtki = Tag.objects.get(key="kurtki")
    nowa = Tag.objects.get(key="nowa kolekcja")
    assert ids == {"KURTKI": kurtki.pk, "  Nowa   Kolekcja ": nowa.pk, "nowa kolekcja": nowa.pk}
    assert kurtki.name == "Kurtki"
    assert nowa.name == "Nowa Kolekcja"
    assert Tag.objects.count() == 2


def test_adding_a_tag_twice_adds_up_and_records_each_change():
    # given a contact and a tag
    contact = ContactFactory()
    with connection.cursor() as cursor:
        tag_id = tags_ensure(cursor, ["kurtki"])["kurtki"]
        # when the same pair is changed three times in one call and once more in another
        touched = tag_scores_add(cursor, contact_ids=[contact.pk] * 3, tag_ids=[tag_id] * 3, deltas=[1, 4, 2],
                                 source="rule", rule_ids=[7, 8, None], event_pks=[100, 101, 102])
        tag_scores_add(cursor, contact_ids=[contact.pk], tag_ids=[tag_id], deltas=[3], source="manual")
    # then the score is the sum and the history has one row per change with its running score
    assert touched == [contact.pk]
    assert scores_of(contact) == {"kurtki": 10}
    history = list(TagScoreChange.objects.filter(contact=contact).order_by("id").values_list(
        "delta", "score_after", "source", "rule_id", "event_pk"))
    assert history == [(1, 1, "rule", 7, 100), (4, 5, "rule", 8, 101), (2, 7, "rule", None, 102),
                       (3, 10, "manual", None, None)]


def test_a_result_at_or_below_zero_removes_the_tag_and_records_the_removal():
    # given a contact with kurtki 3 and sukienki 1
    contact = ContactFactory()
    kurtki = give_tag(contact, "kurtki", 3).tag
    sukienki = give_tag(contact, "sukienki", 1).tag
    # when kurtki loses 5 and sukienki loses 1
    with connection.cursor() as cursor:
        tag_scores_add(cursor, contact_ids=[contact.pk, contact.pk], tag_ids=[kurtki.pk, sukienki.pk],
                       deltas=[-5, -1], source="manual")
    # then both are gone and each change records score_after 0
    assert scores_of(contact) == {}
    assert sorted(TagScoreChange.objects.filter(contact=contact).values_list("delta", "score_after")) == [
        (-5, 0), (-1, 0)]


def test_a_negative_score_for_a_tag_the_contact_lacks_leaves_nothing():
    # given a contact without the tag
    contact = ContactFactory()
    with connection.cursor() as cursor:
        tag_id = tags_ensure(cursor, ["promo"])["promo"]
        # when -2 is added
        tag_scores_add(cursor, contact_ids=[contact.pk], tag_ids=[tag_id], deltas=[-2], source="manual")
    # then the contact still has no tag
    assert scores_of(contact) == {}


def test_many_contacts_in_one_call():
    # given three contacts, one of which already has the tag
    first, second, third = ContactFactory.create_batch(3)
    give_tag(second, "vip", 2)
    tag_id = Tag.objects.get(key="vip").pk
    # when one call changes all three
    with connection.cursor() as cursor:
        touched = tag_scores_add(cursor, contact_ids=[third.pk, first.pk, second.pk], tag_ids=[tag_id] * 3,
                                 deltas=[1, 5, 1], source="import")
    # then each gets its own score
    assert touched == sorted([first.pk, second.pk, third.pk])
    assert (scores_of(first), scores_of(second), scores_of(third)) == ({"vip": 5}, {"vip": 3}, {"vip": 1})


def test_tag_remove_records_minus_the_old_score():
    # given a contact with a tag of score 4
    contact = ContactFactory()
    tag = give_tag(contact, "kurtki", 4).tag
    # when it is removed, and removed again
    with connection.cursor() as cursor:
        first = tag_remove(cursor, contact_ids=[contact.pk], tag_ids=[tag.pk], source="manual")
        second = tag_remove(cursor, contact_ids=[contact.pk], tag_ids=[tag.pk], source="manual")
    # then the first call removed it and recorded -4 → 0; the second found nothing
    assert (first, second) == ([contact.pk], [])
    assert list(TagScoreChange.objects.values_list("delta", "score_after")) == [(-4, 0)]


def test_parallel_arrays_must_have_equal_lengths():
    with connection.cursor() as cursor, pytest.raises(ValueError):
        tag_scores_add(cursor, contact_ids=[1, 2], tag_ids=[1], deltas=[1, 1], source="manual")


def test_contact_add_tag_and_remove_tag_on_the_model(marketer):
    # given a contact
    contact = ContactFactory()
    # when a marketer adds KURTKI twice and then −5
    assert contact.add_tag("KURTKI", user=marketer) == 1
    assert contact.add_tag("kurtki", 2, user=marketer) == 3
    assert contact.add_tag("Kurtki", -5, user=marketer) == 0
    # then the tag is gone, and the history names the marketer
    assert scores_of(contact) == {}
    assert set(TagScoreChange.objects.values_list("user_id", flat=True)) == {marketer.pk}
    assert contact.remove_tag("KURTKI") is False
