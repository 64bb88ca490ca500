"""A segment's CSV export in the browser: the segment page's button starts a job, its progress shows
on the page, the file is downloaded from it — with htmx, and as a plain form without JavaScript."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from contacts.models import Contact
from segments.services import segment_refresh
from tests.conftest import shot
from tests.factories import give_tag
from tests.jobs.files import downloaded_rows
from tests.segments.factories import make_segment


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_marketer_exports_a_segment_and_downloads_the_file(
    live_server, login_page, marketer, browser, celery_worker_process
):
    # given 250 contacts with kurtki, 40 of them strong fans (one with a formula for a name), in a
    # refreshed segment
    Contact.objects.bulk_create(
        [Contact(email=f"k{index:03}@example.com", city="Gdańsk", country="PL") for index in range(250)]
    )
    for index, contact in enumerate(Contact.objects.order_by("email")):
        give_tag(contact, "kurtki", 5 if index < 40 else 1)
    Contact.objects.filter(email="k000@example.com").update(first_name="=HYPERLINK(1)")
    segment = make_segment({"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}, name="Fani kurtek")
    segment_refresh(segment.pk)
    page = login_page(marketer)
    page.set_viewport_size({"width": 1440, "height": 900})
    # when the marketer opens the segment and clicks "Export CSV"
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.get_by_test_id("detail-count")).to_have_text("40")
    shot(page, "segment-export-button", widths=(1440, 390))
    page.get_by_test_id("export-csv").click()
    # then the job's progress shows on the page and ends with the download, its rows and size
    status = page.locator("#export-job")
    expect(status.get_by_test_id("job-download")).to_have_text("Download CSV", timeout=60_000)
    expect(status.get_by_test_id("job-file-size")).to_contain_text("40 rows")
    shot(page, "segment-export-done", widths=(1440, 390))
    # and the file holds the segment's members, under a name after the segment, formulas guarded
    with page.expect_download() as download_info:
        status.get_by_test_id("job-download").click()
    download = download_info.value
    assert re.fullmatch(r"segment-fani-kurtek-\d{8}-\d{4}\.csv", download.suggested_filename)
    rows = downloaded_rows(download)
    assert sorted(row["email"] for row in rows) == [f"k{index:03}@example.com" for index in range(40)]
    assert {row["tags"] for row in rows} == {"kurtki:5"}
    assert next(row for row in rows if row["email"] == "k000@example.com")["first_name"] == "'=HYPERLINK(1)"
    # and the job's page offers the same file and links back to the segment
    status.get_by_role("link", name="Details").click()
    expect(page.get_by_test_id("job-download")).to_be_visible()
    expect(page.get_by_role("link", name="Fani kurtek")).to_have_attribute("href", f"/segments/{segment.pk}/")
    shot(page, "segment-export-job", widths=(1440, 390))

    # when a browser without JavaScript posts the form (the same session)
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 1440, "height": 900})
    plain.add_cookies(page.context.cookies())
    plain_page = plain.new_page()
    plain_page.goto(f"{live_server.url}/segments/{segment.pk}/")
    plain_page.get_by_test_id("export-csv").click()
    # then it lands on the job's page, which offers the file once the worker is done (reloaded by hand)
    plain_page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    deadline = time.monotonic() + 60
    while not plain_page.get_by_test_id("job-download").count() and time.monotonic() < deadline:
        time.sleep(0.5)
        plain_page.reload()
    expect(plain_page.get_by_test_id("job-file-size")).to_contain_text("40 rows")
    plain.close()
