"""The CSV export in the browser: the list's button starts a job, its progress shows, the file is
downloaded from it — with htmx, and as a plain form without JavaScript."""

from __future__ import annotations

import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Contact
from core.models import Job
from tests.conftest import shot
from tests.jobs.files import downloaded_rows


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_marketer_exports_the_filtered_list_and_downloads_the_file(
    live_server, login_page, marketer, browser, celery_worker_process
):
    # given 300 contacts in Gdańsk and 20 in Wrocław, one with a formula for a name
    Contact.objects.bulk_create(
        [Contact(email=f"g{index:03}@example.com", city="Gdańsk", country="PL") for index in range(300)]
        + [Contact(email=f"w{index}@example.com", city="Wrocław", country="PL") for index in range(20)]
    )
    Contact.objects.filter(email="g000@example.com").update(first_name="=HYPERLINK(1)")
    page = login_page(marketer)
    page.set_viewport_size({"width": 1440, "height": 900})
    # when the marketer filters the list by city (an htmx swap) and clicks "Export CSV"
    page.goto(f"{live_server.url}/contacts/")
    page.fill("input[name=city]", "gdańsk")
    expect(page.get_by_test_id("result-count")).to_have_text("300 contacts")
    shot(page, "export-list", widths=(1440, 390))
    page.get_by_test_id("export-csv").click()
    # then the job's progress shows above the list and ends with the download, its rows and size
    status = page.locator("#bulk-status")
    expect(status.get_by_test_id("job-download")).to_have_text("Download CSV", timeout=60_000)
    expect(status.get_by_test_id("job-file-size")).to_contain_text("300 rows")
    shot(page, "export-list-done", widths=(1440, 390))
    # and the file holds the filtered contacts only, under the time-stamped name, formulas guarded
    with page.expect_download() as download_info:
        status.get_by_test_id("job-download").click()
    download = download_info.value
    assert re.fullmatch(r"contacts-\d{8}-\d{4}\.csv", download.suggested_filename)
    rows = downloaded_rows(download)
    assert sorted(row["email"] for row in rows) == [f"g{index:03}@example.com" for index in range(300)]
    assert {row["city"] for row in rows} == {"Gdańsk"}
    assert rows[0]["first_name"] == "'=HYPERLINK(1)"
    # and the job's page offers the same file
    status.get_by_role("link", name="Details").click()
    expect(page.get_by_test_id("job-download")).to_be_visible()
    expect(page.get_by_role("link", name="The list with these filters")).to_have_attribute(
        "href", "/contacts/?city=gda%C5%84sk&sort=-score"
    )
    shot(page, "export-job-done", widths=(1440, 390))

    # when a browser without JavaScript posts the form (the same session)
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 1440, "height": 900})
    plain.add_cookies(page.context.cookies())
    plain_page = plain.new_page()
    plain_page.goto(f"{live_server.url}/contacts/?city=wroc%C5%82aw")
    plain_page.get_by_test_id("export-csv").click()
    # then it lands on the job's page, which offers the file once the worker is done (reloaded by hand)
    plain_page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    deadline = time.monotonic() + 60
    while not plain_page.get_by_test_id("job-download").count() and time.monotonic() < deadline:
        time.sleep(0.5)
        plain_page.reload()
    expect(plain_page.get_by_test_id("job-file-size")).to_contain_text("20 rows")
    plain.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_running_export_shows_its_progress_on_its_page(live_server, login_page, marketer):
    # given an export of a million contacts, 42% written
    job = Job.objects.create(
        kind="contacts_export",
        title="Export all contacts matching the filters to CSV",
        status="running",
        total=1_000_000,
        processed=420_000,
        progress=0.42,
        chunks_done=42,
        started_at=timezone.now(),
        created_by=marketer,
        params={
            "query": "city=Gda%C5%84sk",
            "link": {"label": "Contacts", "text": "The list with these filters", "url": "/contacts/?city=Gda%C5%84sk"},
        },
        resume_after={"after": 420_000, "bytes": 81_000_000},
    )
    page = login_page(marketer)
    page.set_viewport_size({"width": 1440, "height": 900})
    # when the marketer opens its page
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    # then it shows the rows written of the total, and no download yet
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("420,000 of 1,000,000 processed")
    expect(page.get_by_test_id("job-download")).to_have_count(0)
    shot(page, "export-job-running", widths=(1440, 390))
