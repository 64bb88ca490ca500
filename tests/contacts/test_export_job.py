"""The contact list's CSV export is a Job: the list's button starts it with the list's filters, the
worker writes the file chunk by chunk (resumably), and only its starter or an admin downloads it
until it expires."""

from __future__ import annotations

import csv
import io
import os
import re
import time
from unittest import mock

import pytest
from django.http import QueryDict
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import core.jobs.files
from contacts.csvio import BOM, contacts_export_rows, csv_lines
from contacts.filters import ContactFilterSet
from contacts.models import Contact
from contacts.tasks import contacts_export_task
from core.jobs import job_resume
from core.jobs.files import job_file_path, job_files_remove_expired
from core.models import Job
from core.roles import ADMIN, MARKETER, SALES
from marketing_hub.celery import app
from marketing_hub.models import UserPreference
from tests.contacts.exports import export_csv, export_download, export_start
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.i18n.catalogues import translated_msgids
from tests.i18n.test_walk import page_problems
from tests.jobs.files import WorkerKilled, killed_after_writes, second_chunk_fails

pytestmark = pytest.mark.django_db


def streamed(queryset) -> bytes:
    """The bytes the in-request export streamed for the same contacts, in id order."""
    return "".join(csv_lines(contacts_export_rows(queryset.order_by("id")))).encode("utf-8")


def run(job: Job) -> Job:
    contacts_export_task.run(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def tricky_contacts():
    """Contacts whose names, phones and tags need the formula guard, quoting and the tags format."""
    jan = ContactFactory(
        email="jan@example.com",
        first_name="Jan;=1+1",
        last_name='O"Brien',
        city="Kraków",
        phone="+48 763 901 750",
        score=7,
    )
    give_tag(jan, "=2+3", 2)
    give_tag(jan, "a;=b", 5)
    give_tag(jan, "kurtki", 3)
    ola = ContactFactory(email="ola@example.com", first_name="@SUM(A1)", city="Gdańsk", score=3)
    give_tag(ola, "kurtki", 1)
    ContactFactory(email="hans@example.de", first_name="-Hans", country="DE", city="Berlin")
    return jan, ola


# --- what the job writes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "tag=kurtki&tag_min=2&country=pl&sort=-score",
        "sort=tag:kurtki",  # the tag's score sort keeps only the contacts with the tag
        "country=DE&sort=created",
    ],
)
def test_the_job_exports_exactly_the_contacts_the_list_filters_match(marketer_client, monkeypatch, query):
    # given contacts in two countries, some of them with kurtki of various scores
    monkeypatch.setattr("contacts.tasks.EXPORT_CHUNK", 3)
    for number in range(12):
        contact = ContactFactory(email=f"c{number:02}@example.com", country="PL" if number % 3 else "DE")
        if number % 2:
            give_tag(contact, "kurtki", number % 4)
    expected = set(
        ContactFilterSet(QueryDict(query), queryset=Contact.objects.all()).qs.values_list("email", flat=True)
    )
    assert 0 < len(expected) < Contact.objects.count()
    # when the list's export runs with the list's parameters
    raw = export_csv(marketer_client, {"query": query})
    # then the file holds exactly the contacts the list shows for them, each once, in id order
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    emails = [row["email"] for row in rows]
    assert set(emails) == expected and len(emails) == len(expected)
    assert emails == list(Contact.objects.filter(email__in=expected).order_by("id").values_list("email", flat=True))


def test_the_file_is_byte_for_byte_the_streamed_export_over_many_chunks(marketer, tricky_contacts, monkeypatch):
    # given chunks of one contact
    monkeypatch.setattr("contacts.tasks.EXPORT_CHUNK", 1)
    job = Job.objects.create(kind="contacts_export", created_by=marketer, params={})
    # when the job runs
    job = run(job)
    # then the file is what the streamed export gave, byte for byte, written in 3 chunks
    raw = job_file_path(job.pk).read_bytes()
    assert raw == streamed(Contact.objects.all())
    assert job.chunks_done == 3 and (job.processed, job.total) == (3, 3)
    # with the BOM, the guard's apostrophes, the quoting, phone numbers as they are and the tags format
    text = raw.decode("utf-8")
    assert text.startswith(BOM + "email,first_name,last_name,phone,")
    assert '"Jan;\'=1+1","O""Brien",+48 763 901 750,' in text
    assert "\"a;'=b\":5;kurtki:3;'=2+3:2" in text.replace('""', '"')
    assert ",'@SUM(A1)," in text and ",'-Hans," in text
    # and the result names the file and counts it
    assert job.status == "done" and job.result["contacts"] == 3
    assert job.result["file"]["bytes"] == len(raw) and job.result["file"]["rows"] == 3
    assert job.result["file"]["content_type"] == "text/csv; charset=utf-8"
    assert not job_file_path(job.pk, partial=True).exists()


