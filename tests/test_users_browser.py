"""Browser: an admin changes a user's role, deactivates them (they can no longer sign in), and has a
password reset link emailed through a real SMTP server on loopback, which the user then follows."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import expect

from core.roles import ADMIN, MARKETER, SALES, roles_of
from tests.conftest import PASSWORD, wait_for
from tests.factories import UserFactory
from tests.leads.smtp_server import Inbox, free_port

SHOTS = Path(os.environ.get("SHOTS_DIR", "/tmp/shots")) / "helper_b"


@pytest.fixture
def smtp_inbox(settings):
    """A real SMTP server on loopback; the live server (in this process) sends its mail there."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield inbox
    finally:
        controller.stop()


def _sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_changes_role_deactivates_and_resets_a_password(live_server, login_page, browser, smtp_inbox):
    # given a marketer signed in in her own browser, and an admin on her user page
    ola = UserFactory(username="ola", first_name="Ola", last_name="Nowak", email="ola@shop.pl", role=MARKETER)
    ola_browser = browser.new_context(viewport={"width": 390, "height": 844})
    ola_page = ola_browser.new_page()
    _sign_in(ola_page, live_server, "ola", PASSWORD)
    ola_page.wait_for_url(f"{live_server.url}/")
    admin = UserFactory(username="boss", first_name="Anna", last_name="Admin", role=ADMIN)
    page = login_page(admin)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/settings/users/")
    page.get_by_role("link", name="ola").click()
    expect(page.locator("h1")).to_contain_text("Ola Nowak")

    # when the admin makes her a seller
    page.get_by_label("Role").select_option(SALES)
    page.get_by_role("button", name="Save").click()
    # then the page says so, and the history records it
    expect(page.locator("#toasts")).to_contain_text("role Marketer → Sales")
    expect(page.get_by_test_id("user-history")).to_contain_text("Role Marketer → Sales")
    assert roles_of(type(ola).objects.get(pk=ola.pk)) == {SALES}
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "user-edit-admin-1440.png"), full_page=True)

    # when the admin deactivates her, a dialog asks first
    page.get_by_role("button", name="Deactivate").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("Deactivate ola?")
    dialog.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_test_id("deactivated")).to_be_visible()
    # then her open session has ended: the next page she opens is the login page
    ola_page.goto(f"{live_server.url}/contacts/")
    expect(ola_page).to_have_url(re.compile(r"/login/\?next="))
    # and she cannot sign in again
    _sign_in(ola_page, live_server, "ola", PASSWORD)
    expect(ola_page.locator(".alert-danger")).to_be_visible()
    expect(ola_page).to_have_url(re.compile(r"/login/"))

    # when the admin reactivates her and emails her a password reset link
    page.get_by_role("button", name="Reactivate").click()
    expect(page.locator("#toasts")).to_contain_text("ola can sign in again.")
    page.get_by_role("button", name="Send a password reset link").click()
    expect(page.locator("#toasts")).to_contain_text("A one-time password reset link was emailed to ola@shop.pl.")
    # then the email reached the SMTP server with the link
    wait_for(lambda: smtp_inbox.messages, timeout=15, message="the reset email")
    assert smtp_inbox.recipients == [["ola@shop.pl"]]
    assert smtp_inbox.messages[0]["Subject"] == "Marketing Hub: choose a new password"
    link = re.search(r"http://\S+/reset/\S+/", smtp_inbox.text(0)).group(0)
    assert link.startswith(live_server.url)
    # when she follows it and chooses a new password
    ola_page.goto(link)
    expect(ola_page.locator("h1")).to_have_text("Choose a new password")
    ola_page.screenshot(path=str(SHOTS / "password-reset-confirm-390.png"), full_page=True)
    ola_page.get_by_label("New password", exact=True).fill("Zielona-Herbata-77")
    ola_page.get_by_label("New password confirmation").fill("Zielona-Herbata-77")
    ola_page.get_by_role("button", name="Set the password").click()
    expect(ola_page.locator("h1")).to_have_text("Password set")
    # then she signs in with it, as a seller now
    _sign_in(ola_page, live_server, "ola", "Zielona-Herbata-77")
    ola_page.wait_for_url(f"{live_server.url}/")
    expect(ola_page.locator(".user-role")).to_have_text(SALES)
    # and the link does not work twice
    ola_page.goto(link)
    expect(ola_page.locator("h1")).to_have_text("This link no longer works")
    # and the admin sees the whole story on her page
    page.reload()
    history = page.get_by_test_id("user-history")
    for line in ("Password changed", "Password reset link sent", "Reactivated", "Deactivated", "Role Marketer → Sales"):
        expect(history).to_contain_text(line)
    page.screenshot(path=str(SHOTS / "user-edit-history-1440.png"), full_page=True)
    ola_browser.close()
