"""The generator behind ``seed_demo`` and the benchmark: a small run (300 contacts), not timed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from automation.models import EventReceipt, PendingEvent, Rule, RuleApplication
from contacts.models import Consent, Contact, ContactTag, Event, Note, Tag, TagScoreChange
from demo import datagen
from demo.management.commands.seed_demo import reset_generated_data
from leads.models import ContactStage, ScoreChange, StageTransition
from loyalty.models import ContactTier
from segments.models import Segment, SegmentMember

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _scalar(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


@pytest.fixture
def generated(db):
    return datagen.generate(contacts=300, demo=True, now=NOW)


def test_generates_contacts_events_and_tags_of_the_promised_shape(generated):
    # given a generated shop of 300 contacts (fixture)
    # when we count what it wrote
    contacts = Contact.objects.count()
    events = Event.objects.count()
    tags_per_contact = ContactTag.objects.count() / contacts
    # then the sizes match the benchmark's recipe: ~20 events and ~8 tags per contact, ~190 tags
    assert contacts == 300
    assert 12 <= events / contacts <= 30
    assert 5 <= tags_per_contact <= 11
    assert 150 <= Tag.objects.count() <= 260
    assert EventReceipt.objects.count() == events
    assert not PendingEvent.objects.exists()
    assert set(Event.objects.values_list("type", flat=True).distinct()) >= {
        "page_view", "product_view", "purchase", "email_open", "email_click", "add_to_cart"}
    assert Contact.objects.filter(country="PL").count() > contacts * 0.7
    assert generated.rows["contacts_contact"] == 300


def test_scores_and_activity_are_consistent_with_the_ledger_and_events(generated):
    # given the generated shop
    # when we compare the maintained columns with their sources
    wrong_scores = _scalar(
        """SELECT count(*) FROM contacts_contact c
           LEFT JOIN (SELECT contact_id, sum(delta) AS s FROM leads_scorechange GROUP BY 1) l ON l.contact_id = c.id
           WHERE c.score <> coalesce(l.s, 0)""")
    wrong_activity = _scalar(
        """SELECT count(*) FROM contacts_contact c
           LEFT JOIN (SELECT contact_id, max(occurred_at) AS m FROM automation_event GROUP BY 1) e ON e.contact_id = c.id
           WHERE c.last_activity_at IS DISTINCT FROM e.m""")
    ledger_of_wrong_type = _scalar(
        """SELECT count(*) FROM leads_scorechange s JOIN automation_rule r ON r.id = s.rule_id
           JOIN automation_event e ON e.id = s.event_pk WHERE e.type <> r.event_type""")
    # then every score is the ledger's sum, every last activity the last event, every point from a matching event
    assert ScoreChange.objects.exists()
    assert wrong_scores == 0
    assert wrong_activity == 0
    assert ledger_of_wrong_type == 0


def test_purchase_values_are_copied_and_tiers_follow_the_purchase_tag(generated):
    # given the generated shop
    purchases = Event.objects.filter(type="purchase")
    # when we look at purchases and loyalty tiers
    mismatched_values = _scalar(
        "SELECT count(*) FROM automation_event WHERE type = 'purchase' AND value IS DISTINCT FROM (properties->>'value')::numeric")
    wrong_tiers = _scalar(
        """SELECT count(*) FROM loyalty_contacttier ct
           LEFT JOIN contacts_contacttag t ON t.contact_id = ct.contact_id
                AND t.tag_id = (SELECT id FROM contacts_tag WHERE key = 'purchase')
           WHERE ct.metric_value <> coalesce(t.score, 0)
              OR ct.tier_id IS DISTINCT FROM (SELECT id FROM loyalty_tier WHERE program_id = ct.program_id
                                              AND min <= coalesce(t.score, 0) ORDER BY min DESC LIMIT 1)""")
    # then values are numeric PLN and each contact sits in the right tier
    assert purchases.exists()
    assert mismatched_values == 0
    assert ContactTier.objects.count() == 300
    assert wrong_tiers == 0


def test_funnel_consents_and_demo_objects_exist(generated):
    # given the generated demo shop
    # when we look at the funnel, consents and what the demo adds
    # then every contact is in the funnel with a path of transitions, and consents have history
    assert ContactStage.objects.count() == 300
    assert StageTransition.objects.count() >= 300
    assert Consent.objects.filter(channel="email", granted=True).count() > 150
    assert _scalar("SELECT count(*) FROM contacts_consent c WHERE NOT EXISTS (SELECT 1 FROM contacts_consentchange h WHERE h.contact_id = c.contact_id AND h.channel = c.channel)") == 0
    assert Segment.objects.count() == len(datagen.SEGMENTS) == 20
    assert Note.objects.exists()
    assert Contact.objects.filter(owner__username__in=["sales", "sales2"]).exists()
    assert Rule.objects.filter(active=True).exists()


def test_generation_is_deterministic_for_a_given_size(db):
    # given two generations of the same size at the same moment
    def snapshot():
        contacts = list(Contact.objects.order_by("id").values_list(
            "email", "city", "score", "birth_date", "owner__username", "lead_status", "lead_status_changed_at"))
        events = list(Event.objects.order_by("id").values_list("event_id", "type", "occurred_at", "properties")[:2000])
        tags = list(ContactTag.objects.order_by("contact_id", "tag__key").values_list("contact_id", "tag__key", "score"))
        history = sorted(TagScoreChange.objects.values_list("contact_id", "tag__key", "delta", "score_after", "created_at"))
        notes = sorted(Note.objects.values_list("contact_id", "author__username", "text", "created_at"))
        moves = sorted(StageTransition.objects.values_list("contact_id", "to_stage__name", "cause", "created_at"))
        guards = RuleApplication.objects.count()
        members = sorted(SegmentMember.objects.values_list("segment__name", "contact_id"))
        return contacts, events, tags, history, notes, moves, guards, members

    datagen.generate(contacts=120, now=NOW)
    first = snapshot()
    reset_generated_data()
    datagen.generate(contacts=120, now=NOW)
    # when we compare them
    second = snapshot()
    # then they are identical
    assert first == second


def test_refuses_to_generate_into_a_database_with_contacts(generated):
    # given a shop already generated
    # when we generate again without reset
    # then it refuses rather than mixing data
    with pytest.raises(ValueError, match="not empty"):
        datagen.generate(contacts=10, now=NOW)
