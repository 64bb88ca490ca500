"""Browser: a sales user sees why each lead is hot on the Hot leads list and on the card's header,
on a laptop and on a phone (where the table becomes one card per lead)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from automation.models import Rule
from core.roles import SALES
from leads.models import TemperatureSettings
from tests.conftest import shot
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.leads.factories import give_points


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sales_sees_why_hot_on_the_list_and_the_card(live_server, login_page):
    # given a hot lead whose points came from two rules and a manual change
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    jackets = Rule.objects.create(name="Viewed jackets", event_type="product_view", actions=[])
    cart = Rule.objects.create(name="Added to cart", event_type="add_to_cart", actions=[])
    lead = ContactFactory(email="jan@example.com", first_name="Jan", last_name="Kowalski")
    give_points(lead, 30, 30, 30, rule_id=jackets.pk)
    give_points(lead, 40, rule_id=cart.pk)
    give_points(lead, 5, reason="Manual")
    give_tag(lead, "kurtki", 4)
    sales = UserFactory(username="seller", role=SALES)
    page = login_page(sales)
    page.set_viewport_size({"width": 1440, "height": 900})
    # when they open Hot leads
    page.goto(f"{live_server.url}/leads/hot/")
    why = page.locator(f"#lead-{lead.pk} [data-testid=lead-why] li")
    # then the "why" column lists the top causes, most points first
    expect(why).to_have_count(3)
    expect(why.nth(0)).to_contain_text("Viewed jackets")
    expect(why.nth(0)).to_contain_text("+90")
    expect(why.nth(1)).to_contain_text("Added to cart")
    shot(page, "hot-leads-why-1440")
    # and the table fits the laptop screen without sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # on a phone each lead is a card and Claim is on screen without scrolling sideways
    page.set_viewport_size({"width": 390, "height": 844})
    claim = page.locator(f"#lead-{lead.pk}").get_by_role("button", name="Claim")
    claim.scroll_into_view_if_needed()
    box = claim.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "hot-leads-why-390")
    claim.click()
    expect(page.locator(f"#lead-{lead.pk}")).to_contain_text("You")
    # and the card's header says the score, the temperature, the owner and why
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/contacts/{lead.pk}/")
    expect(page.get_by_test_id("contact-score")).to_have_text("135")
    expect(page.get_by_test_id("contact-owner")).to_contain_text(sales.get_full_name() or sales.username)
    header_why = page.get_by_test_id("card-why")
    expect(header_why).to_contain_text("Why hot:")
    expect(header_why).to_contain_text("Viewed jackets +90")
    shot(page, "card-header-why-1440")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "card-header-why-390")
