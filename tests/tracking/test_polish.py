"""Settings → Sources in Polish: the pages, the form's errors and the debugger's fixed reasons (written
in English by the intake) are shown in the reader's language; /v1/ answers in English."""

from __future__ import annotations

import json

from django.test import Client
from django.urls import reverse

from tests.tracking.helpers import basic, browser_source, message
from tracking.models import MessageLog

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def test_debugger_and_sources_speak_polish(marketer_client):
    # given a browser source with an accepted message and one refused for its origin
    source, key = browser_source("Strona sklepu")
    MessageLog.objects.create(source=source, message_type="identify", status=MessageLog.ACCEPTED,
                              reason="linked the visitor: its anonymous profile merges into the contact")
    MessageLog.objects.create(source=source, status=MessageLog.REJECTED,
                              reason="origin https://evil.example is not allowed for this browser source")
    # when the marketer opens the sources and the debugger in Polish
    listing = marketer_client.get(reverse("tracking:sources"), **POLISH).content.decode()
    detail = marketer_client.get(reverse("tracking:source_detail", args=[source.pk]), **POLISH).content.decode()
    # then the pages and the reasons are Polish
    assert "Źródła" in listing and "przeglądarka" in listing
    assert "Debuger na żywo" in detail and "Ostatnie 2 z najwyżej 100 wiadomości" in detail
    assert "powiązano odwiedzającego" in detail
    assert "domena https://evil.example nie jest dozwolona dla tego źródła przeglądarkowego" in detail
    assert "Live debugger" not in detail and "is not allowed" not in detail


def test_source_form_errors_are_polish(admin_client):
    # when the admin creates a browser source without an origin, then with a bad one, in Polish
    empty = admin_client.post(reverse("tracking:sources"), {"name": "Sklep", "kind": "browser", "allowed_origins": ""},
                              **POLISH).content.decode()
    bad = admin_client.post(reverse("tracking:sources"),
                            {"name": "Sklep", "kind": "browser", "allowed_origins": "sklep.example/kurtki"},
                            **POLISH).content.decode()
    # then the errors are Polish
    assert "Źródło przeglądarkowe wymaga co najmniej jednej dozwolonej domeny." in empty
    assert "to nie domena w postaci https://shop.example.com" in bad


def test_the_intake_answers_in_english_whatever_the_language(db):
    # given a browser source
    source, key = browser_source()
    # when a message comes from an origin it does not allow, with a Polish Accept-Language
    response = Client().post("/v1/track", data=json.dumps(message(userId="u-1", event="x")),
                             content_type="application/json", HTTP_AUTHORIZATION=basic(key),
                             HTTP_ORIGIN="https://evil.example", HTTP_ACCEPT_LANGUAGE="pl")
    # then the answer is the contract's English
    assert response.status_code == 403
    assert response.json()["detail"] == "This browser source does not allow this origin."
