"""Every change the contract lists is written to the outbox by the statement that makes it, in the
same transaction, one row per contact — never from a loop (the row counts are the proof)."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection, transaction

from contacts.services import consents_record, contact_erase
from core.outbox import OutboxMessage
from leads.funnels import stages_set
from leads.models import TemperatureSettings
from leads.scoring import score_recompute_all
from leads.temperature import thresholds_save
from segments.services import segment_members_refresh_for_contacts, segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import funnel_with_stages, give_points
from tests.loyalty.factories import make_program
from tests.segments.factories import make_segment

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


def messages(kind: str) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(type=kind).order_by("id"))


def test_full_refresh_writes_one_message_per_contact_that_moved():
    # given 30 contacts in the segment's definition and a refreshed segment
    contacts = [ContactFactory() for _ in range(30)]
    for contact in contacts:
        give_tag(contact, "kurtki", 5)
    segment = make_segment(KURTKI_3)
    # when the first refresh materialises it
    segment_refresh(segment.pk)
    # then 30 entered, with the segment in its column
    entered = messages("segment.entered")
    assert len(entered) == 30
    assert {m.contact_id for m in entered} == {c.pk for c in contacts}
    assert {m.segment_id for m in entered} == {segment.pk}
    # when 12 lose the tag and the segment refreshes again
    from contacts.models import ContactTag

    ContactTag.objects.filter(contact__in=contacts[:12]).delete()
    segment_refresh(segment.pk)
    # then exactly those 12 exited and nobody entered again
    assert {m.contact_id for m in messages("segment.exited")} == {c.pk for c in contacts[:12]}
    assert len(messages("segment.entered")) == 30


def test_incremental_refresh_writes_moves_of_the_given_contacts():
    # given a refreshed segment and a contact who then gains the tag
    joiner = ContactFactory()
    segment = make_segment(KURTKI_3)
    segment_refresh(segment.pk)
    give_tag(joiner, "kurtki", 4)
    # when the rules engine's incremental refresh re-evaluates the contact
    segment_members_refresh_for_contacts([joiner.pk])
    # then one entered message
    assert [(m.contact_id, m.segment_id) for m in messages("segment.entered")] == [(joiner.pk, segment.pk)]


def test_score_change_crossing_a_threshold_writes_temperature_changed():
    # given thresholds warm 50 / hot 100 and a contact at 90
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    lead = ContactFactory()
    give_points(lead, 90)
    assert [m.data for m in messages("lead.temperature_changed")] == [{"from": "cold", "to": "warm", "score": 90}]
    # when 5 points do not cross, then 10 more do
    give_points(lead, 5)
    give_points(lead, 10)
    # then only the crossing is told
    assert [m.data for m in messages("lead.temperature_changed")] == [
        {"from": "cold", "to": "warm", "score": 90}, {"from": "warm", "to": "hot", "score": 105}
    ]


def test_threshold_change_writes_a_message_per_contact_it_moves():
    # given scores 40, 60, 120 under 50 / 100
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    contacts = {score: ContactFactory() for score in (40, 60, 120)}
    for score, contact in contacts.items():
        give_points(contact, score)
    OutboxMessage.objects.all().delete()
    # when the thresholds become 30 / 60
    thresholds_save(warm=30, hot=60)
    # then 40 cold→warm, 60 warm→hot, 120 stays hot
    moved = {m.contact_id: m.data for m in messages("lead.temperature_changed")}
    assert moved == {
        contacts[40].pk: {"from": "cold", "to": "warm", "score": 40},
        contacts[60].pk: {"from": "warm", "to": "hot", "score": 60},
    }


def test_score_repair_tells_the_temperature_it_changes():
    # given a maintained score knocked off the ledger (hot by the ledger, cold as stored)
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    lead = ContactFactory()
    give_points(lead, 150)
    OutboxMessage.objects.all().delete()
    from contacts.models import Contact

    Contact.objects.filter(pk=lead.pk).update(score=0)
    # when the recompute repairs it
    with connection.cursor() as cursor:
        repaired = score_recompute_all(cursor)
    # then one row repaired and its temperature change told
    assert repaired == 1
    assert [m.data for m in messages("lead.temperature_changed")] == [{"from": "cold", "to": "hot", "score": 150}]


def test_tier_change_writes_loyalty_tier_changed():
    # given a PURCHASE programme (Bronze 0, Silver 6) and a contact with PURCHASE 7
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 7)
    # when the programme is created and computed
    program = make_program()
    # then every contact that got a tier is told, with the programme in its column
    rows = messages("loyalty.tier_changed")
    assert [(m.contact_id, m.program_id, m.data) for m in rows] == [(contact.pk, program.pk, {"from": None, "to": "Silver"})]


def test_stage_move_writes_funnel_stage_changed():
    # given a funnel and a contact
    funnel = funnel_with_stages("Sales")
    contact = ContactFactory()
    # when it enters New, then moves to MQL, then "moves" to MQL again
    with connection.cursor() as cursor:
        stages_set(cursor, contact_ids=[contact.pk], funnel_names=["Sales"], stage_names=["New"], cause="manual")
        stages_set(cursor, contact_ids=[contact.pk], funnel_names=["Sales"], stage_names=["MQL"], cause="manual")
        stages_set(cursor, contact_ids=[contact.pk], funnel_names=["Sales"], stage_names=["MQL"], cause="manual")
    # then two real moves
    assert [(m.funnel_id, m.data) for m in messages("funnel.stage_changed")] == [
        (funnel.pk, {"from": None, "to": "New"}), (funnel.pk, {"from": "New", "to": "MQL"})
    ]


def test_consent_change_writes_consent_changed_only_on_real_changes():
    # given a contact
    contact = ContactFactory()
    # when email consent is granted, granted again, then withdrawn
    with connection.cursor() as cursor:
        for granted in (True, True, False):
            consents_record(cursor, contact_ids=[contact.pk], channels=["email"], granted=[granted], source="api")
    # then two messages
    assert [m.data for m in messages("consent.changed")] == [
        {"channel": "email", "granted": True, "source": "api"}, {"channel": "email", "granted": False, "source": "api"}
    ]


def test_erasure_writes_the_hash_only():
    # given a contact
    contact = ContactFactory(email="gone@example.com")
    # when erased
    contact_erase(contact)
    # then one message with the lower-case email's SHA-256 and nothing else
    (erased,) = messages("contact.erased")
    assert erased.data == {"email_sha256": hashlib.sha256(b"gone@example.com").hexdigest()}


def test_a_rolled_back_change_leaves_no_message():
    # given a contact
    lead = ContactFactory()
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    # when points that make it hot are rolled back
    with pytest.raises(RuntimeError), transaction.atomic():
        give_points(lead, 500)
        raise RuntimeError("roll back")
    # then no message survived
    assert not OutboxMessage.objects.exists()
