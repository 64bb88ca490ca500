"""The contract's contact endpoints: every field, error, and case-insensitive match."""

from __future__ import annotations

import pytest

from contacts.models import Consent, ConsentChange, Contact, ContactTag, Suppression, TagScoreChange, email_hash
from leads.models import ContactStage, Funnel, Stage, TemperatureSettings
from loyalty.models import ContactTier, Program, Tier
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db

FULL = {
    "email": "  Anna.Nowak@Example.COM ",
    "first_name": "Anna",
    "last_name": "Nowak",
    "phone": "+48 600 100 200",
    "country": "pl",
    "city": "Kraków",
    "birth_date": "1990-05-17",
    "properties": {"shoe_size": 38, "vip": True},
    "consents": {"email": True, "sms": False},
}


def test_post_creates_a_contact_with_every_field(ingest_api):
    # when a contact is posted with every field
    response = ingest_api.post("/api/v1/contacts", json=FULL)
    # then it is created (201) and answered as GET shows it, email trimmed and lower-cased
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "anna.nowak@example.com"
    assert (body["first_name"], body["last_name"], body["phone"]) == ("Anna", "Nowak", "+48 600 100 200")
    assert (body["country"], body["city"], body["birth_date"]) == ("PL", "Kraków", "1990-05-17")
    assert body["properties"] == {"shoe_size": 38, "vip": True}
    assert body["consents"] == {"email": True, "sms": False}
    assert (body["score"], body["temperature"], body["tags"], body["stages"]) == (0, "cold", [], {})
    # and each consent change is recorded with its source
    assert sorted(ConsentChange.objects.values_list("channel", "granted", "source")) == [
        ("email", True, "api"), ("sms", False, "api")]


def test_post_again_updates_merging_properties_and_keeping_absent_fields(ingest_api):
    # given a stored contact
    ingest_api.post("/api/v1/contacts", json=FULL)
    # when the same email, differently cased, is posted with a new city, a new property and one consent change
    response = ingest_api.post("/api/v1/contacts", json={
        "email": "ANNA.NOWAK@example.com", "city": "Gdańsk", "properties": {"vip": False, "size": "M"},
        "consents": {"email": True, "sms": True}})
    # then it is updated (200): absent fields kept, properties merged key by key, only the real change recorded
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["first_name"], body["city"]) == ("Anna", "Gdańsk")
    assert body["properties"] == {"shoe_size": 38, "vip": False, "size": "M"}
    assert body["consents"] == {"email": True, "sms": True}
    assert Contact.objects.count() == 1
    assert ConsentChange.objects.filter(channel="sms").count() == 2
    assert ConsentChange.objects.filter(channel="email").count() == 1


@pytest.mark.parametrize(("field", "value"), [
    ("email", "not-an-email"), ("email", ""), ("email", 42), ("country", "XX"), ("country", "POL"),
    ("birth_date", "17.05.1990"), ("birth_date", "1990-02-30"), ("birth_date", "2999-01-01"),
    ("first_name", "x" * 101), ("phone", 123), ("properties", [1, 2]), ("consents", {"email": "yes"}),
    ("consents", {"Bad Channel!": True}), ("unknown_field", 1),
])
def test_post_rejects_bad_fields_naming_the_field(ingest_api, field, value):
    # when a contact with one bad field is posted
    response = ingest_api.post("/api/v1/contacts", json={**FULL, field: value})
    # then 400 names the field and nothing is stored
    assert response.status_code == 400, response.content
    fields = [error["field"] for error in response.json()["errors"]]
    assert any(name == field or name.startswith(f"{field}.") for name in fields), fields
    assert Contact.objects.count() == 0


