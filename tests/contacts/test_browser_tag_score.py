"""Browser: a marketer sorts the contact list by one tag's score, and types a tag score on the card."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from contacts.models import ContactTag, TagScoreChange
from tests.conftest import shot
from tests.factories import ContactFactory, give_tag


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_sorts_contacts_by_the_kurtki_score(live_server, login_page, marketer):
    # given contacts with kurtki 2, 9 and 5, and one without kurtki but the highest lead score
    for email, kurtki, score in (("two@example.com", 2, 10), ("nine@example.com", 9, 20), ("five@example.com", 5, 30)):
        give_tag(ContactFactory(email=email, score=score), "kurtki", kurtki)
    give_tag(ContactFactory(email="boots@example.com", score=500), "buty", 40)
    page = login_page(marketer)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/contacts/")
    # when the marketer types the tag and picks its score in the Sort select
    page.fill("input[name=tag]", "kurtki")
    expect(page.get_by_test_id("result-count")).to_have_text("3 contacts")
    sort = page.get_by_test_id("sort-select")
    expect(sort.locator("option[value='tag:kurtki']")).to_have_text("“kurtki” score, highest first")
    sort.select_option("tag:kurtki")
    # then the rows come highest kurtki score first, with the score in its own column
    expect(page.get_by_test_id("sort-tag-score")).to_have_text(["9", "5", "2"])
    expect(page.get_by_test_id("sort-tag-note")).to_contain_text("highest “kurtki” score first")
    assert "sort=tag%3Akurtki" in page.url or "sort=tag:kurtki" in page.url  # a shareable URL
    shot(page, "contacts-sorted-by-kurtki", widths=(1440, 390))
    # and a tag chip in a row sorts by that tag in one click
    page.goto(f"{live_server.url}/contacts/")
    page.locator("a.chip-link", has_text="buty").first.click()
    expect(page.get_by_test_id("sort-tag-score")).to_have_text(["40"])
    expect(page.get_by_test_id("sort-select")).to_have_value("tag:buty")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_types_a_tag_score_on_the_card(live_server, login_page, marketer):
    # given kurtki at 3
    contact = ContactFactory(email="anna@example.com", first_name="Anna", last_name="Nowak")
    give_tag(contact, "kurtki", 3)
    page = login_page(marketer)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    # when the marketer clicks the score and types 12
    chip = page.locator("[data-tag=kurtki]")
    chip.get_by_test_id("tag-score").click()
    field = chip.get_by_label("New score of kurtki")
    expect(field).to_be_visible()
    shot(page, "card-typed-tag-score", widths=(1440, 390))
    field.fill("12")
    field.press("Enter")
    # then one request sets it, the chip shows it, and the toast says so
    expect(page.locator("[data-tag=kurtki] [data-testid=tag-score]")).to_have_text("12")
    expect(page.locator(".toast").last).to_contain_text("kurtki: set to 12.")
    assert ContactTag.objects.get(contact=contact).score == 12
    assert list(TagScoreChange.objects.filter(contact=contact, source="manual").values_list("delta", flat=True)) == [9]
