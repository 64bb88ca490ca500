"""Contacts show what the areas above register (contacts.registry) and work without them: the
list's filters, the words beside the score, the card's panels, the timeline's effects and the
contact's JSON."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts import registry
from contacts.services import contact_export, contact_representation
from leads.funnels import contact_stage_set
from segments.services import segment_refresh, segment_save
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import funnel_with_stages, give_points
from tests.loyalty.factories import make_program

pytestmark = pytest.mark.django_db

LIST = reverse("contacts:list")


def _listed(response) -> set[str]:
    return {contact.email for contact in response.context["contacts"]}


def test_the_list_filters_by_what_leads_loyalty_and_segments_register(marketer_client):
    # given a contact in a funnel stage, with a loyalty tier and in a saved segment, and one without
    member = ContactFactory(email="member@example.com")
    ContactFactory(email="other@example.com")
    give_tag(member, "kurtki", 5)
    funnel = funnel_with_stages("Sales")
    mql = funnel.stages.get(name="MQL")
    contact_stage_set(contact_id=member.pk, stage=mql, cause="manual")
    program = make_program("Club", metric={"type": "tag_score", "tag": "kurtki"},
                           tiers=[("Bronze", 1, None), ("Gold", 5, None)])
    gold = program.tiers.get(name="Gold")
    segment = segment_save(name="Jackets", definition={"type": "has_tag", "tag": "kurtki"})
    segment_refresh(segment.pk)
    # when the list is filtered by each registered filter
    by_stage = marketer_client.get(LIST, {"stage": mql.pk})
    by_tier = marketer_client.get(LIST, {"tier": gold.pk})
    by_segment = marketer_client.get(LIST, {"segment": segment.pk})
    # then each finds the member only, and "More filters" is open because one of them is used
    assert _listed(by_stage) == _listed(by_tier) == _listed(by_segment) == {"member@example.com"}
    html = by_stage.content.decode()
    assert '<details class="more-filters" open>' in html
    assert '<label for="id_stage">Funnel stage</label>' in html and "Sales: MQL" in html
    assert '<label for="id_tier">Loyalty tier</label>' in html and "Club: Gold" in html
    assert '<label for="id_segment">Segment</label>' in html


def test_the_score_is_labelled_with_the_temperature_leads_register(marketer_client):
    # given a hot contact (default thresholds: warm from 50, hot from 100)
    hot = ContactFactory(email="hot@example.com")
    give_points(hot, 120)
    # when the list and the card are shown
    listed = marketer_client.get(LIST).content.decode()
    card = marketer_client.get(reverse("contacts:card", args=[hot.pk])).content.decode()
    # then both say hot, and the card says where the thresholds are
    assert '<span class="temp temp-hot">' in listed
    assert 'title="Hot lead"' in card and "(warm from 50, hot from 100)" in card
    assert 'id="panel-leads"' in card and 'id="panel-loyalty"' in card and 'id="panel-segments"' in card


def test_the_contact_json_has_the_parts_of_every_area(marketer):
    # given a contact with points, a stage and a programme
    contact = ContactFactory(email="parts@example.com")
    give_points(contact, 7)
    funnel = funnel_with_stages("Sales")
    contact_stage_set(contact_id=contact.pk, stage=funnel.stages.get(name="New"), cause="manual")
    make_program("Club", tiers=[("Bronze", 0, None)])
    # when it is represented and exported
    data = contact_representation(contact)
    export = contact_export(contact)
    # then leads and loyalty added their keys, and the export their histories
    assert (data["score"], data["temperature"], data["stages"], data["tiers"]) == (7, "cold", {"Sales": "New"},
                                                                                  {"Club": "Bronze"})
    assert [row["delta"] for row in export["score_history"]] == [7]
    assert [row["to_stage__name"] for row in export["stage_history"]] == ["New"]


@pytest.fixture
def nothing_registered():
    """Contacts as if no area above it were installed (the registries emptied in place: the
    modules that read them hold references to these very objects)."""
    registries = [registry.LIST_FILTERS, registry.SCORE_LABELS, registry.CARD_PANELS, registry.TIMELINE_SOURCES,
                  registry.RULE_NAMERS, registry.CONTACT_PARTS.representation, registry.CONTACT_PARTS.export]
    saved = [entries.copy() for entries in registries]
    for entries in registries:
        entries.clear()
    yield
    for entries, before in zip(registries, saved, strict=True):
        if isinstance(entries, dict):
            entries.update(before)
        else:
            entries.extend(before)


def test_contacts_work_without_the_areas_above(nothing_registered, marketer_client):
    # given a contact with a tag and points, and no area registered
    contact = ContactFactory(email="alone@example.com")
    give_tag(contact, "kurtki", 2)
    give_points(contact, 120)
    # when the list, the card and the JSON are produced
    listed = marketer_client.get(LIST, {"temperature": "hot"})
    card = marketer_client.get(reverse("contacts:card", args=[contact.pk])).content.decode()
    data = contact_representation(contact)
    # then they show contacts' own data only (an unknown filter is ignored, not an error)
    assert _listed(listed) == {"alone@example.com"}
    assert 'id="id_temperature"' not in listed.content.decode() and "temp-hot" not in listed.content.decode()
    assert "card-panel" not in card and "warm from" not in card and "kurtki" in card
    assert set(data) == {"email", "first_name", "last_name", "phone", "country", "city", "birth_date", "properties",
                         "consents", "tags"}
