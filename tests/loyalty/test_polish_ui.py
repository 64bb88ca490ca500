"""The loyalty pages in Polish: programme list and overview, the editor and the card's panel, with
the distance to the next tier in the right plural form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts.models import ContactTag
from loyalty.models import Program
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program

pytestmark = pytest.mark.django_db

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def test_programme_pages_are_in_polish(admin_client):
    # given a grace-period programme
    program = make_program(downgrade_policy=Program.Downgrade.GRACE, grace_days=3)
    # when a Polish browser opens the list, the overview and the editor
    listing = admin_client.get(reverse("loyalty:programs"), **POLISH).content.decode()
    overview = admin_client.get(reverse("loyalty:program_detail", kwargs={"program_id": program.pk}), **POLISH)
    editor = admin_client.get(reverse("loyalty:program_edit", kwargs={"program_id": program.pk}), **POLISH)
    # then
    assert "Programy lojalnościowe" in listing and "po 3 dniach" in listing
    assert "Punkty tagu „PURCHASE”" in listing
    assert "Poziomy i korzyści" in overview.content.decode() and "5% rabatu" in overview.content.decode()
    assert "Podgląd skutków" in editor.content.decode() and "Darmowa dostawa" in editor.content.decode()


@pytest.mark.parametrize(("score", "words"), [(5, "jeszcze 1 punkt tagu PURCHASE"), (3, "jeszcze 3 punkty tagu PURCHASE"),
                                              (0, "jeszcze 6 punktów tagu PURCHASE")])
def test_the_card_says_how_far_the_next_tier_is(admin_client, score, words):
    # given a Bronze contact (Silver from 6)
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 1)
    make_program()
    ContactTag.objects.filter(contact=contact).update(score=score)
    # when
    body = admin_client.get(reverse("loyalty:card_panel", kwargs={"contact_id": contact.pk}), **POLISH).content.decode()
    # then
    assert f"{words} do poziomu <strong>Silver</strong>" in body
