"""TEMPORARY: screenshots of the automation pages (deleted before hand-off)."""
from __future__ import annotations

from unittest import mock

import pytest

from automation.ingestion import events_ingest
from automation.starter import install_starter_rules
from tests.automation.factories import event, process_all


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_screens(live_server, login_page, marketer):
    rules = install_starter_rules()
    rid = rules[1].pk
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event(f"s{i}", email=f"u{i%5}@example.com", category=["kurtki", "buty", "sukienki"][i % 3]) for i in range(30)]
                      + [event(f"p{i}", type="purchase", value=[200, 1500][i % 2], email=f"u{i%5}@example.com") for i in range(6)])
        process_all()
    from automation.models import Job, SegmentationMatrix
    SegmentationMatrix.objects.create(name="Categories", event_type="product_view", property="category",
        rows=[{"value": "kurtki", "tag": "KURTKI", "score": 1}, {"value": "buty", "tag": "Buty", "score": 1}])
    j = Job.objects.create(kind="rule_backfill", title="Run rule “Jackets” on events since 2026-10-01 00:00", status="done", progress=1, total=1200, processed=1200, params={"rule_id": rid, "since": "2026-10-01T00:00:00+00:00"}, result={"events": 1200, "applied": 344, "rule_id": rid})
    Job.objects.create(kind="adhoc_actions", title="Add tag WINTER-PROMO +1 — 12,000 contacts of segment “VIP”", status="running", progress=0.4, total=12000, processed=4800)
    Job.objects.create(kind="contacts_import", title="Import contacts.csv", status="failed", error="ValueError: row 3: bad email")
    page = login_page(marketer)
    page.set_viewport_size({"width": 1400, "height": 900})
    for name, path in [("rules", "/automation/rules/"), ("rule_new", "/automation/rules/new/"),
                       ("rule_edit", f"/automation/rules/{rid}/"), ("matrices", "/automation/matrices/"),
                       ("matrix_new", "/automation/matrices/new/"), ("adhoc", "/automation/adhoc/"),
                       ("events", "/automation/events/"), ("jobs", "/automation/jobs/"), ("job_detail", f"/automation/jobs/{j.pk}/")]:
        page.goto(live_server.url + path)
        page.screenshot(path=f"/tmp/shots/{name}.png", full_page=True)
    page.goto(live_server.url + f"/automation/rules/{rid}/")
    page.click("[data-testid=add-condition]")
    page.wait_for_selector("#cond-1")
    page.fill("#cond-1-property", "currency")
    page.fill("#cond-1-value", "PLN")
    page.click("[data-testid=add-action]")
    page.wait_for_selector("#act-2")
    page.select_option("#act-2-type", "add_score")
    page.wait_for_selector("#act-2-points")
    page.fill("#act-2-points", "5")
    page.click("[data-testid=preview-rule]")
    page.wait_for_timeout(800)
    page.screenshot(path="/tmp/shots/rule_edit_live.png", full_page=True)