def test_an_export_of_nobody_is_the_header_alone(marketer):
    job = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={"query": "country=XX"}))
    assert job.status == "done" and job.result["contacts"] == 0
    assert job_file_path(job.pk).read_bytes() == streamed(Contact.objects.none())


def test_the_selection_exports_the_ticked_contacts(marketer_client, tricky_contacts):
    # given two of three contacts ticked
    jan, ola = tricky_contacts
    # when "Export selected" is posted with the bulk form (its other fields and the filters included)
    raw = export_csv(marketer_client, {"ids": [str(ola.pk), str(jan.pk)], "query": "country=DE", "action": "add_tag"})
    # then the file holds those two
    assert raw == streamed(Contact.objects.filter(pk__in=[jan.pk, ola.pk]))


# --- resuming -----------------------------------------------------------------------------------
def test_a_worker_killed_after_writing_a_chunk_it_had_not_committed_loses_and_repeats_nothing(
    marketer, tricky_contacts, monkeypatch
):
    # given chunks of one contact, and a worker that dies right after writing the second chunk,
    # before its commit
    monkeypatch.setattr("contacts.tasks.EXPORT_CHUNK", 1)
    job = Job.objects.create(kind="contacts_export", created_by=marketer, params={})
    with killed_after_writes(2) as writes:
        contacts_export_task.run(job.pk)
    # then the job is left running with the first chunk committed: its last id and the file's
    # length then, while the file already holds the second chunk too
    job.refresh_from_db()
    first = Contact.objects.order_by("id").first()
    assert (job.status, job.chunks_done, job.processed) == ("running", 1, 1)
    assert job.resume_after == {"after": first.pk, "bytes": writes[0]}
    partial = job_file_path(job.pk, partial=True)
    assert partial.stat().st_size == writes[1] > writes[0]
    # when the job is delivered again (the sweeper revives it)
    job = run(job)
    # then the file is cut back to the committed length and continues: every contact once
    assert job.status == "done" and job.result["contacts"] == 3
    raw = job_file_path(job.pk).read_bytes()
    assert raw == streamed(Contact.objects.all())
    assert [row[0] for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))][1:] == list(
        Contact.objects.order_by("id").values_list("email", flat=True)
    )


def test_a_failed_export_continues_from_its_last_chunk(marketer, tricky_contacts, monkeypatch):
    # given an export whose second chunk failed (recorded as failed, "Continue" offered)
    monkeypatch.setattr("contacts.tasks.EXPORT_CHUNK", 1)
    job = Job.objects.create(kind="contacts_export", created_by=marketer, params={})
    with second_chunk_fails():
        job = run(job)
    assert (job.status, job.chunks_done) == ("failed", 1)
    # when it is continued
    assert job_resume(job)
    job = run(job)
    # then the file is whole
    assert job.status == "done" and job_file_path(job.pk).read_bytes() == streamed(Contact.objects.all())


def test_a_worker_killed_after_the_rename_finishes_without_touching_the_file(marketer, tricky_contacts):
    # given an export whose worker died after the file got its final name, before the job was marked done
    job = Job.objects.create(kind="contacts_export", created_by=marketer, params={})
    real_finish = core.jobs.files.job_file_finish

    def finish_then_die(*args, **kwargs):
        real_finish(*args, **kwargs)
        raise WorkerKilled

    with mock.patch("contacts.tasks.job_file_finish", finish_then_die), pytest.raises(WorkerKilled):
        contacts_export_task.run(job.pk)
    before = job_file_path(job.pk).read_bytes()
    # and a contact added since
    ContactFactory(email="late@example.com")
    # when the job is delivered again
    job = run(job)
    # then it is done with the file as it was
    assert job.status == "done" and job.result["contacts"] == 3
    assert job_file_path(job.pk).read_bytes() == before and b"late@example.com" not in before


def test_a_resume_whose_partial_file_is_gone_fails_saying_so(marketer, tricky_contacts, monkeypatch):
    # given an export killed after its first chunk, whose partial file was then removed
    monkeypatch.setattr("contacts.tasks.EXPORT_CHUNK", 1)
    job = Job.objects.create(kind="contacts_export", created_by=marketer, params={})
    real_append = core.jobs.files.file_append
    calls = []

    def append_once(path, *, at, data):
        calls.append(at)
        if len(calls) == 2:
            raise WorkerKilled
        return real_append(path, at=at, data=data)

    with mock.patch("core.jobs.files.file_append", append_once), pytest.raises(WorkerKilled):
        contacts_export_task.run(job.pk)
    job_file_path(job.pk, partial=True).unlink()
    # when it resumes
    job = run(job)
    # then it fails and says the file is gone rather than writing a file without its first rows
    assert job.status == "failed" and "JobFileLost" in job.error
    assert not job_file_path(job.pk).exists()


