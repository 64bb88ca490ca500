"""A tag score set to a typed value: on the card's chip, in bulk on a selection and on all
matching contacts; set-based and recorded in the score history as the difference."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.db import connection
from django.urls import reverse

from contacts.models import Contact, ContactTag, TagScoreChange
from contacts.scoring import tag_scores_set_selected
from contacts.tasks import contacts_bulk_task
from core.models import Job
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def toast_message(response) -> str:
    return json.loads(response["HX-Trigger"])["toast"]["message"]


def scores(tag_name: str = "kurtki") -> dict[int, int]:
    return dict(ContactTag.objects.filter(tag__key=tag_name).values_list("contact_id", "score"))


def history(contact: Contact) -> list[tuple[int, int, str]]:
    return list(TagScoreChange.objects.filter(contact=contact).order_by("id").values_list("delta", "score_after", "source"))


def test_set_selected_sets_adds_removes_and_records_only_changes():
    # given kurtki 3 on one contact, 12 on another, none on a third
    at_three, at_twelve, without = ContactFactory.create_batch(3)
    tag_id = give_tag(at_three, "kurtki", 3).tag_id
    give_tag(at_twelve, "kurtki", 12)
    TagScoreChange.objects.all().delete()
    ids = [at_three.pk, at_twelve.pk, without.pk]
    # when all three are set to 12 in one statement
    with connection.cursor() as cursor:
        changed = tag_scores_set_selected(cursor, contacts_sql="SELECT unnest(%s::bigint[])", contacts_params=[ids],
                                          tag_id=tag_id, score=12, source="bulk")
    # then the two that were not at 12 changed, each with one history row of the difference
    assert changed == 2
    assert scores() == {at_three.pk: 12, at_twelve.pk: 12, without.pk: 12}
    assert history(at_three) == [(9, 12, "bulk")]
    assert history(without) == [(12, 12, "bulk")]
    assert history(at_twelve) == []
    # and setting 0 removes the tag, recorded as a removal (score_after 0)
    with connection.cursor() as cursor:
        removed = tag_scores_set_selected(cursor, contacts_sql="SELECT %s::bigint", contacts_params=[at_three.pk],
                                          tag_id=tag_id, score=0, source="manual")
    assert removed == 1 and at_three.pk not in scores()
    assert history(at_three)[-1] == (-12, 0, "manual")


def test_marketer_types_a_score_on_the_card(marketer_client, marketer):
    # given kurtki at 3
    contact = ContactFactory()
    tag_id = give_tag(contact, "kurtki", 3).tag_id
    TagScoreChange.objects.all().delete()
    # when the marketer types 12 into the chip's score
    response = marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, tag_id]), {"score": "12"},
                                    headers={"HX-Request": "true"})
    # then one round trip sets it, the chips show it, and the history says +9 by the marketer
    assert response.status_code == 200
    assert scores() == {contact.pk: 12}
    assert "kurtki: set to 12." in toast_message(response)
    assert list(TagScoreChange.objects.values_list("delta", "score_after", "source", "user_id")) == [
        (9, 12, "manual", marketer.pk)]


@pytest.mark.parametrize("bad", ["-1", "abc", "1000001", "2.5"])
def test_card_refuses_a_bad_typed_score_with_a_message(marketer_client, bad):
    contact = ContactFactory()
    tag_id = give_tag(contact, "kurtki", 3).tag_id
    response = marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, tag_id]), {"score": bad},
                                    headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Score must be a whole number from 0" in toast_message(response)
    assert scores() == {contact.pk: 3}


def test_sales_cannot_set_a_score(sales_client):
    contact = ContactFactory()
    tag_id = give_tag(contact, "kurtki", 3).tag_id
    response = sales_client.post(reverse("contacts:card_tag_change", args=[contact.pk, tag_id]), {"score": "9"})
    assert response.status_code == 403
    assert scores() == {contact.pk: 3}


def test_bulk_set_on_a_selection(marketer_client):
    first, second, untouched = ContactFactory.create_batch(3)
    give_tag(first, "kurtki", 3)
    give_tag(untouched, "kurtki", 1)
    response = marketer_client.post(reverse("contacts:bulk"), {
        "action": "set_tag_score", "tag": "Kurtki", "score": 10, "scope": "selected", "ids": [first.pk, second.pk]},
        headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Set Kurtki to 10 on 2 selected contacts — 2 changed." in toast_message(response)
    assert scores() == {first.pk: 10, second.pk: 10, untouched.pk: 1}


def test_bulk_set_needs_a_score(marketer_client):
    contact = ContactFactory()
    response = marketer_client.post(reverse("contacts:bulk"), {
        "action": "set_tag_score", "tag": "kurtki", "score": "", "scope": "selected", "ids": [contact.pk]})
    assert response.status_code == 204
    assert "0 or more" in toast_message(response)
    assert not ContactTag.objects.exists()


def test_bulk_set_on_all_matching_runs_as_a_job(marketer_client, marketer, django_capture_on_commit_callbacks):
    polish = ContactFactory.create_batch(3, country="PL")
    ContactFactory(country="DE")
    give_tag(polish[0], "kurtki", 40)
    with mock.patch("contacts.tasks.contacts_bulk_task.delay"), django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(reverse("contacts:bulk"), {
            "action": "set_tag_score", "tag": "kurtki", "score": 5, "scope": "all", "query": "country=PL"},
            headers={"HX-Request": "true"})
    job = Job.objects.get()
    contacts_bulk_task.run(job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.result == {"matched": 3, "changed": 3}
    assert scores() == {contact.pk: 5 for contact in polish}
    assert TagScoreChange.objects.get(contact=polish[0], source="bulk").delta == -35
