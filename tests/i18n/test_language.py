"""The interface language: the browser's by default, the user's saved choice once made, English
for the API whatever either says."""

from __future__ import annotations

import json

from django.test import Client

from marketing_hub.models import UserPreference


def _lang(response) -> str:
    head = response.content.decode()[:400]
    return head.split('<html lang="', 1)[1].split('"', 1)[0]


def test_the_browser_language_is_the_default(db):
    # given nobody signed in, a Polish browser and an English one
    polish, english = Client(HTTP_ACCEPT_LANGUAGE="pl,en;q=0.5"), Client(HTTP_ACCEPT_LANGUAGE="en-GB")
    # when they open the login page
    polish_page, english_page = polish.get("/login/"), english.get("/login/")
    # then each gets its language, <html lang> included
    assert _lang(polish_page) == "pl" and "Zaloguj się" in polish_page.content.decode()
    assert _lang(english_page) == "en" and "Sign in" in english_page.content.decode()


def test_a_saved_language_wins_over_the_browser(sales_client, sales):
    # given a salesperson whose browser asks for English
    sales_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert _lang(sales_client.get("/")) == "en"
    # when they pick Polish in the sidebar (a plain form post, no JavaScript needed)
    response = sales_client.post("/language/", {"language": "pl", "next": "/leads/hot/"})
    # then they go back where they were, the choice is saved, and pages come in Polish
    assert response.status_code == 302 and response["Location"] == "/leads/hot/"
    assert UserPreference.objects.get(user=sales).language == "pl"
    page = sales_client.get("/")
    assert _lang(page) == "pl" and "Pulpit" in page.content.decode() and "Handlowiec" in page.content.decode()
    # and "as the browser says" hands the choice back to the browser
    sales_client.post("/language/", {"language": ""})
    assert _lang(sales_client.get("/")) == "en"


def test_the_saved_language_follows_the_user_to_a_new_session(db, marketer):
    # given a marketer who saved Polish earlier
    UserPreference.objects.create(user=marketer, language="pl")
    # when they sign in on another machine whose browser prefers English
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(marketer)
    # then the pages are Polish there too
    assert _lang(client.get("/")) == "pl"


def test_the_switcher_refuses_unknown_languages_and_foreign_redirects(marketer_client, marketer):
    # when the form is tampered with
    response = marketer_client.post("/language/", {"language": "xx", "next": "https://evil.example/"})
    # then nothing is saved and the redirect stays on this site
    assert response.status_code == 302 and response["Location"] == "/"
    assert not UserPreference.objects.filter(user=marketer).exists()


def test_every_role_sees_the_switcher(marketer_client, sales_client, admin_client):
    for client in (marketer_client, sales_client, admin_client):
        page = client.get("/").content.decode()
        assert 'action="/language/"' in page and 'name="language"' in page


def test_the_api_answers_in_english_whatever_the_language(admin_client, admin, admin_api):
    # given an admin who reads the app in Polish, with a Polish browser too
    admin_client.post("/language/", {"language": "pl"})
    assert "Pulpit" in admin_client.get("/", HTTP_ACCEPT_LANGUAGE="pl").content.decode()
    # when the API is called with an invalid body and without a key, asking for Polish
    invalid = admin_api.post("/api/v1/contacts", json={"email": "not an address"}, HTTP_ACCEPT_LANGUAGE="pl")
    english = admin_api.post("/api/v1/contacts", json={"email": "not an address"}, HTTP_ACCEPT_LANGUAGE="en")
    no_key = Client(HTTP_ACCEPT_LANGUAGE="pl").post("/api/v1/events", data="{}", content_type="application/json")
    # then the answers are the English contract, byte for byte the same as for an English client
    assert invalid.status_code == english.status_code and invalid.status_code in (400, 422)
    assert json.loads(invalid.content) == json.loads(english.content)
    assert invalid["Content-Language"] == "en" and no_key["Content-Language"] == "en"
    assert no_key.status_code == 401
    # and the session's language does not leak into the API either
    via_session = admin_client.post("/api/v1/events", data="{}", content_type="application/json", HTTP_ACCEPT_LANGUAGE="pl")
    assert via_session["Content-Language"] == "en"


def test_the_password_reset_email_is_in_the_recipients_language(admin_client, mailoutbox):
    # given a marketer who reads the app in Polish, and an admin who reads it in English
    from tests.factories import UserFactory

    person = UserFactory(username="ola", email="ola@przyklad.pl", role="Marketer")
    UserPreference.objects.create(user=person, language="pl")
    # when the admin sends them a reset link
    admin_client.post(f"/settings/users/{person.pk}/password-reset/", HTTP_ACCEPT_LANGUAGE="en")
    # then the email is Polish, and the admin's confirmation English
    assert len(mailoutbox) == 1
    assert mailoutbox[0].subject == "Marketing Hub: ustaw nowe hasło"
    assert "Link działa jeden raz" in mailoutbox[0].body
    page = admin_client.get(f"/settings/users/{person.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "A one-time password reset link was emailed to ola@przyklad.pl." in page
