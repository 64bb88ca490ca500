"""Horizontal access on the Jobs pages: "Run again" needs a role that may start the job's kind —
a Marketer may open an Admin-only loyalty recompute but not run it again."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from core.jobs import JOB_TASKS
from core.models import Job
from core.roles import ADMIN, MARKETER
from tests.loyalty.factories import make_program

pytestmark = pytest.mark.django_db


@pytest.fixture
def recompute_job(admin):
    program = make_program()
    return Job.objects.create(kind="loyalty_recompute", title=f"Recompute tiers of {program.name}", status="done",
                              params={"program_id": program.pk}, created_by=admin)


def test_every_job_kind_declares_who_may_start_it():
    # given every registered kind of job
    roles = {kind: task.job_roles for kind, task in JOB_TASKS.items()}
    # then each names its roles, and the loyalty recompute is Admin-only like its page
    assert all(roles.values()), roles
    assert roles["loyalty_recompute"] == (ADMIN,)
    assert roles["contacts_bulk"] == (MARKETER,)


def test_a_marketer_cannot_run_an_admin_only_job_again(marketer_client, recompute_job):
    # when a Marketer posts "Run again" on an Admin-only loyalty recompute
    with mock.patch("loyalty.tasks.program_recompute_task.delay") as delay:
        response = marketer_client.post(reverse("jobs:rerun", args=[recompute_job.pk]))
    # then the server refuses, and no job was started
    assert response.status_code == 403
    assert Job.objects.count() == 1
    delay.assert_not_called()


def test_an_admin_runs_it_again(admin_client, recompute_job, django_capture_on_commit_callbacks):
    # when an Admin does the same
    with mock.patch("loyalty.tasks.program_recompute_task.delay") as delay, \
            django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("jobs:rerun", args=[recompute_job.pk]))
    # then a new job of the same kind and parameters is queued
    new_job = Job.objects.exclude(pk=recompute_job.pk).get()
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[new_job.pk])
    assert (new_job.kind, new_job.params, new_job.status) == ("loyalty_recompute", recompute_job.params, "queued")
    delay.assert_called_once_with(new_job.pk)


def test_the_job_page_offers_run_again_only_to_those_who_may(marketer_client, admin_client, recompute_job):
    # when a Marketer and an Admin open the finished recompute
    url = reverse("jobs:detail", args=[recompute_job.pk])
    as_marketer = marketer_client.get(url).content.decode()
    as_admin = admin_client.get(url).content.decode()
    # then only the Admin sees the button
    assert 'data-testid="job-rerun"' not in as_marketer and "Only Admin can run this again." in as_marketer
    assert 'data-testid="job-rerun"' in as_admin


def test_a_marketer_still_runs_a_marketer_job_again(marketer_client, marketer):
    # given a finished bulk action a Marketer started
    job = Job.objects.create(kind="contacts_bulk", title="Add Promo (+1) to all contacts", status="done",
                             params={"action": "add_tag", "tag": "Promo", "score": 1, "query": ""}, created_by=marketer)
    # when another Marketer runs it again
    with mock.patch("contacts.tasks.contacts_bulk_task.delay"):
        response = marketer_client.post(reverse("jobs:rerun", args=[job.pk]))
    # then it is queued again
    assert response.status_code == 302
    assert Job.objects.filter(kind="contacts_bulk", status="queued").count() == 1


def test_sales_cannot_run_any_job_again(sales_client, marketer):
    job = Job.objects.create(kind="contacts_bulk", title="t", status="done", params={"action": "add_tag", "tag": "x"},
                             created_by=marketer)
    assert sales_client.post(reverse("jobs:rerun", args=[job.pk])).status_code == 403
    assert Job.objects.count() == 1


# --- "Continue" a failed job from where it stopped -----------------------------------------------
def _failed_half_way(user, kind: str = "contacts_bulk", **fields) -> Job:
    return Job.objects.create(kind=kind, title="Add Promo (+1) to all contacts", status="failed", error="boom",
                              params={"action": "add_tag", "tag": "Promo", "score": 1, "query": ""},
                              created_by=user, total=4, processed=2, chunks_done=2, resume_after=2, **fields)


def test_a_failed_job_continues_from_its_resume_point(marketer_client, marketer, django_capture_on_commit_callbacks):
    # given a bulk job that failed after two committed chunks
    job = _failed_half_way(marketer)
    page = marketer_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'data-testid="job-continue"' in page and "Continue from 2" in page
    # when a Marketer continues it
    with mock.patch("contacts.tasks.contacts_bulk_task.delay") as delay, \
            django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(reverse("jobs:continue", args=[job.pk]))
    # then the same job is queued again with its resume point and counts kept
    job.refresh_from_db()
    assert response.status_code == 302
    assert (job.status, job.error, job.resume_after, job.processed) == ("queued", "", 2, 2)
    delay.assert_called_once_with(job.pk)
    assert Job.objects.count() == 1


def test_only_a_job_that_got_part_of_the_way_can_continue(marketer_client, marketer):
    # given a job that failed before its first chunk, and one that finished
    early = _failed_half_way(marketer)
    Job.objects.filter(pk=early.pk).update(chunks_done=0, resume_after=None, processed=0)
    done = Job.objects.create(kind="contacts_bulk", status="done", chunks_done=3, resume_after=9, created_by=marketer)
    # when a Marketer tries to continue them
    for job in (early, done):
        response = marketer_client.post(reverse("jobs:continue", args=[job.pk]))
        # then nothing changes
        assert response.status_code == 302
    assert dict(Job.objects.values_list("pk", "status")) == {early.pk: "failed", done.pk: "done"}


def test_a_marketer_cannot_continue_an_admin_only_job(marketer_client, admin):
    job = _failed_half_way(admin, kind="loyalty_recompute")
    assert marketer_client.post(reverse("jobs:continue", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == "failed"
