"""The main flow in a real browser: a marketer builds
``(tag kurtki ≥ 3 AND email consent) OR (score ≥ 100 AND NOT inactive 365 days)`` with nested
groups, watches the live count at every step, saves, and finds the segment with that count in
the list."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Contact
from segments import views as segment_views
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import consent, make_segment

SHOTS = Path(os.environ.get("SHOTS_DIR", "/tmp/shots"))


def _contact(email: str, *, score: int = 0, active_days_ago: int | None = None) -> Contact:
    last = timezone.now() - dt.timedelta(days=active_days_ago) if active_days_ago is not None else None
    return ContactFactory(email=email, score=score, last_activity_at=last)


@pytest.fixture
def shop():
    ala = _contact("ala@example.com", score=10)
    give_tag(ala, "kurtki", 5)
    consent(ala, "email", True)
    bartek = _contact("bartek@example.com", score=20, active_days_ago=0)
    give_tag(bartek, "kurtki", 4)
    _contact("celina@example.com", score=150, active_days_ago=10)
    _contact("dawid@example.com", score=150, active_days_ago=400)
    ewa = _contact("ewa@example.com", score=200, active_days_ago=1)
    give_tag(ewa, "Kurtki", 3)
    consent(ewa, "email", True)
    _contact("filip@example.com")
    _contact("gosia@example.com", score=120)


def _choose_type(page, path: str, leaf_type: str) -> None:
    """Pick a new row's condition type once htmx has settled the row (it takes the focus)."""
    select = page.locator(f'select[name="{path}.type"]')
    expect(select).to_be_focused()
    select.select_option(leaf_type)


def _settled(page) -> None:
    """Wait until htmx has no request in flight and has finished settling the last swap: a swapped
    row takes the focus (autofocus) when it settles, and keys pressed before that go to it."""
    # A locator, not wait_for_function: a predicate string is evaluated in the page, which our CSP
    # (no 'unsafe-eval') refuses at times.
    expect(page.locator(".htmx-request, .htmx-settling, .htmx-swapping")).to_have_count(0)
    page.wait_for_timeout(50)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_builds_nested_segment_with_live_count(live_server, login_page, marketer, shop):
    page = login_page(marketer)
    count = page.locator("[data-testid=live-count] .num")

    # given the builder, emptied of its starter row: no conditions match everyone with email
    # consent (the "for sending" switch is on by default) …
    page.goto(f"{live_server.url}/segments/new/")
    page.get_by_role("button", name="Remove this condition").click()
    expect(count).to_have_text("2")
    # … and everyone once the switch is off (this segment states its consent condition itself)
    page.get_by_label("For sending: exclude contacts without email consent").uncheck()
    expect(count).to_have_text("7")

    # when the root becomes ANY (OR): an empty OR matches nobody
    page.select_option('select[name="r.join"]', "any")
    expect(count).to_have_text("0")

    # and a nested ALL group gets "tag kurtki score ≥ 3"
    page.locator("#node-r > .seg-group-actions").get_by_role("button", name="Group").click()
    tag = page.locator('input[name="r-0-0.tag"]')
    expect(page.locator('select[name="r-0-0.type"]')).to_be_focused()
    tag.fill("kurtki")
    expect(count).to_have_text("3")

    # and "AND email consent given" in that group
    page.locator("#node-r-0 > .seg-group-actions").get_by_role("button", name="Condition").click()
    _choose_type(page, "r-0-1", "consent")
    expect(page.locator('input[name="r-0-1.channel"]')).to_have_value("email")
    expect(count).to_have_text("2")

    # and a second group: contact score ≥ 100
    page.locator("#node-r > .seg-group-actions").get_by_role("button", name="Group").click()
    _choose_type(page, "r-1-0", "score")
    expect(page.locator('input[name="r-1-0.value"]')).to_have_value("100")
    expect(count).to_have_text("5")

    # and in it "inactive for 365 days" …
    page.locator("#node-r-1 > .seg-group-actions").get_by_role("button", name="Condition").click()
    _choose_type(page, "r-1-1", "inactive_days")
    expect(page.locator('input[name="r-1-1.value"]')).to_have_value("365")
    expect(count).to_have_text("4")

    # … negated with the keyboard (once the retyped row has settled and taken the focus)
    _settled(page)
    page.locator('input[name="r-1-1.negate"]').focus()
    page.keyboard.press("Space")
    expect(count).to_have_text("3")
    expect(page.locator(".preview-sentence")).to_contain_text("were active in the last 365 days")
    _shot(page, "segments-builder")

    # then saving shows the segment, and the list has it with the same count
    page.fill("#id_name", "Kurtki or engaged high scorers")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("h1")).to_contain_text("Kurtki or engaged high scorers")
    page.goto(f"{live_server.url}/segments/")
    row = page.locator("tr", has_text="Kurtki or engaged high scorers")
    expect(row.locator("[data-testid=segment-count]")).to_have_text("3")
    _shot(page, "segments-list")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_edit_survives_a_slow_live_count_and_the_late_count_is_dropped(
        live_server, login_page, marketer, shop, monkeypatch):
    """A live count that starts while an edit is under way must neither cancel the edit nor, when
    it arrives after the edit, put back the count of conditions that are gone."""
    segment = make_segment({"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}, name="Kurtki fans")
    delays = {"preview": 0.0, "editor": 0.0}
    preview_path = reverse("segments:builder_preview")
    counted = segment_views._preview_context

    def slow_preview_context(root, request, segment):
        time.sleep(delays["preview" if request.path == preview_path else "editor"])
        return counted(root, request, segment)

    monkeypatch.setattr(segment_views, "_preview_context", slow_preview_context)
    page = login_page(marketer)
    count = page.locator("[data-testid=live-count] .num")
    page.goto(f"{live_server.url}/segments/{segment.pk}/edit/")
    expect(count).to_have_text("3")

    # when a count (1.5 s) starts 0.4 s after a keystroke, while the removal of the only condition
    # (1 s) is under way …
    delays.update(preview=1.5, editor=1.0)
    page.fill("#id_description", "jackets")
    page.get_by_role("button", name="Remove this condition").click()

    # … the removal lands, with everyone's count (nobody has email consent switched off here) …
    expect(page.locator('select[name$=".type"]')).to_have_count(0, timeout=5000)
    expect(count).to_have_text("7", timeout=5000)
    # … and the late count of the removed condition (3) never replaces it
    for _ in range(8):
        page.wait_for_timeout(500)
        expect(count).to_have_text("7", timeout=1)
