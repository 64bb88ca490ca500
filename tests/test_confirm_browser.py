"""Destructive actions ask first, in the app's own dialog: Cancel keeps things as they were,
confirming does it (segment delete, API key revoke)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.models import ApiKey
from core.roles import ADMIN, MARKETER
from segments.models import Segment
from tests.factories import UserFactory
from tests.segments.factories import make_segment

SHOTS = Path(os.environ.get("SHOTS_DIR", "/tmp/shots")) / "helper_b"


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_segment_delete_asks_first(live_server, login_page):
    # given a marketer on a segment's page
    segment = make_segment({"all": []}, name="Lapsed buyers")
    page = login_page(UserFactory(username="confirm_marketer", role=MARKETER))
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    dialog = page.get_by_test_id("confirm-dialog")
    # when they click Delete, a dialog asks
    page.get_by_test_id("segment-delete").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete the segment “Lapsed buyers”?")
    _shot(page, "confirm-segment-delete-1440")
    # and Cancel keeps the segment
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.reload()
    expect(page.locator("h1")).to_contain_text("Lapsed buyers")
    assert Segment.objects.filter(pk=segment.pk).exists()
    # when they confirm, it is deleted
    page.get_by_test_id("segment-delete").click()
    dialog.get_by_role("button", name="Delete segment").click()
    page.wait_for_url(f"{live_server.url}/segments/")
    expect(page.locator("#toasts")).to_contain_text("Segment “Lapsed buyers” deleted.")
    assert not Segment.objects.filter(pk=segment.pk).exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_api_key_revoke_asks_first(live_server, login_page):
    # given the shop's ingest key
    api_key, _ = ApiKey.issue(name="Shop website", scope=ApiKey.SCOPE_INGEST)
    page = login_page(UserFactory(username="confirm_admin", role=ADMIN))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/settings/api-keys/")
    row = page.locator("tr", has_text="Shop website")
    dialog = page.get_by_test_id("confirm-dialog")
    # when the admin clicks Revoke, a dialog says what it cuts
    row.get_by_role("button", name="Revoke").click()
    expect(dialog).to_contain_text("the shop’s events stop arriving")
    _shot(page, "confirm-key-revoke-390")
    # Escape (like Cancel) keeps the key
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.reload()
    expect(page.locator("tr", has_text="Shop website").get_by_role("button", name="Revoke")).to_be_visible()
    api_key.refresh_from_db()
    assert api_key.is_active
    # when confirmed, the key is revoked
    page.locator("tr", has_text="Shop website").get_by_role("button", name="Revoke").click()
    dialog.get_by_role("button", name="Revoke key").click()
    expect(page.locator("tr", has_text="Shop website")).to_contain_text("revoked")
    api_key.refresh_from_db()
    assert not api_key.is_active
