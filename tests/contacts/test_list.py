"""The contact list: filters in SQL, capped counts, constant queries, bulk actions on a selection."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Consent, Contact, ContactTag
from leads.models import TemperatureSettings
from tests.factories import ContactFactory, UserFactory, give_tag

pytestmark = pytest.mark.django_db
LIST = reverse("contacts:list")


def listed(response) -> set[str]:
    return {contact.email for contact in response.context["contacts"]}


def test_filters_combine(marketer_client, sales):
    # given contacts that differ in one attribute each
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    match = ContactFactory(email="jan.kowalski@example.com", first_name="Jan", last_name="Kowalski", country="PL",
                           city="Kraków", score=120, owner=sales)
    give_tag(match, "kurtki", 5)
    Consent.objects.create(contact=match, channel="email", granted=True)
    weak_tag = ContactFactory(email="a@example.com", country="PL", city="Kraków", score=120, owner=sales)
    give_tag(weak_tag, "kurtki", 2)
    cold = ContactFactory(email="b@example.com", country="PL", city="kraków", score=10, owner=sales)
    give_tag(cold, "kurtki", 5)
    ContactFactory(email="c@example.com", country="DE", city="Berlin", score=120)
    # when a marketer filters by tag ≥ 3, country, city (any case), temperature, consent and owner
    response = marketer_client.get(LIST, {"tag": "KURTKI", "tag_min": 3, "country": "pl", "city": "KRAKÓW",
                                          "temperature": "hot", "consent": "email:granted", "owner": sales.pk})
    # then only the full match is listed
    assert listed(response) == {"jan.kowalski@example.com"}
    # and word-prefix search finds it by email part or name
    assert listed(marketer_client.get(LIST, {"q": "kowal"})) == {"jan.kowalski@example.com"}
    assert listed(marketer_client.get(LIST, {"q": "Jan Kow"})) == {"jan.kowalski@example.com"}
    assert listed(marketer_client.get(LIST, {"temperature": "cold"})) == {"b@example.com"}
    assert "c@example.com" in listed(marketer_client.get(LIST, {"consent": "email:none"}))


def test_created_range_and_sorting(marketer_client):
    now = timezone.now()
    ContactFactory(email="old@example.com", created_at=now - dt.timedelta(days=30), score=5)
    ContactFactory(email="new@example.com", created_at=now, score=50, last_activity_at=now)
    recent = marketer_client.get(LIST, {"created_after": (now - dt.timedelta(days=1)).date().isoformat()})
    assert listed(recent) == {"new@example.com"}
    by_created = marketer_client.get(LIST, {"sort": "created"})
    assert [c.email for c in by_created.context["contacts"]] == ["old@example.com", "new@example.com"]
    by_activity = marketer_client.get(LIST, {"sort": "-last_activity"})
    assert by_activity.context["contacts"][0].email == "new@example.com"


def test_htmx_request_gets_the_results_fragment_only(marketer_client):
    ContactFactory()
    response = marketer_client.get(LIST, headers={"HX-Request": "true"})
    assert "<html" not in response.content.decode()
    assert 'id="contact-results"' in response.content.decode()
    assert "HX-Request" in response["Vary"]


def test_query_count_is_constant_per_page(marketer_client, django_assert_num_queries):
    # given 3 contacts with a few tags, then 60 with many
    for index in range(3):
        give_tag(ContactFactory(), f"t{index}", 1)
    marketer_client.get(LIST)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        marketer_client.get(LIST)
    for index in range(60):
        contact = ContactFactory()
        for tag_index in range(5):
            give_tag(contact, f"x{tag_index}", tag_index + index)
    with CaptureQueriesContext(connection) as many:
        response = marketer_client.get(LIST)
    # then a full page costs the same number of queries
    assert len(response.context["contacts"]) == 50 and response.context["has_next"]
    assert len(few) == len(many)


def test_count_is_capped(marketer_client, monkeypatch):
    import contacts.views.list

    monkeypatch.setattr(contacts.views.list, "COUNT_CAP", 5)
    ContactFactory.create_batch(8, country="PL")
    response = marketer_client.get(LIST, {"country": "PL"})
    assert response.context["count_exact"] is False and response.context["count"] > 5
    assert "the total is the database's estimate" in response.content.decode()


def test_bulk_on_a_selection_tags_and_assigns_owner(marketer_client, marketer):
    first, second, untouched = ContactFactory.create_batch(3)
    seller = UserFactory(username="seller", role="Sales")
    bulk = reverse("contacts:bulk")
    marketer_client.post(bulk, {"action": "add_tag", "tag": "Promo", "score": 2, "scope": "selected",
                                "ids": [first.pk, second.pk]})
    marketer_client.post(bulk, {"action": "add_tag", "tag": "promo", "score": 1, "scope": "selected",
                                "ids": [first.pk]})
    marketer_client.post(bulk, {"action": "assign_owner", "owner": seller.pk, "scope": "selected",
                                "ids": [second.pk]})
    assert dict(ContactTag.objects.values_list("contact_id", "score")) == {first.pk: 3, second.pk: 2}
    assert Contact.objects.get(pk=second.pk).owner == seller
    assert Contact.objects.get(pk=untouched.pk).owner is None
    # and the owner change is in the audit trail
    from contacts.models import ContactOwnerEvent

    event = ContactOwnerEvent.objects.get(pgh_obj_id=second.pk)
    assert event.owner_id == seller.pk and event.pgh_context is not None


def test_bulk_rejects_bad_input_with_a_message(marketer_client):
    contact = ContactFactory()
    response = marketer_client.post(reverse("contacts:bulk"), {"action": "add_tag", "tag": "", "scope": "selected",
                                                               "ids": [contact.pk]})
    assert response.status_code == 204
    assert "Tag" in response["HX-Trigger"]
    assert not ContactTag.objects.exists()
