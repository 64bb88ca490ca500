"""The contacts screens in Polish: the catalogue is complete, numbers take Polish plural forms,
toasts and stored texts (a job's title, the import's error report) are written in the language
of the person who caused them, and the API stays English."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from contacts.csvio import parse_row
from contacts.models import EVENT_TYPE_CHOICES
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db
PL = {"HTTP_ACCEPT_LANGUAGE": "pl"}
CATALOGUE = Path(settings.BASE_DIR) / "contacts" / "locale" / "pl" / "LC_MESSAGES"


@pytest.fixture(autouse=True)
def _english_after():
    # a request in Polish leaves Polish active in this thread: give the next test English back
    yield
    translation.activate(settings.LANGUAGE_CODE)


def test_the_catalogue_is_complete_and_compiled():
    # given the contacts area's Polish catalogue
    po = (CATALOGUE / "django.po").read_text(encoding="utf-8")
    # then no entry is fuzzy or left empty (the header aside), plural entries have Polish's three forms
    assert "#, fuzzy" not in po
    assert not re.search(r'^msgstr(\[\d\])? ""\n\n', po.split("\n\n", 1)[1] + "\n\n", re.MULTILINE)
    assert po.count("msgid_plural") * 3 == len(re.findall(r"^msgstr\[[012]\]", po, re.MULTILINE))
    assert "nplurals=3;" in po and (CATALOGUE / "django.mo").stat().st_mtime >= (CATALOGUE / "django.po").stat().st_mtime - 5


@pytest.mark.parametrize(("count", "words"), [(1, "1 kontakt"), (3, "3 kontakty"), (5, "5 kontaktów"), (12, "12 kontaktów"),
                                              (22, "22 kontakty")])
def test_the_list_counts_contacts_in_polish(marketer_client, count, words):
    # given some contacts
    for _ in range(count):
        ContactFactory()
    # when a marketer whose browser asks for Polish opens the list
    page = marketer_client.get(reverse("contacts:list"), **PL).content.decode()
    # then the count takes the right Polish plural form, and the page speaks Polish
    assert re.search(rf'data-testid="result-count">{words}</h2>', page)
    assert "Najsilniejsze tagi" in page and "Więcej filtrów" in page and "Strongest tags" not in page


def test_the_card_and_its_toasts_in_polish(marketer_client):
    # given a contact with a tag
    contact = ContactFactory()
    give_tag(contact, "kurtki", 4)
    # when a marketer reads the card in Polish and sets the tag's score
    page = marketer_client.get(reverse("contacts:card", args=[contact.pk]), **PL).content.decode()
    tag_id = contact.contact_tags.get().tag_id
    response = marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, tag_id]), {"score": "12"},
                                    HTTP_HX_REQUEST="true", **PL)
    # then the card and the toast are Polish
    assert "Oś czasu" in page and "Historia punktów tagu kurtki" in page and "Preferencje produktowe" in page
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "kurtki: ustawiono 12."


def test_a_bulk_job_is_titled_in_the_language_of_who_started_it(marketer_client):
    # given contacts
    ContactFactory.create_batch(2, city="Gdańsk")
    # when a marketer working in Polish tags all matching ones
    marketer_client.post(reverse("contacts:bulk"), {"action": "add_tag", "tag": "Promo", "score": "1", "scope": "all",
                                                    "query": "city=Gdańsk"}, HTTP_HX_REQUEST="true", **PL)
    # then the job's stored title is Polish
    from core.models import Job

    assert Job.objects.get(kind="contacts_bulk").title == "Dodanie Promo (+1): wszystkie kontakty pasujące do filtrów"


def test_import_problems_follow_the_active_language_and_the_api_stays_english(ingest_api):
    # given a row with a bad email
    row, mapping, header = ["not-an-email"], {"email": 0}, ["email"]
    # when it is checked in Polish, and in English
    with translation.override("pl"):
        _, polish = parse_row(2, row, mapping, header)
    with translation.override("en"):
        _, english = parse_row(2, row, mapping, header)
    # then the problem is written in that language
    assert polish[0][2] == "'not-an-email' nie jest poprawnym adresem e-mail."
    assert english[0][2] == "'not-an-email' is not a valid email address."
    # and the API answers in English even to a Polish client
    response = ingest_api.post("/api/v1/contacts", json={"email": "not-an-email"}, HTTP_ACCEPT_LANGUAGE="pl")
    assert "is not a valid email address" in json.dumps(response.json())


def test_event_type_labels_are_translated_when_shown():
    # given the event types' labels (lazy)
    labels = dict(EVENT_TYPE_CHOICES)
    # then they read as English by default and as Polish in Polish
    assert str(labels["product_view"]) == "Product view"
    with translation.override("pl"):
        assert str(labels["product_view"]) == "Wyświetlenie produktu"
