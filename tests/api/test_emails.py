"""Emails: one validator for every door, and addresses with "/" reachable through the API."""

from __future__ import annotations

from unittest import mock

import pytest

from contacts.csvio import parse_row
from contacts.models import Contact
from contacts.services import clean_email
from core.validators import email_is_valid
from tests.automation.factories import event

pytestmark = pytest.mark.django_db

# Non-ASCII local parts (SMTPUTF8) are refused, as /events always did: few mail systems deliver them.
REFUSED = ["<svg/onload=alert(9)>@xss.test", "a@b", "two@@example.com", "spaced out@example.com", "x" * 250 + "@a.pl",
           "żaneta@example.pl"]
ACCEPTED = ["a/b@shop.test", "o'brien@example.ie", "anna+promo@example.com", "ala@żabka.pl"]


@pytest.mark.parametrize("email", REFUSED)
def test_contacts_and_events_refuse_the_same_addresses(ingest_api, email):
    # when the same bad address goes to both ingestion APIs
    contact = ingest_api.post("/api/v1/contacts", json={"email": email})
    with mock.patch("automation.tasks.events_process_enqueue"):
        events = ingest_api.post("/api/v1/events", json={"events": [event("e1", email=email)]})
    # then both refuse it, naming the field, and nothing is stored
    assert contact.status_code == 400 and contact.json()["errors"][0]["field"] == "email"
    assert events.status_code == 400 and events.json()["errors"][0]["field"] == "email"
    assert not Contact.objects.exists()


@pytest.mark.parametrize("email", REFUSED + ACCEPTED)
def test_the_service_validator_is_the_shared_one(email):
    # the CSV import and the forms use clean_email: it agrees with the API's validator
    try:
        clean_email(email)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == email_is_valid(email.strip().lower())
    assert accepted == (email in ACCEPTED)


@pytest.mark.parametrize("email", REFUSED[:1] + ACCEPTED[:1])
def test_csv_import_refuses_what_the_api_refuses(email):
    # given a CSV row with the address
    header = ["email", "first_name"]
    # when the import parses it
    parsed, errors = parse_row(2, [email, "Ala"], {"email": 0, "first_name": 1}, header)
    # then it is refused exactly when /events refuses it
    assert (parsed is None) == (not email_is_valid(email.lower()))
    assert bool(errors) == (email in REFUSED)


def test_an_email_with_a_slash_can_be_read_tagged_and_erased(admin_api, ingest_api):
    # given a contact whose address holds "/"
    created = ingest_api.post("/api/v1/contacts", json={"email": "A/B@Shop.test", "first_name": "Ala"})
    assert created.status_code == 201
    # when it is read, tagged, untagged and erased through the query-parameter form
    read = admin_api.get("/api/v1/contacts/by-email?email=a%2Fb%40shop.test")
    tagged = admin_api.post("/api/v1/contacts/by-email/tags?email=A/B@shop.test", json={"tag": "VIP", "score": 2})
    untagged = admin_api.delete("/api/v1/contacts/by-email/tags/VIP?email=a/b@shop.test")
    erased = admin_api.delete("/api/v1/contacts/by-email?email=a/b@shop.test")
    # then each works as its path form does
    assert read.status_code == 200 and read.json()["email"] == "a/b@shop.test"
    assert tagged.status_code == 200 and tagged.json()["tags"] == [{"name": "VIP", "score": 2}]
    assert untagged.status_code == 200 and untagged.json()["tags"] == []
    assert erased.status_code == 204
    assert not Contact.objects.filter(email="a/b@shop.test").exists()
    assert admin_api.get("/api/v1/contacts/by-email?email=a/b@shop.test").status_code == 404


def test_the_stage_of_an_email_with_a_slash_can_be_set(admin_api):
    # given a contact with "/" in the address and a funnel
    from tests.factories import ContactFactory
    from tests.leads.factories import funnel_with_stages

    ContactFactory(email="c/d@shop.test")
    funnel_with_stages()
    # when its stage is set through the query-parameter form
    response = admin_api.put("/api/v1/contacts/by-email/stages?email=c/d@shop.test",
                             json={"funnel": "Sales", "stage": "MQL"})
    # then
    assert response.status_code == 200
    assert response.json()["stages"] == {"Sales": "MQL"}


def test_the_path_form_still_works_for_plain_addresses(admin_api, ingest_api):
    ingest_api.post("/api/v1/contacts", json={"email": "plain@shop.test"})
    assert admin_api.get("/api/v1/contacts/plain@shop.test").json()["email"] == "plain@shop.test"
    assert admin_api.get("/api/v1/contacts/by-email").status_code == 400  # the email is required
