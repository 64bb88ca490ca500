"""Browser: a sales user works a lead on the Hot leads page; an admin tunes the thresholds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from contacts.models import Contact, Note
from core.roles import ADMIN, SALES
from leads.models import TemperatureSettings
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.leads.factories import give_points

SHOTS = Path("/tmp/shots")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sales_claims_contacts_and_finds_the_lead_under_mine(live_server, login_page):
    # given hot leads, one of them held by a colleague
    colleague = UserFactory(username="colleague", first_name="Anna", last_name="Nowak", role=SALES)
    lead = ContactFactory(email="jan.kowalski@example.com", first_name="Jan", last_name="Kowalski")
    held = ContactFactory(email="held@example.com", owner=colleague)
    for contact, points in ((lead, 150), (held, 120)):
        give_points(contact, points)
        give_tag(contact, "kurtki", 4)
    sales = UserFactory(username="seller", role=SALES)
    page = login_page(sales)
    # when they open Hot leads
    page.goto(f"{live_server.url}/leads/hot/")
    row = page.locator(f"#lead-{lead.pk}")
    expect(row).to_contain_text("Unassigned")
    # and they see who holds the other one
    expect(page.locator(f"#lead-{held.pk}")).to_contain_text("Anna Nowak")
    _shot(page, "hot-leads-sales")
    # when they claim the lead (no reload: the row is swapped)
    row.get_by_role("button", name="Claim").click()
    expect(page.locator(f"#lead-{lead.pk}")).to_contain_text("You")
    # and mark it contacted with a note
    row = page.locator(f"#lead-{lead.pk}")
    row.locator("select[name=status]").select_option("contacted")
    row.locator("input[name=note]").fill("Called, interested in winter jackets")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(f"#lead-{lead.pk}")).to_contain_text("Called, interested in winter jackets")
    expect(page.locator(".toast").last).to_contain_text("marked contacted")
    # then under "mine" the lead is there, and the colleague's is not
    page.locator("#id_owner").select_option("mine")
    expect(page).to_have_url(re.compile(r"owner=mine"))
    expect(page.locator("#results tbody tr")).to_have_count(1)
    expect(page.locator(f"#lead-{lead.pk}")).to_contain_text("Contacted")
    _shot(page, "hot-leads-mine")
    stored = Contact.objects.get(pk=lead.pk)
    assert (stored.owner_id, stored.lead_status) == (sales.pk, "contacted")
    assert Note.objects.get(contact=lead).author == sales


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_previews_counts_then_saves_thresholds(live_server, login_page):
    # given contacts with scores 10, 60, 60 and 150 (defaults: warm 50, hot 100)
    for score in (10, 60, 60, 150):
        ContactFactory(score=score)
    page = login_page(UserFactory(username="boss", role=ADMIN))
    page.goto(f"{live_server.url}/leads/settings/")
    expect(page.locator('[data-preview="hot"] [data-count]')).to_have_text("1")
    # when the admin types a lower hot threshold
    page.fill("#id_hot", "55")
    # then the preview shows what it would give before anything is saved
    expect(page.locator('[data-preview="hot"] [data-count]')).to_have_text("3")
    expect(page.locator('[data-preview="warm"] [data-count]')).to_have_text("0")
    assert TemperatureSettings.current().hot == 100
    _shot(page, "temperature-settings-preview")
    # when they save
    page.get_by_role("button", name="Save thresholds").click()
    expect(page.locator(".toast").first).to_contain_text("hot from 55")
    assert TemperatureSettings.current().hot == 55
