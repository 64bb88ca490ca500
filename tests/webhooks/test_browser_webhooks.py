"""In the browser, with a real worker and a real receiver: an admin creates a webhook, sends a
test and sees it succeed in the log; a marketer's rule with "Send to webhook" fires on ingested
events and the call shows in the log."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.automation.factories import event
from tests.conftest import PASSWORD


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_admin_creates_tests_and_a_marketers_rule_fires(live_server, login_page, browser, admin, marketer,
                                                       celery_worker_process, receiver, ingest_api):
    receiver.expect_request("/shop").respond_with_data("thanks")
    page = login_page(admin)

    # when the admin adds a webhook from Settings
    page.goto(f"{live_server.url}/settings/")
    page.click("text=Webhooks")
    page.click("[data-testid=new-webhook]")
    page.fill("#id_url", receiver.url_for("/shop"))
    page.fill("#id_description", "Shop")
    page.check("input[name=events][value='lead.temperature_changed']")
    page.click("[data-testid=save-webhook]")
    # then the secret is shown once, with a copy button
    expect(page.get_by_test_id("webhook-secret")).to_contain_text("whsec_")
    expect(page.locator("[data-copy=webhook-secret]")).to_be_visible()

    # when they open it and send a test
    page.click("[data-testid=to-webhook]")
    page.click("[data-testid=send-test]")
    # then the log shows the test succeeded (the worker delivered it; the log refreshes itself)
    test_row = page.locator("[data-testid=delivery-log] tr[data-type='webhook.test']")
    expect(test_row).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(test_row).to_contain_text("HTTP 200")
    # and opening the row shows the signed request and the answer
    test_row.locator("text=Open").click()
    expect(page.get_by_test_id("delivery")).to_contain_text("webhook-signature: v1,")
    expect(page.get_by_test_id("delivery")).to_contain_text("thanks")

    # when a marketer writes a rule that sends jacket views to the webhook
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    marketer_page = context.new_page()
    marketer_page.goto(f"{live_server.url}/login/")
    marketer_page.fill("input[name=username]", marketer.username)
    marketer_page.fill("input[name=password]", PASSWORD)
    marketer_page.click("button[type=submit]")
    marketer_page.wait_for_url(lambda url: "/login/" not in url)
    marketer_page.goto(f"{live_server.url}/automation/rules/new/")
    marketer_page.fill("#id_name", "Jackets to the shop")
    marketer_page.select_option("#id_event_type", "product_view")
    marketer_page.select_option("#act-0-type", "send_webhook")
    marketer_page.wait_for_selector("#act-0-target")
    marketer_page.select_option("#act-0-target", label="Shop")
    expect(marketer_page.get_by_test_id("rule-summary")).to_contain_text("send to webhook Shop")
    marketer_page.click("[data-testid=save-rule]")
    marketer_page.wait_for_url(re.compile(r".*/automation/rules/\d+/$"))
    context.close()
    # and the shop sends two product views
    response = ingest_api.post("/api/v1/events", json={"events": [
        event("b-1", email="ola@example.com", category="kurtki"), event("b-2", email="jan@example.com", category="buty"),
    ]})
    assert response.status_code == 202

    # then the admin sees two rule.fired calls succeed in the log (reloading while the worker
    # applies the rules: the log refreshes itself only once a call waits)
    fired = page.locator("[data-testid=delivery-log] tr[data-type='rule.fired'][data-status='succeeded']")
    deadline = time.monotonic() + 60
    while fired.count() < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        page.reload()
    expect(fired).to_have_count(2)
    bodies = [request.get_json() for request, _ in receiver.log if request.get_json()["type"] == "rule.fired"]
    assert sorted(body["data"]["contact"]["email"] for body in bodies) == ["jan@example.com", "ola@example.com"]
    assert {body["data"]["rule"]["name"] for body in bodies} == {"Jackets to the shop"}
