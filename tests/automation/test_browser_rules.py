"""A marketer writes a rule in the editor, previews it, runs it on past events (a real worker runs
the job) and sees the contact's tags change."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from automation.ingestion import events_ingest
from contacts.models import Contact
from tests.automation.factories import event, process_all


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_rule_editor_preview_and_run_on_past_events(live_server, login_page, marketer, celery_worker_process):
    # given a contact who viewed two jackets and a pair of shoes two days ago (no rules then)
    two_days_ago = timezone.now() - timedelta(days=2)
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event("b1", category="kurtki", occurred_at=two_days_ago),
                       event("b2", category="Kurtki", occurred_at=two_days_ago),
                       event("b3", category="buty", occurred_at=two_days_ago)])
        process_all()
    contact = Contact.objects.get(email="anna@example.com")
    page = login_page(marketer)

    # when the marketer writes a rule: product_view with category = kurtki → tag Jacket fan +2
    page.goto(f"{live_server.url}/automation/rules/new/")
    page.fill("#id_name", "Jacket lovers")
    page.select_option("#id_event_type", "product_view")
    page.click("[data-testid=add-condition]")
    page.fill("#cond-0-property", "category")
    page.fill("#cond-0-value", "KURTKI")
    page.fill("#act-0-tag", "Jacket fan")
    page.fill("#act-0-score", "2")
    # then the plain-language summary follows the typing
    expect(page.get_by_test_id("rule-summary")).to_contain_text(
        "When a product view with category = KURTKI happens, add tag Jacket fan +2.")

    # when they preview the last 30 days
    page.click("[data-testid=preview-rule]")
    preview = page.get_by_test_id("rule-preview")
    # then two events of one contact would have given the tag, and nothing was written
    expect(page.get_by_test_id("preview-events")).to_have_text("2")
    expect(page.get_by_test_id("preview-contacts")).to_have_text("1")
    expect(preview.locator(".chip")).to_contain_text("Jacket fan")
    expect(preview.locator(".chip")).to_contain_text("4")
    assert not contact.contact_tags.exists()

    # when they save it and run it on past events
    page.click("[data-testid=save-rule]")
    page.wait_for_url("**/automation/rules/*/")
    page.click("[data-testid=run-rule]")
    # then the job runs in the worker and finishes
    expect(page.locator(".job .badge")).to_contain_text("Done", timeout=60_000)

    page.screenshot(path="/tmp/shots/rule_after_run.png", full_page=True)
    # and the contact card shows the new tag with score 4 (two jackets × 2)
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    expect(page.locator(".chip", has_text="Jacket fan")).to_contain_text("4")
    page.screenshot(path="/tmp/shots/contact_after_run.png", full_page=True)