# --- the list's buttons -------------------------------------------------------------------------
def test_the_list_offers_export_as_a_post_form_with_the_current_filters(marketer_client):
    ContactFactory(country="PL")
    page = marketer_client.get(reverse("contacts:list"), {"country": "PL", "page": "1"}).content.decode()
    assert f'<form id="export-form" method="post" action="{reverse("contacts:export")}"' in page
    assert '<input type="hidden" name="query" value="country=PL">' in page
    # and filtering through htmx swaps in a form carrying the new filters (out of band)
    fragment = marketer_client.get(reverse("contacts:list"), {"city": "Gdańsk"}, headers={"HX-Request": "true"})
    form = re.search(r'<form id="export-form"[^>]*>.*?</form>', fragment.content.decode(), re.S)
    assert form and 'hx-swap-oob="true"' in form.group(0)
    assert '<input type="hidden" name="query" value="city=Gda%C5%84sk">' in form.group(0)


def test_export_starts_a_job_with_the_lists_parameters_and_goes_to_its_page(
    marketer_client, marketer, django_capture_on_commit_callbacks
):
    # when the form is posted without htmx
    with (
        mock.patch("contacts.tasks.contacts_export_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = export_start(marketer_client, {"query": "country=PL&sort=-created"})
    # then a job of the marketer's is queued with the list's parameters, enqueued after the commit
    delay.assert_called_once_with(job.pk)
    assert (job.kind, job.status, job.created_by) == ("contacts_export", "queued", marketer)
    assert job.params["query"] == "country=PL&sort=-created"
    assert job.title == "Export all contacts matching the filters to CSV"
    assert job.params["link"]["url"] == "/contacts/?country=PL&sort=-created"


def test_the_job_keeps_the_filters_without_the_empty_fields_the_form_sends(marketer_client):
    # when the form's query holds empty fields and a page number besides the filters
    job = export_start(marketer_client, {"query": "q=&tag=kurtki&tag_min=&city=Gda%C5%84sk&page=3&sort=-score"})
    # then the job keeps the filters only, and its page shows them as people write them
    assert job.params["query"] == "tag=kurtki&city=Gda%C5%84sk&sort=-score"
    page = marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
    assert '<dt>Filters</dt><dd class="mono text-sm">tag=kurtki&amp;city=Gdańsk&amp;sort=-score</dd>' in page


def test_export_through_htmx_shows_the_jobs_progress_above_the_list(marketer_client):
    response = marketer_client.post(reverse("contacts:export"), {"query": ""}, headers={"HX-Request": "true"})
    job = Job.objects.get()
    html = response.content.decode()
    assert response.status_code == 200 and f'id="job-{job.pk}"' in html
    assert f'hx-get="{reverse("jobs:progress", kwargs={"job_id": job.pk})}"' in html
    assert "Export all contacts to CSV" in response["HX-Trigger"]
    assert job.params == {}


def test_the_export_is_a_post_for_marketers_only(marketer_client, sales_client):
    assert marketer_client.get(reverse("contacts:export")).status_code == 405
    assert sales_client.post(reverse("contacts:export"), {"query": ""}).status_code == 403
    assert not Job.objects.exists()


# --- the job's page and the download ------------------------------------------------------------
def test_the_job_page_offers_the_download_with_rows_and_size(marketer_client, marketer, tricky_contacts):
    job = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={}))
    size = filesizeformat(job_file_path(job.pk).stat().st_size)
    for url in (reverse("jobs:detail", kwargs={"job_id": job.pk}), reverse("jobs:progress", kwargs={"job_id": job.pk})):
        html = marketer_client.get(url).content.decode()
        assert f'href="{reverse("jobs:download", kwargs={"job_id": job.pk})}"' in html
        assert "Download CSV" in html and f"3 rows · {size}" in html


def test_only_the_starter_and_admins_download_the_file(
    marketer_client, marketer, admin_client, sales_client, tricky_contacts
):
    # given a finished export the marketer started
    job = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={}))
    url = reverse("jobs:download", kwargs={"job_id": job.pk})
    # then the marketer gets the file, as an attachment named after the time it was asked for
    response = marketer_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    stamp = timezone.localtime(job.created_at).strftime("%Y%m%d-%H%M")
    assert response["Content-Disposition"] == f'attachment; filename="contacts-{stamp}.csv"'
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == streamed(Contact.objects.all())
    # and an admin too
    assert export_download(admin_client, job) == streamed(Contact.objects.all())
    # but another marketer and a sales user get a 404, and the page offers them no link
    other = UserFactory(username="other_marketer", role=MARKETER)
    other_client = Client()
    other_client.force_login(other)
    for client in (other_client, sales_client):
        assert client.get(url).status_code == 404
        page = client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
        assert url not in page and "Only the person who started the job, or an admin, may download its file." in page


