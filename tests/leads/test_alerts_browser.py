"""Browser: a seller has the app open; an event through the API makes their lead hot in a real
worker; the bell's count goes up by itself, the alert email reaches a real SMTP server, and the
seller reads the notification."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import expect

from core.roles import SALES
from leads.models import Notification
from tests.automation.factories import event, make_rule
from tests.conftest import wait_for
from tests.factories import ContactFactory, UserFactory
from tests.leads.factories import give_points
from tests.leads.smtp_server import Inbox, free_port

SHOTS = Path("/tmp/shots")


@pytest.fixture
def worker_smtp(monkeypatch):
    """A real SMTP server; the worker started after this fixture sends its mail there."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv("EMAIL_URL", f"smtp://127.0.0.1:{controller.port}")
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_bell_counts_up_when_a_lead_turns_hot(live_server, login_page, ingest_api, worker_smtp,
                                                 celery_worker_process):
    # given a seller holding a lead at 50 points, and a rule giving 60 points per purchase
    seller = UserFactory(username="seller", first_name="Ola", last_name="Sprzedaż", role=SALES)
    lead = ContactFactory(email="anna@example.com", first_name="Anna", last_name="Zielińska", owner=seller)
    give_points(lead, 50)
    make_rule(event_type="purchase", actions=[{"type": "add_score", "points": 60}])
    page = login_page(seller)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/leads/hot/")
    bell = page.locator("#notification-bell")
    expect(bell).to_contain_text("No unread notifications")
    expect(bell.locator(".bell-count")).to_have_count(0)

    # when the shop sends a purchase and the worker applies the rule
    response = ingest_api.post("/api/v1/events", json={"events": [event("buy-1", type="purchase")]})
    assert response.status_code == 202

    # then, without a reload, the bell shows one unread notification
    expect(bell.locator(".bell-count")).to_have_text("1", timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "alerts-bell.png"), clip={"x": 0, "y": 0, "width": 520, "height": 120})
    # and the worker emailed the seller through the SMTP server
    wait_for(lambda: worker_smtp.messages, timeout=30, message="the alert email")
    assert worker_smtp.recipients == [["seller@example.com"]]
    assert worker_smtp.messages[0]["Subject"] == "Hot lead: Anna Zielińska (score 110)"

    # when the seller opens the bell and marks the notification read
    bell.click()
    page.wait_for_url("**/leads/notifications/")
    row = page.locator(f"#notification-{Notification.objects.get(user=seller).pk}")
    expect(row).to_contain_text("Anna Zielińska became hot")
    expect(row).to_contain_text("110")
    page.screenshot(path=str(SHOTS / "alerts-list.png"), full_page=True)
    row.get_by_role("button", name="Mark read").click()
    # then the row is read and the bell empties at once
    expect(page.locator(f"#notification-{Notification.objects.get(user=seller).pk}")).to_have_class("notification is-read")
    expect(bell.locator(".bell-count")).to_have_count(0)
