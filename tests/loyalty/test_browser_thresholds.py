"""Browser: an admin raises a threshold, sees the preview, saves; the worker's recompute matches the
preview. A marketer is refused by the server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from loyalty.models import ContactTier
from tests.conftest import shot
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.loyalty.factories import make_program


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_admin_raises_a_threshold_and_the_job_matches_the_preview(live_server, login_page, celery_worker_process):
    # given PURCHASE scores 0, 2, 6, 8, 12 → Bronze ×2, Silver ×3 (Silver from 6)
    ContactFactory()
    for score in (2, 6, 8, 12):
        give_tag(ContactFactory(), "PURCHASE", score)
    program = make_program()
    admin = UserFactory(username="boss", role="Admin")
    page = login_page(admin)
    # when the admin raises Silver's minimum to 9
    page.goto(f"{live_server.url}/loyalty/{program.pk}/edit/")
    expect(page.get_by_test_id("preview-unchanged")).to_have_text("5")
    page.fill("input[name='tiers-1-min']", "9")
    # then the preview shows 2 drops (6 and 8), before anything is saved
    expect(page.get_by_test_id("preview-down")).to_have_text("2")
    preview = {key: page.get_by_test_id(f"preview-{key}").inner_text() for key in ("up", "down", "unchanged")}
    assert preview == {"up": "0", "down": "2", "unchanged": "3"}
    assert ContactTier.objects.filter(program=program, tier__name="Silver").count() == 3
    shot(page, "loyalty-editor-preview")
    # when saving
    page.get_by_test_id("save").click()
    # then the recompute job runs in the worker and reports the previewed numbers
    expect(page.get_by_test_id("job-result")).to_be_visible(timeout=30_000)
    result = {key: page.get_by_test_id(f"job-{key}").inner_text() for key in ("up", "down", "unchanged")}
    assert result == preview
    assert ContactTier.objects.filter(program=program, tier__name="Silver").count() == 1
    shot(page, "loyalty-overview-after-save")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_reads_but_cannot_open_or_post_the_editor(live_server, login_page):
    # given
    program = make_program()
    marketer = UserFactory(username="mia", role="Marketer")
    page = login_page(marketer)
    # when
    page.goto(f"{live_server.url}/loyalty/")
    expect(page.get_by_test_id("programs")).to_contain_text("PURCHASE club")
    expect(page.get_by_text("Edit tiers")).to_have_count(0)
    shot(page, "loyalty-list-marketer")
    editor = page.goto(f"{live_server.url}/loyalty/{program.pk}/edit/")
    # then the server refuses, whatever the page shows
    assert editor.status == 403
    token = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    posted = page.request.post(
        f"{live_server.url}/loyalty/{program.pk}/edit/",
        form={"csrfmiddlewaretoken": token, "name": "PURCHASE club", "metric_type": "score",
              "downgrade_policy": "immediate", "tiers-TOTAL_FORMS": "1", "tiers-INITIAL_FORMS": "0",
              "tiers-0-name": "All", "tiers-0-min": "0"},
        headers={"X-CSRFToken": token, "Referer": f"{live_server.url}/loyalty/"},
    )
    assert posted.status == 403
    assert program.tiers.count() == 2 and program.tiers.filter(name="All").count() == 0
