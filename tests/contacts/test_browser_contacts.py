"""Browser flows of the contacts area (Playwright on the system Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from contacts.models import Contact, ContactTag, Tag
from tests.conftest import shot
from tests.factories import ContactFactory, give_tag


def chip_names(page) -> list[str]:
    return page.locator("[data-testid=tag-chips] .chip .chip-name").all_inner_texts()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_filters_opens_a_card_and_edits_tags(live_server, login_page, marketer):
    # given two Kraków contacts with tags and one in Berlin
    anna = ContactFactory(email="anna.nowak@example.com", first_name="Anna", last_name="Nowak", city="Kraków", score=40)
    give_tag(anna, "sukienki", 3)
    give_tag(anna, "Sport", 1)
    ContactFactory(email="piotr@example.com", first_name="Piotr", last_name="Zając", city="Kraków")
    ContactFactory(email="hans@example.de", first_name="Hans", city="Berlin", country="DE")
    page = login_page(marketer)
    # when the marketer filters the list by city and a name
    page.goto(f"{live_server.url}/contacts/")
    page.fill("input[name=city]", "kraków")
    expect(page.get_by_test_id("result-count")).to_have_text("2 contacts")
    page.fill("input[name=q]", "nowak")
    expect(page.get_by_test_id("result-count")).to_have_text("1 contact")
    assert "city=" in page.url and "q=nowak" in page.url  # a shareable URL
    shot(page, "contacts-list-filtered")
    # and opens the card
    page.get_by_role("link", name="Anna Nowak").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Anna Nowak")
    assert chip_names(page) == ["sukienki", "Sport"]
    # and adds a tag with score 2
    page.fill("#add-tag-name", "kurtki")
    page.fill("#add-tag-score", "2")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("[data-tag=kurtki] [data-testid=tag-score]")).to_have_text("2")
    # and bumps it twice: it moves to the top, highlighted as the strongest
    page.get_by_role("button", name="Add 1 to kurtki").click()
    expect(page.locator("[data-tag=kurtki] [data-testid=tag-score]")).to_have_text("3")
    page.get_by_role("button", name="Add 1 to kurtki").click()
    expect(page.locator("[data-tag=kurtki] [data-testid=tag-score]")).to_have_text("4")
    expect(page.locator("[data-testid=tag-chips] .chip").first).to_have_attribute("data-tag", "kurtki")
    expect(page.locator("[data-tag=kurtki]")).to_have_class(re.compile(r"chip-strong"))
    # and removes another tag
    page.get_by_role("button", name="Remove Sport").click()
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("[data-tag=Sport]")).to_have_count(0)
    assert chip_names(page) == ["kurtki", "sukienki"]
    # and looks at the history of the tag
    page.locator("[data-tag=kurtki] .chip-name").click()
    expect(page.locator("#tag-history")).to_contain_text("Score history of kurtki")
    shot(page, "contact-card")
    assert dict(ContactTag.objects.filter(contact=anna).values_list("tag__name", "score")) == {"kurtki": 4,
                                                                                                "sukienki": 3}


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_marketer_bulk_tags_500_filtered_contacts_as_a_job(live_server, login_page, marketer, celery_worker_process):
    # given 500 contacts in Gdańsk and 20 elsewhere
    Contact.objects.bulk_create(
        [Contact(email=f"g{index}@example.com", city="Gdańsk", country="PL") for index in range(500)]
        + [Contact(email=f"w{index}@example.com", city="Wrocław", country="PL") for index in range(20)]
    )
    page = login_page(marketer)
    # when the marketer filters by city and applies "add tag Pomorze" to all matching
    page.goto(f"{live_server.url}/contacts/?city=gda%C5%84sk")
    expect(page.get_by_test_id("result-count")).to_have_text("500 contacts")
    page.fill("#bulk-tag", "Pomorze")
    page.get_by_role("button", name="Apply to all 500 matching").click()
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Confirm").click()
    # then a job shows progress and finishes
    expect(page.get_by_test_id("bulk-result")).to_contain_text("500 of 500", timeout=60_000)
    shot(page, "contacts-bulk-job")
    assert ContactTag.objects.filter(tag__name="Pomorze").count() == 500
    assert not ContactTag.objects.filter(contact__city="Wrocław").exists()


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_marketer_imports_a_csv_with_two_bad_rows(live_server, login_page, marketer, celery_worker_process, tmp_path):
    # given a CSV with two bad rows
    source = tmp_path / "contacts.csv"
    source.write_text(
        "email,first_name,country,birth_date,tags\n"
        "ola@example.com,Ola,PL,1991-01-02,kurtki:3\n"
        "broken-email,Zła,PL,,\n"
        "tom@example.com,Tom,PL,31/12/1990,\n"
        "ewa@example.com,Ewa,DE,,vip:1;kurtki:2\n",
        encoding="utf-8",
    )
    page = login_page(marketer)
    # when the marketer uploads it, checks the mapping and imports
    page.goto(f"{live_server.url}/contacts/import/")
    page.set_input_files("input[type=file]", str(source))
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.get_by_role("heading", name="2. Map the columns")).to_be_visible()
    shot(page, "contacts-import-mapping")
    page.get_by_role("button", name="Import", exact=True).click()
    # then the job finishes with 2 imported and 2 reported
    expect(page.get_by_test_id("error-report")).to_be_visible(timeout=60_000)
    shot(page, "contacts-import-done")
    with page.expect_download() as download_info:
        page.get_by_test_id("error-report").click()
    report = Path(download_info.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert report[0] == "row,column,problem"
    assert [line.split(",")[:2] for line in report[1:]] == [["3", "email"], ["4", "birth_date"]]
    assert set(Contact.objects.values_list("email", flat=True)) == {"ola@example.com", "ewa@example.com"}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_marketer_merges_and_deletes_tags_from_the_shared_dialog(live_server, login_page, marketer):
    # given jackets on two contacts, kurtki on one of them, and an old tag
    first, second = ContactFactory.create_batch(2)
    give_tag(first, "jackets", 2)
    give_tag(second, "jackets", 1)
    give_tag(first, "kurtki", 3)
    give_tag(second, "old", 1)
    page = login_page(marketer)
    page.goto(f"{live_server.url}/contacts/tags/")
    # when the marketer merges jackets into kurtki, typing the target's name
    page.locator("#tag-" + str(Tag.objects.get(name="jackets").pk)).get_by_role("button", name="Merge…").click()
    dialog = page.locator("#tag-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Merge jackets into…")
    expect(dialog).to_contain_text("On each of its 2 contacts")
    expect(dialog.get_by_label("Target tag")).to_be_focused()
    dialog.get_by_label("Target tag").fill("KURTKI")
    shot(page, "tags-merge-dialog")
    dialog.get_by_role("button", name="Merge").click()
    # then the scores add up and jackets is gone
    expect(page.locator(".toast")).to_contain_text("Merged jackets into kurtki")
    expect(page.locator("#tag-table")).not_to_contain_text("jackets")
    # and deleting old says how many contacts lose it
    page.locator("#tag-" + str(Tag.objects.get(name="old").pk)).get_by_role("button", name="Delete").click()
    expect(dialog).to_contain_text("1 contact will lose it")
    dialog.get_by_role("button", name="Delete from 1 contact").click()
    expect(page.locator(".toast").last).to_contain_text("old")
    assert dict(ContactTag.objects.values_list("contact_id", "score")) == {first.pk: 5, second.pk: 1}
    assert set(Tag.objects.values_list("name", flat=True)) == {"kurtki"}
