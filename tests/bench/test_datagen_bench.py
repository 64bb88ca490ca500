"""The benchmark's data (``generate(demo=False)``) is a shop that has worked: rule firings with their
guard rows, tag history, funnel moves by stage rules, owned leads with status history, notes, and
20 saved segments whose memberships the rules engine keeps current. Small run (300 contacts).

Each check recomputes what the generator should have written from the events and contacts
themselves (the rules' Python condition matcher, the segment language's Python evaluator), not
through the SQL the generator runs."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from automation.ingestion import events_ingest
from automation.models import Rule, RuleApplication
from contacts.models import Contact, ContactTag, Event, Note, TagScoreChange
from core.conditions import condition_matches
from core.outbox import OutboxMessage
from demo import datagen
from leads.funnels import transition_stays_recompute
from leads.models import ContactStage, LeadStatusChange, ScoreChange, StageTransition, TemperatureSettings
from segments.dirty import segments_dirty_refresh
from segments.models import Segment, SegmentMember
from segments.services import segment_count
from tests.automation.factories import event as event_payload
from tests.automation.factories import process_all
from tests.segments.evaluator import World

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
EMAIL_CONSENT = {"type": "consent", "channel": "email", "value": True}


@pytest.fixture
def bench_shop(db):
    return datagen.generate(contacts=300, demo=False, now=NOW)


def _events_by_contact() -> dict[int, list[Event]]:
    events: dict[int, list[Event]] = defaultdict(list)
    for event in Event.objects.order_by("occurred_at", "id"):
        events[event.contact_id].append(event)
    return events


def _fires(rule: Rule, event: Event) -> bool:
    return event.type == rule.event_type and all(condition_matches(c, event.properties) for c in rule.conditions)


def test_every_rule_firing_has_its_guard_row_and_its_points(bench_shop):
    # given the generated bench shop (fixture) and its active rules, the two stage rules among them
    rules = list(Rule.objects.filter(active=True))
    stage_rules = [rule for rule in rules if any(a["type"] == "set_stage" for a in rule.actions)]
    # when we match every event against every rule in Python
    expected = {
        (rule.pk, event.pk)
        for event in Event.objects.all()
        for rule in rules
        if _fires(rule, event) and not rule.once_per_contact
    }
    guarded = set(RuleApplication.objects.values_list("rule_id", "event_pk"))
    ledger = {
        (rule_id, event_pk): points
        for rule_id, event_pk, points in ScoreChange.objects.filter(rule__isnull=False)
        .values("rule_id", "event_pk")
        .annotate(points=Sum("delta"))
        .values_list("rule_id", "event_pk", "points")
    }
    applied_points = {
        (rule_id, event_pk): points
        for rule_id, event_pk, points in RuleApplication.objects.filter(points__gt=0).values_list(
            "rule_id", "event_pk", "points"
        )
    }
    # then each firing has exactly one guard row, and the guard's points are the ledger's
    assert len(stage_rules) == 2
    assert not any(rule.once_per_contact for rule in rules)  # (the expectation above covers no once-rules)
    assert guarded == expected
    assert {rule_id for rule_id, _ in guarded} >= {rule.pk for rule in stage_rules}
    assert applied_points == ledger


def test_tag_history_adds_up_to_every_tag_score(bench_shop):
    # given the generated bench shop
    history = defaultdict(list)
    for change in TagScoreChange.objects.order_by("created_at", "id"):
        history[(change.contact_id, change.tag_id)].append(change)
    guarded = set(RuleApplication.objects.values_list("rule_id", "event_pk"))
    # when we replay each contact's history of each tag
    wrong = []
    for row in ContactTag.objects.all():
        changes = history.pop((row.contact_id, row.tag_id), [])
        running = 0
        for change in changes:
            running += change.delta
            if change.score_after != running:
                wrong.append((row.contact_id, row.tag_id, change.pk))
        if running != row.score:
            wrong.append((row.contact_id, row.tag_id, "total"))
    by_rule = TagScoreChange.objects.filter(source="rule")
    # then every score is the sum of its changes, every step says the score it left, no history
    # without a tag, and every change by a rule comes from a guarded firing
    assert TagScoreChange.objects.count() > ContactTag.objects.count()
    assert wrong == []
    assert history == {}
    assert by_rule.exists() and TagScoreChange.objects.exclude(source="rule").exists()
    assert set(by_rule.values_list("rule_id", "event_pk")) <= guarded


def test_funnel_moves_follow_the_stage_rules(bench_shop):
    # given the generated bench shop and the stage each stage rule moves to
    stage_rules = {
        rule.pk: next(a["stage"] for a in rule.actions if a["type"] == "set_stage")
        for rule in Rule.objects.filter(active=True)
        if any(a["type"] == "set_stage" for a in rule.actions)
    }
    rules = {rule.pk: rule for rule in Rule.objects.filter(pk__in=stage_rules)}
    events = _events_by_contact()
    current = {row.contact_id: row.stage.name for row in ContactStage.objects.select_related("stage")}
    moves = defaultdict(list)
    for move in StageTransition.objects.select_related("from_stage", "to_stage").order_by("created_at", "id"):
        moves[move.contact_id].append(move)
    # when we replay each contact's stage-rule firings from its events
    wrong = []
    for contact_id in Contact.objects.values_list("id", flat=True):
        hits = [(event, rule_id) for event in events[contact_id] for rule_id in rules if _fires(rules[rule_id], event)]
        path = moves[contact_id]
        previous = None
        for move in path:
            if (move.from_stage.name if move.from_stage else None) != previous or move.to_stage.name == previous:
                wrong.append((contact_id, "broken chain", move.pk))
            previous = move.to_stage.name
        if not path or path[-1].to_stage.name != current[contact_id]:
            wrong.append((contact_id, "current stage is not the last move"))
        if hits:
            last_event, last_rule = hits[-1]
            if current[contact_id] != stage_rules[last_rule]:
                wrong.append((contact_id, "not where the last stage rule put it"))
            first_event, _ = hits[0]
            before = [move for move in path if move.created_at < first_event.occurred_at]
            if any(move.cause != "api" for move in before) or any(move.cause != "rule" for move in path[len(before) :]):
                wrong.append((contact_id, "moves before / after the first firing have the wrong cause"))
            fired = {(event.pk, rule_id) for event, rule_id in hits}
            if any((move.event_pk, move.rule_id) not in fired for move in path[len(before) :]):
                wrong.append((contact_id, "a rule move without its firing"))
        elif current[contact_id] == "Customer" or any(move.cause != "api" for move in path):
            wrong.append((contact_id, "moved without a stage rule firing"))
    # then every contact's moves chain from New to its current stage as the rules would have moved it
    assert len(current) == Contact.objects.count()
    assert wrong == []
    assert StageTransition.objects.filter(cause="rule").exists()


def test_sales_own_part_of_the_warm_and_hot_leads_with_their_status_history(bench_shop):
    # given the generated bench shop and its thresholds
    thresholds = TemperatureSettings.current()
    owned = Contact.objects.filter(owner__isnull=False)
    changes = defaultdict(list)
    for change in LeadStatusChange.objects.order_by("created_at", "id"):
        changes[change.contact_id].append(change)
    # when we walk each worked lead's status history
    wrong = []
    for contact in Contact.objects.filter(lead_status__in=["contacted", "qualified", "won", "lost"]):
        path = changes.pop(contact.pk, [])
        statuses = ["new"] + [change.to_status for change in path]
        if [change.from_status for change in path] != statuses[:-1] or statuses[-1] != contact.lead_status:
            wrong.append((contact.pk, statuses))
        if path[-1].created_at != contact.lead_status_changed_at or any(c.user_id != contact.owner_id for c in path):
            wrong.append((contact.pk, "time or author"))
        if (contact.lead_status == "lost") != bool(contact.lead_status_reason):
            wrong.append((contact.pk, "reason"))
    # then only warm/hot leads are owned, by the two sales users; some hot leads wait to be claimed;
    # and every worked lead got to its status through the ones before it
    assert owned.exists()
    assert not owned.filter(score__lt=thresholds.warm).exists()
    assert set(owned.values_list("owner__username", flat=True)) == {"sales", "sales2"}
    assert Contact.objects.filter(score__gte=thresholds.hot, owner__isnull=True).exists()
    assert not Contact.objects.filter(owner__isnull=True).exclude(lead_status="new").exists()
    assert wrong == []
    assert changes == {}  # no history for a contact that is still new


def test_a_few_percent_of_contacts_have_one_to_three_notes(bench_shop):
    # given the generated bench shop
    per_contact = dict(Note.objects.values("contact_id").annotate(n=Count("id")).values_list("contact_id", "n"))
    # when / then: 1–3 notes each on a few % of the contacts, by demo users, within the contact's life
    assert 0.01 <= len(per_contact) / Contact.objects.count() <= 0.15
    assert set(per_contact.values()) <= {1, 2, 3}
    assert set(Note.objects.values_list("author__username", flat=True)) <= {"sales", "sales2", "marketer"}
    assert not Note.objects.filter(created_at__gt=NOW).exists()
    assert all(note.created_at >= note.contact.created_at for note in Note.objects.select_related("contact"))


def test_twenty_saved_segments_hold_exactly_their_members(bench_shop):
    # given the generated bench shop and the Python evaluator of the segment language, at the
    # moment the generator evaluated the segments
    world = World(now=NOW)
    segments = list(Segment.objects.order_by("pk"))
    # when we compare each segment's materialised members with the evaluator's and the app's count
    mismatched = []
    for segment in segments:
        definition = {"all": [segment.definition, EMAIL_CONSENT]} if segment.for_sending else segment.definition
        members = set(SegmentMember.objects.filter(segment=segment).values_list("contact_id", flat=True))
        counted = segment_count(segment.definition, for_sending=segment.for_sending, now=NOW)
        if members != world.members(definition) or not segment.count == counted == len(members):
            mismatched.append(segment.name)
    shapes = [str(segment.definition) for segment in segments]
    # then there are 20, each current as of the generation, with exactly the evaluator's members,
    # few enough for the engine to re-evaluate every one of them on events; the refresh's outbox
    # messages are not left for webhook delivery to fan out
    assert len(segments) == 20
    assert all(segment.refreshed_at == NOW for segment in segments)
    assert mismatched == []
    assert sum(1 for segment in segments if segment.count) >= 15
    assert len(segments) <= settings.SEGMENT_INCREMENTAL_MAX_SEGMENTS
    assert any("'type': 'segment'" in shape for shape in shapes)
    assert any("'not'" in shape and "'any'" in shape for shape in shapes)
    assert any("'event_type': 'custom'" in shape for shape in shapes)
    assert any(segment.for_sending for segment in segments)
    assert not OutboxMessage.objects.filter(segment_id__isnull=False).exists()


def test_an_incoming_order_moves_the_stage_and_the_saved_segments(bench_shop):
    # given the generated bench shop and a contact outside the big spenders' segment
    spenders = Segment.objects.get(name="Zamówienia za ponad 5 000 zł")
    contact = (
        Contact.objects.exclude(segment_memberships__segment=spenders)
        .exclude(funnel_stages__stage__name="Customer")
        .order_by("id")
        .first()
    )
    # when an order of 6,000 PLN comes in through ingestion and the engine and the membership drain run
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event_payload("order-1", email=contact.email, type="purchase", value=6000, currency="PLN")])
        process_all()
    segments_dirty_refresh()
    # then the stage rule moved it to Customer and the segment took it in, its count with it
    move = StageTransition.objects.filter(contact=contact).latest("created_at")
    assert (move.to_stage.name, move.cause) == ("Customer", "rule")
    assert SegmentMember.objects.filter(segment=spenders, contact=contact).exists()
    assert Segment.objects.get(pk=spenders.pk).count == spenders.count + 1
    assert Event.objects.get(event_id="order-1").value == Decimal("6000")


def test_every_move_knows_when_its_stay_ended_and_its_stage_was_last_entered(bench_shop):
    # given the generated moves: each stay's end and the stage's previous entry as generated
    generated = dict(StageTransition.objects.values_list("id", "left_at"))
    assert StageTransition.objects.filter(left_at__isnull=False).exists()
    assert StageTransition.objects.filter(previous_entry_at__isnull=False).exists()
    # when the app's own recompute runs over every contact's moves
    with connection.cursor() as cursor:
        changed = transition_stays_recompute(cursor)
    # then it had nothing to change: the generator stored what the app's writer stores
    assert changed == 0
    assert dict(StageTransition.objects.values_list("id", "left_at")) == generated