def test_a_starter_who_lost_the_marketer_role_no_longer_downloads(client, tricky_contacts):
    starter = UserFactory(username="was_marketer", role=SALES)
    job = run(Job.objects.create(kind="contacts_export", created_by=starter, params={}))
    client.force_login(starter)
    assert client.get(reverse("jobs:download", kwargs={"job_id": job.pk})).status_code == 404
    # while an admin still may
    client.force_login(UserFactory(username="boss", role=ADMIN))
    assert export_download(client, job) == streamed(Contact.objects.all())


def test_a_job_without_a_file_has_no_download(marketer_client, marketer):
    job = Job.objects.create(kind="contacts_bulk", created_by=marketer, status="done", result={"matched": 1})
    assert marketer_client.get(reverse("jobs:download", kwargs={"job_id": job.pk})).status_code == 404
    assert "Download" not in marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()


# --- expiry -------------------------------------------------------------------------------------
def _age(path, days: float) -> None:
    then = time.time() - days * 24 * 3600
    os.utime(path, (then, then))


def test_files_older_than_the_retention_are_removed_and_the_page_says_so(
    marketer_client, marketer, tricky_contacts, settings
):
    # given two finished exports, one written 8 days ago and one yesterday, and a failed one's
    # partial file 8 days old
    settings.MH_EXPORT_RETENTION_DAYS = 7
    old = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={}))
    recent = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={}))
    _age(job_file_path(old.pk), 8)
    _age(job_file_path(recent.pk), 1)
    abandoned = job_file_path(999_999, partial=True)
    abandoned.write_bytes(b"half")
    _age(abandoned, 8)
    # when the hourly cleanup runs
    assert job_files_remove_expired() == 2
    # then the old files are gone, the recent one stays
    assert not job_file_path(old.pk).exists() and not abandoned.exists()
    assert job_file_path(recent.pk).exists()
    # and the old job's page says the file expired and offers no download
    page = marketer_client.get(reverse("jobs:detail", kwargs={"job_id": old.pk})).content.decode()
    assert "The file has expired: files are kept for 7 days." in page
    assert reverse("jobs:download", kwargs={"job_id": old.pk}) not in page
    # and its download link, followed late, goes back to the page with the same words
    response = marketer_client.get(reverse("jobs:download", kwargs={"job_id": old.pk}), follow=True)
    assert response.redirect_chain[-1][0] == reverse("jobs:detail", kwargs={"job_id": old.pk})
    assert "The file has expired; run the job again for a new one." in response.content.decode()


def test_a_file_past_its_retention_is_expired_before_the_cleanup_runs(marketer_client, marketer, tricky_contacts):
    job = run(Job.objects.create(kind="contacts_export", created_by=marketer, params={}))
    _age(job_file_path(job.pk), 7.1)
    assert marketer_client.get(reverse("jobs:download", kwargs={"job_id": job.pk})).status_code == 302


def test_the_cleanup_runs_on_the_beat_schedule():
    assert "core.tasks.job_files_cleanup_task" in {entry["task"] for entry in app.conf.beat_schedule.values()}


def test_the_export_jobs_page_reads_in_polish(marketer, tricky_contacts):
    # given a marketer who reads Polish, and their finished export and an expired one
    UserPreference.objects.create(user=marketer, language="pl")
    done = run(
        Job.objects.create(
            kind="contacts_export",
            created_by=marketer,
            title="Eksport do CSV: wszystkie kontakty",
            params={"query": "country=PL"},
        )
    )
    expired = run(
        Job.objects.create(kind="contacts_export", created_by=marketer, title="Eksport do CSV: wszystkie kontakty")
    )
    job_file_path(expired.pk).unlink()
    client = Client()
    client.force_login(marketer)
    # when they open the jobs' pages
    pages = [client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode() for job in (done, expired)]
    # then the download, its size and the expiry are in Polish, with no English left
    assert "Pobierz CSV" in pages[0] and "2 wiersze · " in pages[0] and "dostępny do " in pages[0]
    assert "<dt>Filtry</dt>" in pages[0]
    assert "Plik wygasł: pliki są przechowywane przez 7 dni." in pages[1]
    assert [problem for html in pages for problem in page_problems(html, translated_msgids())] == []
