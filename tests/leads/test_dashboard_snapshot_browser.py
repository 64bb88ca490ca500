"""Browser: a dashboard whose stored figures are old shows them at once and says newer ones are
being computed, in the reader's language, for every role that opens it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from core.roles import ADMIN, MARKETER, SALES
from leads.dashboard import dashboard_refresh
from leads.models import DashboardSnapshot
from marketing_hub.models import UserPreference
from tests.conftest import shot
from tests.factories import ContactFactory, UserFactory, give_tag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UPDATING = {"en": "Newer figures are being computed", "pl": "Nowsze dane są właśnie liczone"}


@pytest.mark.parametrize(("role", "language"), [(MARKETER, "en"), (SALES, "pl"), (ADMIN, "en")])
def test_old_figures_are_shown_and_said_to_be_updating(live_server, login_page, role, language):
    # given figures computed ten minutes ago for three contacts
    for score in (0, 40, 400):
        give_tag(ContactFactory(score=score), "kurtki", 2)
    dashboard_refresh()
    DashboardSnapshot.objects.update(computed_at=timezone.now() - timedelta(minutes=10))
    user = UserFactory(username=f"reader-{role}", role=role)
    UserPreference.objects.create(user=user, language=language)
    page = login_page(user)
    # when the dashboard opens
    page.goto(f"{live_server.url}/")
    # then the stored figures are there, with the note that newer ones are coming
    expect(page.get_by_test_id("figures-updating")).to_contain_text(UPDATING[language])
    expect(page.locator(".stat-card .stat-value").first).to_have_text("3")
    shot(page, f"dashboard-updating-{role}-{language}", widths=(1440, 390))
