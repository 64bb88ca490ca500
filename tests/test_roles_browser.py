"""Each role signs in through the real login form and sees only the navigation it may use."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.roles import ADMIN, MARKETER, SALES
from tests.factories import UserFactory

EXPECTED_NAVIGATION = {
    MARKETER: ["Dashboard", "Contacts", "Tags", "Segments", "Rules", "Hot leads", "Funnels", "Loyalty", "Jobs"],
    SALES: ["Dashboard", "Contacts", "Hot leads", "Funnels"],
    ADMIN: ["Dashboard", "Contacts", "Tags", "Segments", "Rules", "Hot leads", "Funnels", "Loyalty", "Jobs", "Settings"],
}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", [MARKETER, SALES, ADMIN])
def test_role_sees_only_its_navigation(live_server, login_page, role):
    # given a user of the role
    user = UserFactory(username=f"nav_{role.lower()}", role=role)
    # when they sign in
    page = login_page(user)
    # then the sidebar lists exactly that role's areas, and the user menu names the role
    nav = page.locator("nav.nav a")
    expect(nav).to_have_text(EXPECTED_NAVIGATION[role])
    expect(page.locator(".user-role")).to_have_text(role)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sales_gets_403_on_an_admin_page(live_server, login_page):
    # given a signed-in sales user
    page = login_page(UserFactory(username="nav_sales_403", role=SALES))
    # when they open an admin URL directly
    response = page.goto(f"{live_server.url}/settings/api-keys/")
    # then the server refuses
    assert response.status == 403
    expect(page.locator("h1")).to_contain_text("not allowed")
