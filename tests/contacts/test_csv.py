"""CSV export escapes formulas; CSV import validates per row, reports, and is idempotent."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from contacts.csvio import FORMULA_PREFIXES, contacts_import_run, csv_lines, csv_safe
from contacts.models import Consent, ConsentChange, Contact, ContactImport, ContactTag, TagScoreChange
from tests.contacts.exports import export_csv
from tests.factories import ContactFactory, give_tag

GOOD_AND_BAD = (
    "email,first_name,last_name,phone,country,city,birth_date,consent_email,tags\n"
    "anna@example.com,Anna,Nowak,600100200,PL,Kraków,1990-05-17,yes,kurtki:4;Sukienki:1\n"
    "not-an-email,Bad,Row,,PL,,,,\n"
    "jan@example.com,Jan,Lis,,XX,,,no,\n"
    "ewa@example.com,Ewa,,,de,Berlin,,,vip\n"
)


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_csv_safe_never_leaves_a_formula_at_the_start(text):
    # when any text is made safe
    safe = csv_safe(text)
    # then it starts with a formula character only when it is a number or phone number (left as is)
    if safe.startswith(FORMULA_PREFIXES):
        assert safe == text and re.fullmatch(r"[+-]?[0-9 ().-]*[0-9][0-9 ().-]*", text)
    # and a risky start gets exactly one apostrophe in front
    elif text.startswith(FORMULA_PREFIXES):
        assert safe.startswith("'" + text[0])


@given(st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=5), min_size=1, max_size=5))
@settings(max_examples=100)
def test_exported_csv_reads_back_with_every_cell_safe(rows):
    # when rows are written through csv_lines and read back by a CSV reader
    text = "".join(csv_lines(rows))
    # then the text starts with a BOM and every cell reads back as its safe form
    assert text.startswith("\ufeff")
    read = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    assert read == [[csv_safe(cell) for cell in row] for row in rows]


@pytest.mark.django_db
def test_export_of_a_filtered_list_escapes_cells(marketer_client):
    contact = ContactFactory(email="x@example.com", first_name="=HYPERLINK(\"http://evil\")", country="PL")
    give_tag(contact, "@promo", 2)
    ContactFactory(email="y@example.com", country="DE")
    raw = export_csv(marketer_client, {"query": "country=PL"})
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0][0] == "email" and len(rows) == 2
    assert rows[1][1] == "'=HYPERLINK(\"http://evil\")"
    assert rows[1][-1] == "'@promo:2"


def _import(text: str, user=None) -> ContactImport:
    from contacts.csvio import guess_mapping, read_header_and_preview

    header, _ = read_header_and_preview(text)
    contact_import = ContactImport.objects.create(filename="f.csv", content=text, header=header,
                                                  mapping=guess_mapping(header), created_by=user)
    contacts_import_run(contact_import, user=user)
    contact_import.refresh_from_db()
    return contact_import


@pytest.mark.django_db
def test_import_keeps_valid_rows_and_reports_bad_ones():
    # when a file with two bad rows is imported
    result = _import(GOOD_AND_BAD)
    # then the good rows are in, with tags set and consent recorded from the import
    assert (result.total_rows, result.imported_rows, result.error_rows) == (4, 2, 2)
    assert set(Contact.objects.values_list("email", flat=True)) == {"anna@example.com", "ewa@example.com"}
    anna = Contact.objects.get(email="anna@example.com")
    assert (anna.country, anna.city, str(anna.birth_date)) == ("PL", "Kraków", "1990-05-17")
    assert dict(ContactTag.objects.filter(contact=anna).values_list("tag__name", "score")) == {"kurtki": 4,
                                                                                                "Sukienki": 1}
    assert Consent.objects.get(contact=anna).granted is True
    assert Contact.objects.get(email="ewa@example.com").country == "DE"
    # and each bad row is reported with its row number, column and problem
    assert [(row, column) for row, column, _ in result.errors] == [(3, "email"), (4, "country")]


@pytest.mark.django_db
def test_reimport_is_idempotent():
    _import(GOOD_AND_BAD)
    counts = (Contact.objects.count(), TagScoreChange.objects.count(), ConsentChange.objects.count())
    scores = dict(ContactTag.objects.values_list("tag__name", "score"))
    again = _import(GOOD_AND_BAD)
    assert again.imported_rows == 2
    assert (Contact.objects.count(), TagScoreChange.objects.count(), ConsentChange.objects.count()) == counts
    assert dict(ContactTag.objects.values_list("tag__name", "score")) == scores


@pytest.mark.django_db
def test_bad_tag_scores_and_dates_are_row_errors():
    result = _import("email;birth_date;tags\n"
                     "a@example.com;1990-02-30;\n"
                     "b@example.com;;kurtki:-3\n"
                     "c@example.com;;\"kurtki:x;ok:2\"\n"
                     "d@example.com;2001-01-01;vip:3\n")
    assert result.imported_rows == 1
    assert [(row, column) for row, column, _ in result.errors] == [(2, "birth_date"), (3, "tags"), (4, "tags")]


@pytest.mark.django_db
def test_management_command_imports_and_writes_the_report(tmp_path, capsys):
    source = tmp_path / "contacts.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    report = tmp_path / "errors.csv"
    call_command("import_contacts", str(source), "--errors", str(report))
    assert "4 rows: 2 imported, 2 with errors." in capsys.readouterr().out
    rows = list(csv.reader(report.open(encoding="utf-8")))
    assert rows[0] == ["row", "column", "problem"] and [row[0] for row in rows[1:]] == ["3", "4"]


@pytest.mark.django_db
def test_upload_maps_columns_and_starts_a_job(marketer_client, django_capture_on_commit_callbacks):
    from unittest import mock

    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("people.csv", "E-mail;Imię;Tags\nola@example.com;Ola;vip:2\n".encode("cp1250"))
    response = marketer_client.post(reverse("contacts:import"), {"file": upload})
    contact_import = ContactImport.objects.get()
    assert response.status_code == 302
    assert contact_import.mapping == {"email": 0, "first_name": 1, "tags": 2}
    detail = reverse("contacts:import_detail", args=[contact_import.pk])
    mapping_page = marketer_client.get(detail).content.decode()
    assert "ola@example.com" in mapping_page
    with mock.patch("contacts.tasks.contacts_import_task.delay") as delay, \
            django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(detail, {"email": "0", "first_name": "1", "tags": "2"})
    contact_import.refresh_from_db()
    assert contact_import.status == "queued" and delay.called


@pytest.mark.django_db
def test_upload_rejects_a_file_without_header(marketer_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = marketer_client.post(reverse("contacts:import"), {"file": SimpleUploadedFile("e.csv", b"\n\n")})
    assert response.status_code == 200 and "no header row" in response.content.decode()
    assert not ContactImport.objects.exists()


@pytest.mark.django_db
def test_the_import_job_resumes_after_its_last_committed_chunk(marketer, monkeypatch):
    # given an import of four rows (two bad) run as a job in chunks of two rows
    from contacts import csvio
    from contacts.csvio import guess_mapping, read_header_and_preview
    from contacts.tasks import contacts_import_task
    from core.models import Job

    monkeypatch.setattr(csvio, "CHUNK_ROWS", 2)
    header, _ = read_header_and_preview(GOOD_AND_BAD)
    contact_import = ContactImport.objects.create(filename="f.csv", content=GOOD_AND_BAD, header=header,
                                                  mapping=guess_mapping(header), status="queued", created_by=marketer)
    job = Job.objects.create(kind="import_contacts", params={"import_id": contact_import.pk}, created_by=marketer)
    # and a first delivery that dies in the second chunk (after the first one committed)
    write = csvio.contacts_import_write
    calls = []

    def dying_write(chunk, **kwargs):
        calls.append(chunk.last_row)
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return write(chunk, **kwargs)

    monkeypatch.setattr(csvio, "contacts_import_write", dying_write)
    contacts_import_task.run(job.pk)
    job.refresh_from_db()
    assert (job.resume_after, job.processed, job.counts) == (3, 2, {"rows": 2, "imported": 1, "errors": 1})
    assert set(Contact.objects.values_list("email", flat=True)) == {"anna@example.com"}
    # when the job is delivered again as a running job (its worker was killed, not failed)
    monkeypatch.setattr(csvio, "contacts_import_write", write)
    Job.objects.filter(pk=job.pk).update(status="running", error="", finished_at=None)
    contacts_import_task.run(job.pk)
    # then it continues with the rows after the first chunk: every row counted and reported once
    job.refresh_from_db()
    contact_import.refresh_from_db()
    assert job.status == "done" and job.result == {"rows": 4, "imported": 2, "errors": 2}
    assert (contact_import.status, contact_import.total_rows, contact_import.imported_rows) == ("done", 4, 2)
    assert sorted({row for row, _column, _problem in contact_import.errors}) == [3, 4]
    assert set(Contact.objects.values_list("email", flat=True)) == {"anna@example.com", "ewa@example.com"}
