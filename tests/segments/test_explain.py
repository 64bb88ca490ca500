"""Plain-language sentences and the per-contact "why"."""

from __future__ import annotations

import pytest
from django.utils import translation

from segments.explain import describe, explain_for_contact
from segments.presets import PRESETS
from segments.validation import validate_definition
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import consent

pytestmark = pytest.mark.django_db

DEFINITION = {
    "any": [
        {"all": [{"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3},
                 {"type": "consent", "channel": "email", "value": True}]},
        {"all": [{"type": "score", "op": "gte", "value": 100}, {"not": {"type": "inactive_days", "value": 365}}]},
    ]
}


def test_sentence_reads_the_whole_tree():
    assert describe(DEFINITION) == (
        "Contacts who (have the tag “kurtki” with a score of at least 3 and have given email consent) or "
        "(have a contact score of at least 100 and were active in the last 365 days)."
    )


def test_sentence_mentions_the_sending_switch():
    assert describe({"type": "has_tag", "tag": "vip"}, for_sending=True) == (
        "Contacts who have the tag “vip”, and have given email consent (for sending)."
    )


@pytest.mark.parametrize("preset", PRESETS, ids=[preset.key for preset in PRESETS])
def test_every_template_is_valid_and_describable(preset):
    validate_definition(preset.definition)
    assert describe(preset.definition).startswith("Contacts who ")


def test_why_marks_each_condition_for_one_contact():
    # given a contact with the tag but no consent, score 120 and never active
    contact = ContactFactory(score=120)
    give_tag(contact, "Kurtki", 5)
    consent(contact, "email", False)
    # when
    explained = explain_for_contact(DEFINITION, contact.pk)
    # then the first group fails on consent, the second on inactivity
    first, second = explained.children
    assert [child.passed for child in first.children] == [True, False]
    assert [child.passed for child in second.children] == [True, False]
    assert second.children[1].kind == "not"
    assert explained.passed is False


def test_why_for_a_member():
    contact = ContactFactory(score=10)
    give_tag(contact, "kurtki", 3)
    consent(contact, "email", True)
    assert explain_for_contact(DEFINITION, contact.pk).passed is True


def test_sentence_in_polish_inflects_counts_and_negations():
    # given a definition counting purchases, one of them negated
    definition = {"all": [
        {"type": "event_count", "event_type": "purchase", "op": "gte", "value": 2, "within_days": 30},
        {"not": {"type": "event_count", "event_type": "purchase", "op": "gte", "value": 5}},
        {"type": "has_tag", "tag": "kurtki"},
    ]}
    # when it is told in Polish
    with translation.override("pl"):
        sentence = describe(definition, for_sending=True)
    # then the nouns agree with the numbers (2 zakupy, 5 zakupów) and the negation takes the genitive
    assert sentence == (
        "Kontakty, które miały co najmniej 2 zakupy w ciągu ostatnich 30 dni i nie miały co najmniej 5 zakupów "
        "kiedykolwiek i mają tag „kurtki”, i które wyraziły zgodę na kanał e-mail (do wysyłki)."
    )
