"""Plain-language sentences and the per-contact "why"."""

from __future__ import annotations

import pytest

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
