"""A segment's CSV export is a Job: the segment page's button starts it, the worker writes the
segment's members (its stored membership, as the page counts it) chunk by chunk (resumably) in the
contact export's format, and only its starter or an admin downloads the file until it expires."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contacts import csvio
from contacts.csvio import BOM, contacts_export_rows, csv_lines
from contacts.models import Contact
from core.jobs import job_resume
from core.jobs.files import job_file_path
from core.models import Job
from core.roles import ADMIN, MARKETER, SALES
from marketing_hub.models import UserPreference
from segments.models import Segment
from segments.services import segment_refresh
from segments.tasks import segment_export_task
from tests.contacts.exports import export_download
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.i18n.catalogues import translated_msgids
from tests.i18n.test_walk import page_problems
from tests.jobs.files import killed_after_writes, second_chunk_fails
from tests.segments.exports import segment_export_csv, segment_export_run, segment_export_start, stored_member_ids
from tests.segments.factories import consent, make_segment

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


def streamed(contact_ids: list[int]) -> bytes:
    """The bytes the in-request segment export streamed for these contacts, in id order."""
    return "".join(csv_lines(contacts_export_rows(Contact.objects.filter(pk__in=contact_ids).order_by("id")))).encode()


def emails_in(raw: bytes) -> list[str]:
    return [row["email"] for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))]


def emails_of(contact_ids: list[int]) -> list[str]:
    return list(Contact.objects.filter(pk__in=contact_ids).order_by("id").values_list("email", flat=True))


def export_job(segment: Segment, user) -> Job:
    return Job.objects.create(kind="segment_export", created_by=user, params={"segment_id": segment.pk})


@pytest.fixture
def kurtki_segment():
    """Twelve contacts, seven of them with kurtki of 3 or more, refreshed into a segment; a second
    segment sharing some of them, so a join on the wrong segment would show."""
    for number in range(12):
        # (fixed names: random ones made initials such as "IS" that the Polish page check reads as English)
        contact = ContactFactory(email=f"c{number:02}@example.com", first_name="Zofia", last_name="Kowalczyk")
        give_tag(contact, "kurtki", number % 6)
        if number % 4 == 0:
            give_tag(contact, "buty", 1)
    segment = make_segment(KURTKI_3, name="Kurtki fans")
    other = make_segment({"type": "has_tag", "tag": "buty"}, name="Buty")
    segment_refresh(segment.pk)
    segment_refresh(other.pk)
    segment.refresh_from_db()
    return segment


@pytest.fixture
def tricky_segment():
    """Members whose names, phones and tags need the formula guard, quoting and the tags format."""
    jan = ContactFactory(
        email="jan@example.com", first_name="Jan;=1+1", last_name='O"Brien', city="Kraków", phone="+48 763 901 750"
    )
    give_tag(jan, "=2+3", 2)
    give_tag(jan, "a;=b", 5)
    give_tag(jan, "kurtki", 3)
    ola = ContactFactory(email="ola@example.com", first_name="@SUM(A1)", city="Gdańsk")
    give_tag(ola, "kurtki", 4)
    hans = ContactFactory(email="hans@example.de", first_name="-Hans", country="DE", city="Berlin")
    give_tag(hans, "kurtki", 9)
    ContactFactory(email="outside@example.com")  # no kurtki: not a member
    segment = make_segment(KURTKI_3, name="Kurtki fans")
    segment_refresh(segment.pk)
    segment.refresh_from_db()
    return segment


# --- which members ------------------------------------------------------------------------------
def test_the_job_exports_exactly_the_stored_members(marketer_client, kurtki_segment, monkeypatch):
    # given chunks of three, and a stored membership that the live definition no longer matches
    # (one member lost its tag, one contact gained it, neither refreshed yet): the page counts these
    monkeypatch.setattr("segments.tasks.EXPORT_CHUNK", 3)
    leaving, joining = Contact.objects.get(email="c04@example.com"), Contact.objects.get(email="c01@example.com")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE contacts_contacttag SET score = 0 WHERE contact_id = %s", [leaving.pk])
        cursor.execute("UPDATE contacts_contacttag SET score = 5 WHERE contact_id = %s", [joining.pk])
    expected = stored_member_ids(kurtki_segment)
    assert len(expected) == kurtki_segment.count == 6 and leaving.pk in expected and joining.pk not in expected
    # when the segment's export runs
    raw = segment_export_csv(marketer_client, kurtki_segment)
    # then the file holds exactly the stored members, each once, in contact id order
    assert emails_in(raw) == emails_of(expected)


def test_a_segment_for_sending_exports_the_members_with_email_consent(marketer_client):
    # given contacts with kurtki, some of whom gave email consent, one withdrew it, one never said
    for number in range(8):
        contact = ContactFactory(email=f"s{number}@example.com")
        give_tag(contact, "kurtki", 4)
        if number % 3:
            consent(contact, "email", granted=number != 4)
    segment = make_segment(KURTKI_3, name="Kurtki mailing", for_sending=True)
    segment_refresh(segment.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT contact_id FROM contacts_consent WHERE channel = 'email' AND granted ORDER BY contact_id"
        )
        consenting = [row[0] for row in cursor.fetchall()]
    assert 0 < len(consenting) < 8 and stored_member_ids(segment) == consenting
    # when it is exported
    raw = segment_export_csv(marketer_client, segment)
    # then only those with consent are in it
    assert emails_in(raw) == emails_of(consenting)


def test_before_its_first_refresh_a_segment_exports_what_its_definition_selects(marketer_client):
    # given a new segment for sending (no stored membership yet: the page counts it live)
    for number in range(6):
        contact = ContactFactory(email=f"n{number}@example.com")
        give_tag(contact, "kurtki", number)
        consent(contact, "email", granted=number % 2 == 0)
    segment = make_segment(KURTKI_3, name="New", for_sending=True)
    assert segment.refreshed_at is None and not stored_member_ids(segment)
    expected = list(
        Contact.objects.filter(
            contact_tags__tag__name="kurtki",
            contact_tags__score__gte=3,
            consents__channel="email",
            consents__granted=True,
        )
        .order_by("id")
        .values_list("pk", flat=True)
    )
    assert len(expected) == 1  # n4: kurtki 4 and consent (n3, n5 have no consent)
    # when it is exported
    raw = segment_export_csv(marketer_client, segment)
    # then the file holds the contacts its definition (with consent) selects
    assert emails_in(raw) == emails_of(expected)


def test_anonymous_profiles_are_never_exported(marketer, kurtki_segment):
    # given a member that has since become an anonymous profile's row (as a merge leaves it)
    member_id = stored_member_ids(kurtki_segment)[0]
    Contact.all_objects.filter(pk=member_id).update(is_anonymous=True)
    # when the segment is exported
    job = segment_export_run(export_job(kurtki_segment, marketer))
    # then it is left out, as the segment's page leaves it out
    raw = job_file_path(job.pk).read_bytes()
    assert member_id not in stored_member_ids(kurtki_segment)
    assert emails_in(raw) == emails_of(stored_member_ids(kurtki_segment))


# --- what the job writes ------------------------------------------------------------------------
def test_the_file_is_byte_for_byte_the_streamed_export_over_many_chunks(marketer, tricky_segment, monkeypatch):
    # given chunks of one member
    monkeypatch.setattr("segments.tasks.EXPORT_CHUNK", 1)
    # when the job runs
    job = segment_export_run(export_job(tricky_segment, marketer))
    # then the file is what the in-request export streamed for the members, byte for byte, in 3 chunks
    members = stored_member_ids(tricky_segment)
    raw = job_file_path(job.pk).read_bytes()
    assert raw == streamed(members)
    assert job.chunks_done == 3 and (job.processed, job.total) == (3, 3)
    # with the BOM, the contact export's columns, the guard's apostrophes, the quoting, phone numbers
    # as they are and the tags format
    text = raw.decode("utf-8")
    assert text.startswith(BOM + ",".join(csvio.EXPORT_HEADER) + "\r\n")
    assert '"Jan;\'=1+1","O""Brien",+48 763 901 750,' in text
    assert "\"a;'=b\":5;kurtki:3;'=2+3:2" in text.replace('""', '"')
    assert ",'@SUM(A1)," in text and ",'-Hans," in text and "outside@example.com" not in text
    # and the result counts the rows and names the file
    assert job.status == "done" and job.result["contacts"] == 3
    assert job.result["file"]["bytes"] == len(raw) and job.result["file"]["rows"] == 3
    assert job.result["file"]["content_type"] == "text/csv; charset=utf-8"
    assert not job_file_path(job.pk, partial=True).exists()


def test_an_empty_segment_exports_the_header_alone(marketer):
    segment = make_segment({"type": "has_tag", "tag": "nikt"}, name="Nobody")
    segment_refresh(segment.pk)
    job = segment_export_run(export_job(segment, marketer))
    assert job.status == "done" and job.result["contacts"] == 0
    assert job_file_path(job.pk).read_bytes() == streamed([])


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Kurtki fans — Wrocław, Łódź", "kurtki-fans-wroclaw-lodz"), ("★ ★ ★", None), ("x" * 80, "x" * 50)],
)
def test_the_file_is_named_after_the_segment_and_the_time_it_was_asked_for(marketer, name, slug):
    segment = make_segment(KURTKI_3, name=name)
    job = segment_export_run(export_job(segment, marketer))
    stamp = timezone.localtime(job.created_at).strftime("%Y%m%d-%H%M")
    assert job.result["file"]["name"] == f"segment-{slug or segment.pk}-{stamp}.csv"


def test_an_export_of_a_deleted_segment_fails_saying_so(marketer, kurtki_segment):
    job = export_job(kurtki_segment, marketer)
    kurtki_segment.delete()
    job = segment_export_run(job)
    assert job.status == "failed" and "was deleted" in job.error
    assert not job_file_path(job.pk).exists()


def test_a_segment_deleted_mid_export_fails_rather_than_hand_out_part_of_it(marketer, kurtki_segment, monkeypatch):
    # given chunks of three, and the segment deleted after the first chunk
    monkeypatch.setattr("segments.tasks.EXPORT_CHUNK", 3)
    real_chunk = csvio.contacts_export_chunk

    def chunk_then_delete(queryset, *, after_id, size):
        chunk = real_chunk(queryset, after_id=after_id, size=size)
        Segment.objects.filter(pk=kurtki_segment.pk).delete()
        return chunk

    with mock.patch("contacts.csvio.contacts_export_chunk", chunk_then_delete):
        job = segment_export_run(export_job(kurtki_segment, marketer))
    # then the job failed, and there is no file to download
    assert job.status == "failed" and "deleted while" in job.error
    assert not job_file_path(job.pk).exists()


# --- resuming -----------------------------------------------------------------------------------
def test_a_worker_killed_after_writing_a_chunk_it_had_not_committed_loses_and_repeats_nothing(
    marketer, kurtki_segment, monkeypatch
):
    # given chunks of two members, and a worker that dies right after writing the second chunk,
    # before its commit
    monkeypatch.setattr("segments.tasks.EXPORT_CHUNK", 2)
    job = export_job(kurtki_segment, marketer)
    with killed_after_writes(2) as writes:
        segment_export_task.run(job.pk)
    # then the job is left running with the first chunk committed: its last contact id and the
    # file's length then, while the file already holds the second chunk too
    job.refresh_from_db()
    members = stored_member_ids(kurtki_segment)
    assert (job.status, job.chunks_done, job.processed) == ("running", 1, 2)
    assert job.resume_after == {"after": members[1], "bytes": writes[0]}
    assert job_file_path(job.pk, partial=True).stat().st_size == writes[1] > writes[0]
    # when the job is delivered again (the sweeper revives it)
    job = segment_export_run(job)
    # then the file is cut back to the committed length and continues: every member once
    assert job.status == "done" and job.result["contacts"] == len(members) == 6
    raw = job_file_path(job.pk).read_bytes()
    assert raw == streamed(members)
    assert emails_in(raw) == emails_of(members)


def test_a_failed_export_continues_from_its_last_chunk(marketer, kurtki_segment, monkeypatch):
    # given an export whose second chunk failed (recorded as failed, "Continue" offered)
    monkeypatch.setattr("segments.tasks.EXPORT_CHUNK", 2)
    job = export_job(kurtki_segment, marketer)
    with second_chunk_fails():
        job = segment_export_run(job)
    assert (job.status, job.chunks_done) == ("failed", 1)
    # when it is continued
    assert job_resume(job)
    job = segment_export_run(job)
    # then the file is whole
    assert job.status == "done" and job_file_path(job.pk).read_bytes() == streamed(stored_member_ids(kurtki_segment))


# --- the segment page's button ------------------------------------------------------------------
def test_the_segment_page_offers_export_as_a_post_form_to_marketers(marketer_client, sales_client, kurtki_segment):
    url = reverse("segments:export", kwargs={"segment_id": kurtki_segment.pk})
    page = marketer_client.get(reverse("segments:detail", kwargs={"segment_id": kurtki_segment.pk})).content.decode()
    form = re.search(rf'<form method="post" action="{re.escape(url)}"[^>]*>.*?</form>', page, re.S)
    assert form and f'hx-post="{url}"' in form.group(0) and 'hx-target="#export-job"' in form.group(0)
    assert 'name="csrfmiddlewaretoken"' in form.group(0) and 'data-testid="export-csv"' in form.group(0)
    assert 'id="export-job"' in page and "export.csv" not in page
    # sales read the segment but export nothing
    assert (
        url
        not in sales_client.get(reverse("segments:detail", kwargs={"segment_id": kurtki_segment.pk})).content.decode()
    )


def test_export_starts_a_job_for_the_segment_and_goes_to_its_page(
    marketer_client, marketer, kurtki_segment, django_capture_on_commit_callbacks
):
    # when the form is posted without htmx
    with (
        mock.patch("segments.tasks.segment_export_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = segment_export_start(marketer_client, kurtki_segment)
    # then a job of the marketer's is queued for the segment, enqueued after the commit
    delay.assert_called_once_with(job.pk)
    assert (job.kind, job.status, job.created_by) == ("segment_export", "queued", marketer)
    assert job.params["segment_id"] == kurtki_segment.pk
    assert job.title == "Export segment “Kurtki fans” to CSV"
    assert job.params["link"] == {
        "label": "Segment",
        "text": "Kurtki fans",
        "url": reverse("segments:detail", kwargs={"segment_id": kurtki_segment.pk}),
    }
    # and its page links back to the segment
    page = marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
    assert f'href="{job.params["link"]["url"]}"' in page


def test_export_through_htmx_shows_the_jobs_progress_on_the_segment_page(marketer_client, kurtki_segment):
    response = marketer_client.post(
        reverse("segments:export", kwargs={"segment_id": kurtki_segment.pk}), headers={"HX-Request": "true"}
    )
    job = Job.objects.get()
    html = response.content.decode()
    assert response.status_code == 200 and f'id="job-{job.pk}"' in html and "<html" not in html
    assert f'hx-get="{reverse("jobs:progress", kwargs={"job_id": job.pk})}"' in html
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "Started: Export segment “Kurtki fans” to CSV"


def test_the_export_is_a_post_for_marketers_only(marketer_client, sales_client, kurtki_segment):
    url = reverse("segments:export", kwargs={"segment_id": kurtki_segment.pk})
    assert marketer_client.get(url).status_code == 405
    assert sales_client.post(url).status_code == 403
    assert marketer_client.post(reverse("segments:export", kwargs={"segment_id": 999_999})).status_code == 404
    assert not Job.objects.exists()


# --- the job's page and the download ------------------------------------------------------------
def test_only_the_starter_and_admins_download_the_file(
    marketer_client, marketer, admin_client, sales_client, kurtki_segment
):
    # given a finished export the marketer started
    job = segment_export_run(export_job(kurtki_segment, marketer))
    url = reverse("jobs:download", kwargs={"job_id": job.pk})
    expected = streamed(stored_member_ids(kurtki_segment))
    # then the job's page offers it to the marketer, who gets it as an attachment named after the segment
    page = marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
    assert f'href="{url}"' in page and "Download CSV" in page and "6 rows · " in page
    response = marketer_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    stamp = timezone.localtime(job.created_at).strftime("%Y%m%d-%H%M")
    assert response["Content-Disposition"] == f'attachment; filename="segment-kurtki-fans-{stamp}.csv"'
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == expected
    # and an admin too
    assert export_download(admin_client, job) == expected
    # but another marketer and a sales user get a 404, and the page offers them no link
    other_client = Client()
    other_client.force_login(UserFactory(username="other_marketer", role=MARKETER))
    for client in (other_client, sales_client):
        assert client.get(url).status_code == 404
        page = client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
        assert url not in page and "Only the person who started the job, or an admin, may download its file." in page


def test_a_starter_who_lost_the_marketer_role_no_longer_downloads(client, kurtki_segment):
    starter = UserFactory(username="was_marketer", role=SALES)
    job = segment_export_run(export_job(kurtki_segment, starter))
    client.force_login(starter)
    assert client.get(reverse("jobs:download", kwargs={"job_id": job.pk})).status_code == 404
    client.force_login(UserFactory(username="boss", role=ADMIN))
    assert export_download(client, job) == streamed(stored_member_ids(kurtki_segment))


def test_the_file_expires_as_the_contact_exports_do(marketer_client, marketer, kurtki_segment, settings):
    # given an export written longer ago than the retention
    settings.MH_EXPORT_RETENTION_DAYS = 7
    job = segment_export_run(export_job(kurtki_segment, marketer))
    then = time.time() - 7.1 * 24 * 3600
    os.utime(job_file_path(job.pk), (then, then))
    # then its page says so, and the download link goes back to the page
    page = marketer_client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
    assert "The file has expired: files are kept for 7 days." in page
    response = marketer_client.get(reverse("jobs:download", kwargs={"job_id": job.pk}))
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", kwargs={"job_id": job.pk})


def test_the_button_and_the_export_read_in_polish(marketer, kurtki_segment):
    # given a marketer who reads Polish
    UserPreference.objects.create(user=marketer, language="pl")
    Segment.objects.filter(pk=kurtki_segment.pk).update(name="Fani kurtek")
    client = Client()
    client.force_login(marketer)
    # when they open the segment and export it
    detail = client.get(reverse("segments:detail", kwargs={"segment_id": kurtki_segment.pk})).content.decode()
    job = segment_export_run(segment_export_start(client, kurtki_segment))
    page = client.get(reverse("jobs:detail", kwargs={"job_id": job.pk})).content.decode()
    # then the button, the job's title and kind, and the download are in Polish, with no English left
    assert "Eksport CSV" in detail and "Zapisz członków segmentu do pliku CSV w tle" in detail
    assert job.title == "Eksport segmentu „Fani kurtek” do CSV"
    assert "Eksport segmentu" in page and "Pobierz CSV" in page
    assert re.search(r"segment-fani-kurtek-\d{8}-\d{4}\.csv", job.result["file"]["name"])
    assert [problem for html in (detail, page) for problem in page_problems(html, translated_msgids())] == []
