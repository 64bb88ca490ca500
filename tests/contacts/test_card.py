"""The contact card: what it shows, who may change what, constant query count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from automation.models import Rule
from contacts.models import ContactTag, Note, TagScoreChange
from leads.models import ScoreChange
from tests.contacts.factories import make_event
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


def card_url(contact) -> str:
    return reverse("contacts:card", kwargs={"contact_id": contact.pk})


def test_card_shows_tags_strongest_first_and_what_events_caused(marketer_client):
    # given a contact with tags and a purchase that a rule turned into +1 KURTKI and +25 points
    contact = ContactFactory(first_name="Ewa", last_name="Lis", score=25)
    give_tag(contact, "sukienki", 1)
    kurtki = give_tag(contact, "KURTKI", 4).tag
    rule = Rule.objects.create(name="Purchase", event_type="purchase", actions=[])
    event = make_event(contact, "purchase", properties={"category": "kurtki", "product_name": "Parka"}, value=300)
    TagScoreChange.objects.create(contact=contact, tag=kurtki, delta=1, score_after=4, source="rule",
                                  rule_id=rule.pk, event_pk=event.pk)
    ScoreChange.objects.create(contact=contact, delta=25, rule=rule, event_pk=event.pk)
    make_event(contact, "product_view", properties={"category": "kurtki", "brand": "Nord", "price": 199})
    # when a marketer opens the card
    response = marketer_client.get(card_url(contact))
    # then the chips are strongest first, the timeline says what the purchase caused and by which rule
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("KURTKI") < html.index("sukienki")
    assert "+1 KURTKI" in html and "+25 points" in html and "by rule Purchase" in html
    assert "Nord" in html  # product preferences
    assert 'id="tag-scores-chart"' in html


def test_card_query_count_is_constant_in_tags_and_events(marketer_client, django_assert_max_num_queries):
    # given two contacts, one with 2 tags and 2 events, one with 30 tags and 40 events
    small, large = ContactFactory(), ContactFactory()
    for index in range(2):
        give_tag(small, f"s{index}", index + 1)
        make_event(small, "page_view")
    for index in range(30):
        give_tag(large, f"l{index}", index + 1)
    for _ in range(40):
        make_event(large, "product_view", properties={"category": "c", "brand": "b", "price": 10})
    marketer_client.get(card_url(small))  # warm caches (temperature row, content types)
    # when both cards are rendered, then they take the same number of queries
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small_queries:
        marketer_client.get(card_url(small))
    with CaptureQueriesContext(connection) as large_queries:
        marketer_client.get(card_url(large))
    assert len(small_queries) == len(large_queries)
    assert len(large_queries) <= 25


def test_marketer_adds_bumps_and_removes_tags_inline(marketer_client, marketer):
    # given a contact with one tag
    contact = ContactFactory()
    sport = give_tag(contact, "Sport", 3).tag
    # when the marketer adds kurtki twice, +1 on it, −1 on Sport, then removes Sport
    marketer_client.post(reverse("contacts:card_tag_add", args=[contact.pk]), {"tag": "kurtki", "score": "2"},
                         headers={"HX-Request": "true"})
    kurtki = ContactTag.objects.get(contact=contact, tag__key="kurtki").tag
    response = marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, kurtki.pk]), {"delta": "1"},
                                    headers={"HX-Request": "true"})
    marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, sport.pk]), {"delta": "-1"})
    assert dict(ContactTag.objects.filter(contact=contact).values_list("tag__name", "score")) == {"kurtki": 3,
                                                                                                   "Sport": 2}
    marketer_client.post(reverse("contacts:card_tag_change", args=[contact.pk, sport.pk]), {"remove": "1"})
    # then the fragment came back without a full page, and the history names the marketer
    assert response.status_code == 200 and "<html" not in response.content.decode()
    assert dict(ContactTag.objects.filter(contact=contact).values_list("tag__name", "score")) == {"kurtki": 3}
    assert set(TagScoreChange.objects.values_list("user_id", flat=True)) == {marketer.pk}
    history = marketer_client.get(reverse("contacts:card_tag_history", args=[contact.pk, kurtki.pk]))
    assert "Score history of kurtki" in history.content.decode()


def test_bad_tag_input_is_reported_not_stored(marketer_client):
    contact = ContactFactory()
    response = marketer_client.post(reverse("contacts:card_tag_add", args=[contact.pk]), {"tag": "  ", "score": "x"})
    assert response.status_code == 200
    assert "toast" in response["HX-Trigger"]
    assert not ContactTag.objects.exists()


def test_sales_sees_the_card_read_only_except_notes_and_owner(sales_client, sales):
    # given a contact with a tag
    contact = ContactFactory()
    tag = give_tag(contact, "vip", 2).tag
    # when Sales opens the card, tries to change a tag, adds a note and claims it
    html = sales_client.get(card_url(contact)).content.decode()
    refused = sales_client.post(reverse("contacts:card_tag_change", args=[contact.pk, tag.pk]), {"delta": "1"})
    sales_client.post(reverse("contacts:card_note_add", args=[contact.pk]), {"text": "Called, call back Monday"})
    sales_client.post(reverse("contacts:card_owner", args=[contact.pk]), {"owner": str(sales.pk)})
    # then no tag controls were shown and the change was refused, but the note and the owner were saved
    assert "Add a tag" not in html and "Add note" in html
    assert refused.status_code == 403
    assert ContactTag.objects.get(contact=contact, tag=tag).score == 2
    assert Note.objects.get(contact=contact).author == sales
    contact.refresh_from_db()
    assert contact.owner == sales


def test_only_the_author_edits_a_note(marketer_client, sales_client, sales):
    contact = ContactFactory()
    note = Note.objects.create(contact=contact, author=sales, text="first")
    url = reverse("contacts:card_note_edit", args=[contact.pk, note.pk])
    assert marketer_client.post(url, {"text": "hijacked"}).status_code == 404
    assert sales_client.post(url, {"text": "second"}).status_code == 200
    note.refresh_from_db()
    assert note.text == "second"


def test_a_new_note_is_not_marked_edited_until_it_is_changed(sales_client, sales):
    # given a note just added (created_at and updated_at both default to now, microseconds apart)
    contact = ContactFactory()
    sales_client.post(reverse("contacts:card_note_add", args=[contact.pk]), {"text": "first"})
    note = Note.objects.get(contact=contact)
    # when the card is shown, then again after the author changes the note a little later
    before = sales_client.get(card_url(contact)).content.decode()
    Note.objects.filter(pk=note.pk).update(updated_at=note.created_at + timedelta(minutes=5))
    after = sales_client.get(card_url(contact)).content.decode()
    # then only the changed note says "edited"
    assert "· edited" not in before
    assert "· edited" in after


def test_timeline_filters_by_type_and_pages(marketer_client):
    contact = ContactFactory()
    for _ in range(25):
        make_event(contact, "page_view")
    make_event(contact, "purchase", value=10)
    url = reverse("contacts:card_timeline", args=[contact.pk])
    purchases = marketer_client.get(url, {"type": "purchase"}).content.decode()
    second_page = marketer_client.get(url, {"page": 2}).content.decode()
    assert purchases.count('class="timeline-item"') == 1
    assert second_page.count('class="timeline-item"') == 6
