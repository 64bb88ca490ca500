"""Bulk actions over "all matching" run as a Job: set-based over the filtered id set."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts.models import ContactTag, TagScoreChange
from contacts.tasks import BULK_CHUNK, contacts_bulk_task
from core.models import Job
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def run_job_body(job: Job) -> Job:
    """The task body, called directly (unit tests never run Celery eagerly)."""
    contacts_bulk_task.run(job.pk)
    job.refresh_from_db()
    return job


def test_all_matching_starts_a_job_that_tags_only_the_filtered_contacts(marketer_client, marketer,
                                                                        django_capture_on_commit_callbacks):
    # given 4 Polish and 2 German contacts
    polish = ContactFactory.create_batch(4, country="PL")
    ContactFactory.create_batch(2, country="DE")
    give_tag(polish[0], "Promo", 5)
    # when a marketer applies "add Promo +2" to all matching country=PL
    from unittest import mock

    with mock.patch("contacts.tasks.contacts_bulk_task.delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(reverse("contacts:bulk"), {
            "action": "add_tag", "tag": "promo", "score": 2, "scope": "all", "query": "country=PL"},
            headers={"HX-Request": "true"})
    job = Job.objects.get()
    delay.assert_called_once_with(job.pk)
    assert response.status_code == 200 and f"bulk-job-{job.pk}" in response.content.decode()
    # and the worker runs it
    job = run_job_body(job)
    # then exactly the Polish contacts got +2, recorded as bulk by the marketer
    assert job.status == "done" and job.result == {"matched": 4, "changed": 4}
    scores = dict(ContactTag.objects.values_list("contact_id", "score"))
    assert scores == {polish[0].pk: 7, **{contact.pk: 2 for contact in polish[1:]}}
    assert set(TagScoreChange.objects.values_list("source", "user_id")) == {("bulk", marketer.pk)}


def test_remove_tag_over_several_chunks(marketer, monkeypatch):
    # given five tagged contacts, and chunks of two contacts
    import contacts.tasks

    monkeypatch.setattr(contacts.tasks, "BULK_CHUNK", 2)
    contacts = ContactFactory.create_batch(5, city="Gdańsk")
    for contact in contacts:
        give_tag(contact, "old", 3)
    job = Job.objects.create(kind="contacts_bulk", params={"action": "remove_tag", "tag": "OLD", "query": "city=gdańsk"},
                             created_by=marketer)
    # when the job runs
    job = run_job_body(job)
    # then every contact lost the tag, in three chunks, the last one's key the resume point
    assert job.result == {"matched": 5, "changed": 5} and job.processed == 5
    assert (job.chunks_done, job.resume_after) == (3, max(contact.pk for contact in contacts))
    assert not ContactTag.objects.exists()
    assert BULK_CHUNK > 2  # the module default is untouched


def test_each_chunk_tells_the_dependent_areas_about_its_contacts(marketer, monkeypatch):
    # given three contacts in Sopot, chunks of two, and a listener for contacts_changed
    from contacts.signals import contacts_changed

    monkeypatch.setattr("contacts.tasks.BULK_CHUNK", 2)
    contacts = sorted(ContactFactory.create_batch(3, city="Sopot"), key=lambda contact: contact.pk)
    ContactFactory(city="Gdynia")
    told: list[list[int]] = []

    def listener(sender, contact_ids, deferred, **kwargs):
        told.append(contact_ids)

    contacts_changed.connect(listener)
    try:
        # when a bulk "add tag" runs over them
        job = Job.objects.create(kind="contacts_bulk", params={"action": "add_tag", "tag": "Promo", "score": 1,
                                                               "query": "city=Sopot"}, created_by=marketer)
        run_job_body(job)
    finally:
        contacts_changed.disconnect(listener)
    # then tiers and memberships heard of each chunk's contacts, in the chunk's transaction
    assert told == [[contacts[0].pk, contacts[1].pk], [contacts[2].pk]]


def test_ticked_contacts_tell_the_dependent_areas_too(marketer_client):
    # given two ticked contacts, and a listener for contacts_changed
    from contacts.signals import contacts_changed

    picked = sorted(ContactFactory.create_batch(2), key=lambda contact: contact.pk)
    told: list[list[int]] = []

    def listener(sender, contact_ids, deferred, **kwargs):
        told.append(contact_ids)

    contacts_changed.connect(listener)
    try:
        # when a marketer adds a tag to the selection
        response = marketer_client.post(reverse("contacts:bulk"), {
            "action": "add_tag", "tag": "vip", "score": 1, "scope": "selected",
            "ids": [str(contact.pk) for contact in picked]}, headers={"HX-Request": "true"})
    finally:
        contacts_changed.disconnect(listener)
    # then the areas above heard of exactly those contacts
    assert response.status_code == 200
    assert [contact.pk for contact in picked] in told
