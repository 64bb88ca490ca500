"""Browser: Plotly is a vendored partial bundle, fetched only by pages that show a chart, after the
page has loaded, and it draws the chart."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.roles import MARKETER
from tests.factories import ContactFactory, UserFactory, give_tag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _scripts_fetched(page) -> list[str]:
    return page.evaluate("performance.getEntriesByType('resource').map(r => r.name)")


def test_a_page_with_a_chart_loads_the_partial_bundle_after_the_page_and_draws_it(live_server, login_page):
    # given a contact with tags (the card charts their scores)
    contact = ContactFactory(email="anna@example.com")
    give_tag(contact, "kurtki", 4)
    give_tag(contact, "buty", 2)
    page = login_page(UserFactory(username="marta", role=MARKETER))
    # when the card is opened
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    # then the chart is drawn, by the vendored partial bundle, fetched after the load event
    expect(page.locator("[data-chart].js-plotly-plot")).to_have_count(1)
    expect(page.locator("[data-chart] .barlayer .point")).to_have_count(2)
    timing = page.evaluate("""() => ({
        loaded: performance.getEntriesByType('navigation')[0].loadEventStart,
        plotly: performance.getEntriesByType('resource').filter(r => r.name.includes('plotly')).map(
            r => ({name: r.name, start: r.startTime}))})""")
    assert [entry["name"].rsplit("/", 1)[1] for entry in timing["plotly"]] == ["plotly-finance-4.1.0.min.js"]
    assert timing["plotly"][0]["start"] >= timing["loaded"]


def test_a_page_without_a_chart_never_fetches_plotly(live_server, login_page):
    # given contacts to list
    ContactFactory(email="anna@example.com")
    page = login_page(UserFactory(username="marta", role=MARKETER))
    # when the contact list is opened (no chart on it)
    page.goto(f"{live_server.url}/contacts/")
    expect(page.get_by_test_id("result-count")).to_contain_text("1 contact")
    page.wait_for_load_state("networkidle")
    # then no Plotly was fetched at all
    assert not [name for name in _scripts_fetched(page) if "plotly" in name]



SHORT_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "pl": ["sty", "lut", "mar", "kwi", "maj", "cze", "lip", "sie", "wrz", "paź", "lis", "gru"],
}


@pytest.mark.parametrize(("language", "other"), [("pl", "en"), ("en", "pl")])
def test_chart_dates_are_written_in_the_readers_language(live_server, login_page, ingest_api, language, other):
    # given views on each of the last ten days, and a marketer who reads the site in one language
    from datetime import timedelta

    from django.utils import timezone

    from marketing_hub.models import UserPreference
    from tests.automation.factories import event

    now = timezone.now()
    response = ingest_api.post("/api/v1/events", json={"events": [
        event(occurred_at=now - timedelta(days=day, minutes=5)) for day in range(10)]})
    assert response.status_code == 202
    user = UserFactory(username="marta", role=MARKETER)
    UserPreference.objects.create(user=user, language=language)
    page = login_page(user)
    # when the dashboard draws its events-over-time chart
    page.goto(f"{live_server.url}/")
    page.locator("[data-chart=chart-events]").scroll_into_view_if_needed()
    ticks = page.locator("[data-chart=chart-events].js-plotly-plot .xtick text")
    expect(ticks.first).to_be_visible()
    words = set(" ".join(ticks.all_text_contents()).replace("\n", " ").split())
    # then its dates name the months in the reader's language, never in the other one
    shown = {timezone.localdate(now - timedelta(days=day)).month - 1 for day in range(10)}
    assert words & {SHORT_MONTHS[language][month] for month in shown}, words
    assert not words & (set(SHORT_MONTHS[other]) - set(SHORT_MONTHS[language])), words
