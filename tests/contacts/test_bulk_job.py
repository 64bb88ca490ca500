"""Bulk actions over "all matching" run as a Job: set-based over the filtered id set."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts.models import ContactTag, TagScoreChange
from contacts.tasks import ID_RANGE, contacts_bulk_task
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


def test_remove_tag_over_several_id_ranges(marketer, monkeypatch):
    import contacts.tasks

    monkeypatch.setattr(contacts.tasks, "ID_RANGE", 2)
    contacts = ContactFactory.create_batch(5, city="Gdańsk")
    for contact in contacts:
        give_tag(contact, "old", 3)
    job = Job.objects.create(kind="contacts_bulk", params={"action": "remove_tag", "tag": "OLD", "query": "city=gdańsk"},
                             created_by=marketer)
    job = run_job_body(job)
    assert job.result == {"matched": 5, "changed": 5} and job.processed == 5
    assert not ContactTag.objects.exists()
    assert ID_RANGE > 2  # the module default is untouched
