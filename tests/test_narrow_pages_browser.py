"""Browser: on a 390 px phone no main page scrolls sideways, in English and in Polish, whoever looks
(the dashboard and its charts, the contact card with a long e-mail and a "why hot" summary, the segment
editor, Hot leads, Contacts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import Rule
from core.roles import ADMIN, MARKETER, SALES
from leads.models import TemperatureSettings
from tests.conftest import shot
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.leads.factories import give_points
from tests.segments.factories import make_segment

WIDTH = 390
# What sticks out past the right edge while its parent does not: where the overflow starts.
OVERFLOWING = """() => {
    const out = el => el.getClientRects().length && el.getBoundingClientRect().right > window.innerWidth + 1;
    return [...document.querySelectorAll('body *')].filter(el => out(el) && !out(el.parentElement))
        .slice(0, 6).map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ` +
                               `width=${Math.round(el.getBoundingClientRect().width)} ` +
                               `"${el.textContent.trim().replace(/\\s+/g, ' ').slice(0, 40)}"`);
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_main_pages_do_not_scroll_sideways_on_a_phone(live_server, login_page):
    # given a hot lead with a long e-mail whose points came from two rules, and a nested segment
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    jackets = Rule.objects.create(name="Viewed winter jackets in the outlet", event_type="product_view", actions=[])
    cart = Rule.objects.create(name="Added an expensive item to the cart", event_type="add_to_cart", actions=[])
    lead = ContactFactory(email="katarzyna.wisniewska.nowakowska.zakupy@przykladowysklepinternetowy.pl",
                          first_name="Katarzyna", last_name="Wiśniewska-Nowakowska",
                          last_activity_at=timezone.now() - timedelta(days=35))
    give_points(lead, 30, 30, 30, rule_id=jackets.pk)
    give_points(lead, 40, rule_id=cart.pk)
    give_tag(lead, "kurtki-zimowe-premium", 4)
    segment = make_segment({"any": [
        {"all": [{"type": "tag_score", "tag": "kurtki-zimowe-premium", "op": "gte", "value": 3},
                 {"type": "consent", "channel": "email", "value": True}]},
        {"all": [{"type": "score", "op": "gte", "value": 100}, {"not": {"type": "inactive_days", "value": 365}}]},
    ]}, name="Kurtki zimowe: zaangażowani klienci z zgodą")
    # and one three groups deep with the widest conditions (an event count with a property filter)
    deep = make_segment({"all": [{"any": [{"all": [
        {"type": "event_count", "event_type": "product_view", "within_days": 30, "op": "gte", "value": 5,
         "where": [{"property": "category_of_the_viewed_product", "op": "eq", "value": "kurtki-zimowe-premium"}]},
        {"type": "attribute", "name": "properties.preferred_store_location", "op": "contains", "value": "Warszawa"},
        {"type": "age", "op": "between", "value": [25, 35]},
        {"type": "segment", "segment_id": segment.pk},
    ]}, {"type": "purchase_total", "within_days": 365, "op": "gte", "value": 1000}]}]}, name="Deep")
    pages = {"dashboard": "/", "card": f"/contacts/{lead.pk}/", "hot-leads": "/leads/hot/", "contacts": "/contacts/",
             "segment-new": "/segments/new/", "segment-edit": f"/segments/{segment.pk}/edit/",
             "segment-edit-deep": f"/segments/{deep.pk}/edit/", "segments": "/segments/", "tags": "/contacts/tags/"}
    too_wide: list[tuple] = []
    for role in (ADMIN, MARKETER, SALES):
        page = login_page(UserFactory(username=f"narrow-{role}", role=role))
        page.set_viewport_size({"width": WIDTH, "height": 844})
        for language in ("en", "pl"):
            page.context.set_extra_http_headers({"Accept-Language": language})
            for name, path in pages.items():
                if role == SALES and (name.startswith("segment-") or name == "tags"):
                    continue  # sales people read segments, they do not edit them; tags are the marketers'
                # when they open the page on a phone
                response = page.goto(f"{live_server.url}{path}")
                assert response is not None and response.ok, (role, path)
                page.wait_for_load_state("networkidle")
                page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
                shot(page, f"{name}-{role}-{language}-{WIDTH}")
                if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                    too_wide.append((role, language, path, page.evaluate(OVERFLOWING)))
                if name == "tags":  # and the tags table is cards, not a table scrolling inside its box
                    assert page.evaluate("[...document.querySelectorAll('.table-wrap')].every("
                                         "w => w.scrollWidth <= w.clientWidth + 1)"), (role, language, path)
                if name == "hot-leads":  # and the lead's last activity is said in the page's language
                    activity = page.locator(f"#lead-{lead.pk} .lead-activity").inner_text().replace("\xa0", " ")
                    assert ("aktywny 1 miesiąc temu" if language == "pl" else "active 1 month ago") in activity
                # and a number in a table turned into cards reads after its label, left-aligned
                number_cells = page.locator(".table-cards td.num")
                if number_cells.count():
                    assert number_cells.first.evaluate("td => getComputedStyle(td).textAlign") == "left", path
        page.context.clear_cookies()
    # then nothing sticks out sideways
    assert not too_wide, "\n".join(map(str, too_wide))