def test_post_without_email_is_400(ingest_api):
    response = ingest_api.post("/api/v1/contacts", json={"first_name": "Anna"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "email"


def test_batch_upserts_all_or_nothing_with_indexed_errors(ingest_api):
    # given one existing contact
    ContactFactory(email="old@example.com", first_name="Old")
    # when a batch has a bad item at index 2
    bad = ingest_api.post("/api/v1/contacts/batch", json={"contacts": [
        {"email": "new1@example.com"}, {"email": "OLD@example.com", "first_name": "Renamed"},
        {"email": "broken", "country": "PL"}]})
    # then 400 with the index, and nothing was stored
    assert bad.status_code == 400
    assert bad.json()["errors"] == [{"index": 2, "field": "email", "message": bad.json()["errors"][0]["message"]}]
    assert list(Contact.objects.values_list("email", "first_name")) == [("old@example.com", "Old")]
    # when the batch is fixed
    good = ingest_api.post("/api/v1/contacts/batch", json={"contacts": [
        {"email": "new1@example.com"}, {"email": "OLD@example.com", "first_name": "Renamed"},
        {"email": "new2@example.com", "country": "de", "consents": {"email": True}}]})
    # then all are stored
    assert good.status_code == 200, good.content
    assert (good.json()["created"], good.json()["updated"]) == (2, 1)
    assert [item["created"] for item in good.json()["results"]] == [True, False, True]
    assert Contact.objects.get(email="old@example.com").first_name == "Renamed"
    assert Contact.objects.get(email="new2@example.com").country == "DE"
    assert Consent.objects.get(contact__email="new2@example.com", channel="email").granted is True


def test_batch_limits(ingest_api):
    too_many = ingest_api.post("/api/v1/contacts/batch", json={"contacts": [{"email": f"c{i}@x.pl"} for i in range(1001)]})
    empty = ingest_api.post("/api/v1/contacts/batch", json={"contacts": []})
    assert (too_many.status_code, empty.status_code) == (400, 400)
    assert too_many.json()["errors"][0]["field"] == "contacts"
    assert Contact.objects.count() == 0


def test_get_shows_tags_stages_and_tiers(admin_api):
    # given a contact with tags, a stage in a funnel, a tier in one programme of two
    contact = ContactFactory(email="jan@example.com", score=120)
    give_tag(contact, "kurtki", 4)
    give_tag(contact, "Sukienki", 1)
    give_tag(contact, "buty", 4)
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    funnel = Funnel.objects.create(name="Sales")
    stage = Stage.objects.create(funnel=funnel, name="MQL", position=1)
    ContactStage.objects.create(contact=contact, funnel=funnel, stage=stage)
    gold_programme = Program.objects.create(name="Club", metric={"type": "score"})
    gold = Tier.objects.create(program=gold_programme, name="Gold", min=100)
    ContactTier.objects.create(program=gold_programme, contact=contact, tier=gold)
    Program.objects.create(name="Other", metric={"type": "score"})
    # when it is read with a differently cased email
    response = admin_api.get("/api/v1/contacts/JAN@Example.com")
    # then tags are score desc then name, with stages and every programme
    assert response.status_code == 200
    body = response.json()
    assert body["tags"] == [{"name": "buty", "score": 4}, {"name": "kurtki", "score": 4},
                            {"name": "Sukienki", "score": 1}]
    assert (body["score"], body["temperature"]) == (120, "hot")
    assert body["stages"] == {"Sales": "MQL"}
    assert body["tiers"] == {"Club": "Gold", "Other": None}


def test_unknown_contact_is_404_everywhere(admin_api):
    for response in (
        admin_api.get("/api/v1/contacts/nobody@example.com"),
        admin_api.post("/api/v1/contacts/nobody@example.com/tags", json={"tag": "x"}),
        admin_api.delete("/api/v1/contacts/nobody@example.com/tags/x"),
        admin_api.delete("/api/v1/contacts/nobody@example.com"),
    ):
        assert response.status_code == 404
        assert "detail" in response.json()


def test_tags_add_up_and_remove_at_zero(admin_api):
    # given a contact
    ContactFactory(email="ewa@example.com")
    # when KURTKI is added, then 3 more with other casing, then -10
    first = admin_api.post("/api/v1/contacts/ewa@example.com/tags", json={"tag": " KURTKI "})
    second = admin_api.post("/api/v1/contacts/EWA@example.com/tags", json={"tag": "kurtki", "score": 3})
    assert first.json()["tags"] == [{"name": "KURTKI", "score": 1}]
    assert second.json()["tags"] == [{"name": "KURTKI", "score": 4}]
    third = admin_api.post("/api/v1/contacts/ewa@example.com/tags", json={"tag": "Kurtki", "score": -10})
    # then the tag is gone, and every change was recorded with source api
    assert third.status_code == 200
    assert third.json()["tags"] == []
    assert list(TagScoreChange.objects.order_by("id").values_list("delta", "score_after", "source")) == [
        (1, 1, "api"), (3, 4, "api"), (-10, 0, "api")]


@pytest.mark.parametrize("payload", [{"tag": ""}, {"tag": "   "}, {"tag": "x", "score": "3"}, {"tag": "x", "score": 1.5},
                                     {"score": 1}, {"tag": "x" * 101}, {"tag": "x", "score": 10**9}])
def test_tag_add_rejects_bad_input(admin_api, payload):
    ContactFactory(email="ewa@example.com")
    response = admin_api.post("/api/v1/contacts/ewa@example.com/tags", json=payload)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] in {"tag", "score"}
    assert ContactTag.objects.count() == 0


def test_delete_tag_case_insensitively(admin_api):
    # given a contact with two tags
    contact = ContactFactory(email="ola@example.com")
    give_tag(contact, "Kurtki", 5)
    give_tag(contact, "buty", 1)
    # when one is deleted by another spelling
    response = admin_api.delete("/api/v1/contacts/OLA@example.com/tags/KURTKI")
    # then only it is gone, recorded as -5 → 0; deleting it again is 404
    assert response.status_code == 200
    assert response.json()["tags"] == [{"name": "buty", "score": 1}]
    assert list(TagScoreChange.objects.values_list("delta", "score_after")) == [(-5, 0)]
    assert admin_api.delete("/api/v1/contacts/ola@example.com/tags/kurtki").status_code == 404


def test_delete_contact_erases_and_suppresses(admin_api, ingest_api):
    # given a contact with a tag and consents
    ingest_api.post("/api/v1/contacts", json=FULL)
    admin_api.post("/api/v1/contacts/anna.nowak@example.com/tags", json={"tag": "vip"})
    # when it is erased
    response = admin_api.delete("/api/v1/contacts/Anna.Nowak@example.com")
    # then everything is gone but a suppression hash
    assert response.status_code == 204
    assert not Contact.objects.exists()
    assert not ConsentChange.objects.exists() and not TagScoreChange.objects.exists()
    assert Suppression.objects.filter(email_hash=email_hash("anna.nowak@example.com")).exists()
    # and it is not silently re-created without a consent, but is with one
    again = ingest_api.post("/api/v1/contacts", json={"email": "anna.nowak@example.com", "first_name": "A"})
    assert again.status_code == 400 and again.json()["errors"][0]["field"] == "email"
    regranted = ingest_api.post("/api/v1/contacts", json={"email": "anna.nowak@example.com",
                                                          "consents": {"email": True}})
    assert regranted.status_code == 201
    assert not Suppression.objects.exists()


def test_scopes(ingest_api, admin_api):
    ContactFactory(email="a@example.com")
    assert ingest_api.get("/api/v1/contacts/a@example.com").status_code == 403
    assert ingest_api.post("/api/v1/contacts/a@example.com/tags", json={"tag": "x"}).status_code == 403
    assert admin_api.post("/api/v1/contacts", json={"email": "b@example.com"}).status_code == 201
