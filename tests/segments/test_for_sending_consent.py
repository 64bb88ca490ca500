"""The "for sending" switch adds email consent once: not again when the definition's top-level AND
already requires it (the consent subquery joined twice made the live count about three times
slower), still when consent only appears under OR / NOT. Counts, stored membership and the "why"
panel agree with hand-written SQL either way."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact
from segments.compiler import EMAIL_CONSENT, compile_definition, effective_definition
from segments.explain import describe, explain_for_contact
from segments.models import Segment, SegmentMember
from segments.services import (
    segment_count,
    segment_members_refresh_for_contacts,
    segment_preview,
    segment_queryset,
    segment_refresh,
)
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import consent, make_segment

pytestmark = pytest.mark.django_db

KURTKI = {"type": "has_tag", "tag": "kurtki"}
SCORE_10 = {"type": "score", "op": "gte", "value": 10}
CONSENT_SQL = '"channel" = '  # the consent condition, as a subquery or as the count's driver

# The hand-written answer for contacts with email consent: the oracle's building blocks.
HAS_EMAIL_CONSENT = ("EXISTS (SELECT 1 FROM contacts_consent s WHERE s.contact_id = c.id"
                     " AND s.channel = 'email' AND s.granted)")
HAS_KURTKI = ("EXISTS (SELECT 1 FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id"
              " WHERE ct.contact_id = c.id AND t.key = 'kurtki')")
SCORE_AT_LEAST_10 = "c.score >= 10"

# definition -> the SQL condition it means *with* the "for sending" switch on
CASES = {
    "consent in the top-level AND": (
        {"all": [SCORE_10, EMAIL_CONSENT, KURTKI]},
        f"{SCORE_AT_LEAST_10} AND {HAS_EMAIL_CONSENT} AND {HAS_KURTKI}"),
    "consent in a nested AND, spelt differently": (
        {"all": [SCORE_10, {"all": [KURTKI, {"type": "consent", "channel": " Email", "value": True}]}]},
        f"{SCORE_AT_LEAST_10} AND {HAS_KURTKI} AND {HAS_EMAIL_CONSENT}"),
    "consent alone": (
        EMAIL_CONSENT,
        HAS_EMAIL_CONSENT),
    "consent under OR": (
        {"all": [SCORE_10, {"any": [KURTKI, EMAIL_CONSENT]}]},
        f"{SCORE_AT_LEAST_10} AND ({HAS_KURTKI} OR {HAS_EMAIL_CONSENT}) AND {HAS_EMAIL_CONSENT}"),
    "consent under NOT": (
        {"all": [KURTKI, {"not": {"all": [SCORE_10, EMAIL_CONSENT]}}]},
        f"{HAS_KURTKI} AND NOT ({SCORE_AT_LEAST_10} AND {HAS_EMAIL_CONSENT}) AND {HAS_EMAIL_CONSENT}"),
    "consent withheld": (
        {"all": [KURTKI, {"type": "consent", "channel": "email", "value": False}]},
        f"{HAS_KURTKI} AND NOT {HAS_EMAIL_CONSENT} AND {HAS_EMAIL_CONSENT}"),
}


@pytest.fixture
def contacts():
    """Every combination of tag, score and email consent (granted, withdrawn, never asked), plus
    an SMS-only consent and an anonymous profile that no segment may count."""
    made = []
    for tagged in (False, True):
        for score in (0, 20):
            for email_consent in (None, False, True):
                contact = ContactFactory(email=f"t{tagged:d}-s{score}-c{email_consent}@example.com", score=score)
                if tagged:
                    give_tag(contact, "kurtki", 2)
                if email_consent is not None:
                    consent(contact, "email", email_consent)
                made.append(contact)
    sms_only = ContactFactory(email="sms@example.com", score=20)
    give_tag(sms_only, "kurtki", 2)
    consent(sms_only, "sms", True)
    anonymous = ContactFactory(email="anonymous@example.com", score=20, is_anonymous=True)
    give_tag(anonymous, "kurtki", 2)
    consent(anonymous, "email", True)
    return made + [sms_only]


def oracle(condition: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT c.email FROM contacts_contact c WHERE NOT c.is_anonymous AND {condition}")
        return {email for (email,) in cursor.fetchall()}


def consent_joins(sql: str) -> int:
    return sql.count(CONSENT_SQL)


@pytest.mark.parametrize("case", CASES)
def test_for_sending_selects_what_hand_written_sql_selects(contacts, case):
    # given a definition and the SQL it means with the switch on
    definition, condition = CASES[case]
    expected = oracle(condition)
    # when / then: the live count, the preview's sample and the member query agree with it
    assert segment_count(definition, for_sending=True) == len(expected)
    assert set(segment_queryset(definition, for_sending=True).values_list("email", flat=True)) == expected
    preview = segment_preview(definition, for_sending=True, sample_size=100)
    assert (preview.count, set(preview.emails)) == (len(expected), expected)


@pytest.mark.parametrize("case", CASES)
def test_stored_membership_and_why_panel_follow_the_same_rule(contacts, case):
    # given a saved segment for sending
    definition, condition = CASES[case]
    expected = oracle(condition)
    segment = make_segment(definition, for_sending=True)
    # when the worker refreshes it in full, and then the rules engine re-evaluates every contact
    segment_refresh(segment.pk)
    full = set(SegmentMember.objects.filter(segment=segment).values_list("contact__email", flat=True))
    SegmentMember.objects.filter(segment=segment).delete()
    segment_members_refresh_for_contacts([contact.pk for contact in contacts])
    incremental = set(SegmentMember.objects.filter(segment=segment).values_list("contact__email", flat=True))
    # then both write exactly the hand-written SQL's members, and the "why" panel says the same
    assert full == incremental == expected
    for contact in contacts:
        explained = explain_for_contact(effective_definition(segment), contact.pk)
        assert explained is not None and explained.passed == (contact.email in expected), contact.email


@pytest.mark.parametrize("case", ["consent in the top-level AND", "consent in a nested AND, spelt differently",
                                  "consent alone"])
def test_consent_already_required_is_not_added_again(contacts, case):
    # given a definition whose every member must have email consent
    definition, _condition = CASES[case]
    # when it is compiled for sending
    for_sending = effective_definition(Segment(definition=definition, for_sending=True))
    sql = str(Contact.objects.filter(compile_definition(for_sending)).query)
    # then the definition is used as it is: one consent subquery in the member query ...
    assert for_sending is definition
    assert consent_joins(sql) == 1
    # ... and in the live count the builder's preview runs
    with CaptureQueriesContext(connection) as queries:
        segment_count(definition, for_sending=True)
    [count_sql] = [query["sql"] for query in queries.captured_queries if "COUNT(" in query["sql"]]
    assert consent_joins(count_sql) == 1


@pytest.mark.parametrize("case", ["consent under OR", "consent under NOT", "consent withheld"])
def test_consent_under_or_not_still_gets_the_switchs_condition(case):
    # given a definition that does not require email consent of every member
    definition, _condition = CASES[case]
    # when / then: the switch adds email consent at the top
    assert effective_definition(Segment(definition=definition, for_sending=True)) == {
        "all": [definition, EMAIL_CONSENT]}
    assert effective_definition(Segment(definition=definition, for_sending=False)) is definition


def test_sentence_still_mentions_sending(contacts):
    # given a definition that already requires email consent
    definition, _condition = CASES["consent in the top-level AND"]
    # when / then: the sentence keeps saying what the switch does
    assert describe(definition, for_sending=True).endswith("(for sending).")
    assert describe(definition).endswith(".") and "for sending" not in describe(definition)
