"""Browser: a funnel report whose stored figures are old shows them at once and says newer ones
are being computed; a year never computed says it is being computed and shows the figures by
itself once the worker has stored them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from core.roles import MARKETER
from leads.funnels import funnel_report_snapshot_refresh, funnel_report_snapshots_refresh
from leads.models import FunnelReportSnapshot
from tests.conftest import shot
from tests.factories import ContactFactory, UserFactory
from tests.leads.factories import funnel_with_stages
from tests.leads.test_funnel_report_figures import _move_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def funnel():
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "MQL", "Customer"))
    now = timezone.now()
    contacts = [ContactFactory().pk for _ in range(6)]
    _move_at(now - timedelta(days=20), contacts, "New")
    _move_at(now - timedelta(days=12), contacts[:4], "Engaged")
    _move_at(now - timedelta(days=5), contacts[:2], "MQL")
    _move_at(now - timedelta(days=1), contacts[:1], "Customer")
    return funnel


def test_old_figures_are_shown_and_said_to_be_updating(live_server, login_page, funnel):
    # given 30-day figures computed ten minutes ago
    funnel_report_snapshot_refresh(funnel, "30")
    FunnelReportSnapshot.objects.update(computed_at=timezone.now() - timedelta(minutes=10))
    page = login_page(UserFactory(username="reader", role=MARKETER))
    # when the report opens on the last 30 days
    page.goto(f"{live_server.url}/leads/funnels/{funnel.pk}/?range=30")
    # then the stored figures are there, with when they are from and that newer ones are coming
    expect(page.get_by_test_id("figures-updating")).to_contain_text("Newer figures are being computed")
    expect(page.get_by_test_id("figures-as-of")).to_contain_text("Figures as of")
    expect(page.locator("tr[data-stage='New'] td.num").nth(1)).to_have_text("6")
    shot(page, "funnel-report-updating-marketer", widths=(1440, 390))


def test_a_year_never_computed_appears_by_itself(live_server, login_page, funnel):
    # given no snapshot of the last year
    page = login_page(UserFactory(username="reader", role=MARKETER))
    # when the report opens on the last 365 days
    page.goto(f"{live_server.url}/leads/funnels/{funnel.pk}/?range=365")
    expect(page.get_by_test_id("figures-computing")).to_be_visible()
    shot(page, "funnel-report-computing-marketer", widths=(1440, 390))
    # and the worker stores them (the test runs its task body)
    funnel_report_snapshots_refresh(funnel.pk)
    # then the page's poll shows them without a reload
    expect(page.locator("tr[data-stage='Engaged'] td.num").nth(1)).to_have_text("4", timeout=10_000)
    expect(page.get_by_test_id("figures-as-of")).to_contain_text("Figures as of")
