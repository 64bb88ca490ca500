from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from loyalty.models import Program, Tier, TierChange
from loyalty.services import tier_pin
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.loyalty.factories import make_program
from tests.loyalty.test_browser_thresholds import shot


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_shots(live_server, login_page):
    contacts = []
    for i in range(30):
        c = ContactFactory()
        if i % 5:
            give_tag(c, "PURCHASE", i % 14)
        contacts.append(c)
    program = make_program(tiers=[("Bronze", 0, {"discount_percent": 5}), ("Silver", 6, {"discount_percent": 7, "free_shipping": True}), ("Gold", 10, {"discount_percent": 10, "gift": "Tote bag"})],
                           downgrade_policy=Program.Downgrade.GRACE, grace_days=30)
    make_program("Big spenders", metric={"type": "purchase_total", "within_days": 365}, tiers=[("VIP", 1000, {"text": "Personal shopper"})])
    now = timezone.now()
    for d in range(20):
        for k in range(d % 4):
            TierChange.objects.create(program=program, contact=contacts[k], from_tier="Bronze", to_tier="Silver", direction=1, reason="New events", created_at=now - timedelta(days=d))
        if d % 3 == 0:
            TierChange.objects.create(program=program, contact=contacts[5], from_tier="Silver", to_tier="Bronze", direction=-1, reason="New events", created_at=now - timedelta(days=d))
    admin = UserFactory(username="boss", role="Admin", first_name="Alicja", last_name="Nowak")
    tier_pin(program, contacts[3], Tier.objects.get(program=program, name="Gold"), until=timezone.localdate() + timedelta(days=20), user=admin, note="Goodwill after a complaint")
    page = login_page(admin)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/loyalty/")
    shot(page, "list")
    page.goto(f"{live_server.url}/loyalty/{program.pk}/")
    page.wait_for_timeout(1500)
    shot(page, "detail")
    page.goto(f"{live_server.url}/loyalty/{program.pk}/edit/")
    expect(page.get_by_test_id("preview-unchanged")).to_be_visible()
    page.fill("input[name='tiers-2-min']", "12")
    page.wait_for_timeout(1500)
    shot(page, "editor")
    page.click("[data-add-tier]")
    page.fill("input[name='tiers-3-name']", "Platinum")
    page.fill("input[name='tiers-3-min']", "11")
    page.wait_for_timeout(1500)
    shot(page, "editor-invalid-preview")
    page.get_by_test_id("save").click()
    page.wait_for_timeout(500)
    shot(page, "editor-invalid")
    page.goto(f"{live_server.url}/contacts/{contacts[3].pk}/")
    page.wait_for_timeout(2000)
    shot(page, "card")
    page.goto(f"{live_server.url}/loyalty/new/")
    page.wait_for_timeout(1000)
    shot(page, "create")
