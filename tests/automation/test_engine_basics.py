"""The engine applies rules to ingested events: tags with templates, points, stages, once."""

from __future__ import annotations

from unittest import mock

import pytest

from automation.ingestion import events_ingest
from automation.models import PendingEvent, RuleApplication
from tests.automation.factories import event, make_rule, process_all, score_of, tags_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    # The unit tests call the task body directly; nothing goes to a broker.
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def test_template_tag_and_points_are_applied_once():
    # given a category rule and a purchase rule
    make_rule(event_type="product_view", actions=[{"type": "add_tag", "tag": "{category}", "score": 1}])
    make_rule(event_type="purchase", actions=[{"type": "add_tag", "tag": "PURCHASE"}, {"type": "add_score", "points": 25}])
    # when one contact views two jackets and a dress and buys once
    result = events_ingest([
        event("a1", category="kurtki"), event("a2", category="Kurtki"), event("a3", category="sukienki"),
        event("a4", type="purchase", value=120),
    ])
    process_all()
    process_all()  # a second run finds nothing to do
    # then
    assert (result.accepted, result.duplicates) == (4, 0)
    assert tags_of("anna@example.com") == {"kurtki": 2, "sukienki": 1, "PURCHASE": 1}
    assert score_of("anna@example.com") == 25
    assert not PendingEvent.objects.exists()


def test_empty_template_value_skips_the_action():
    # given
    make_rule(actions=[{"type": "add_tag", "tag": "{category}"}, {"type": "add_score", "points": 1}])
    # when an event without a category (and one with a blank one) arrives
    events_ingest([event("b1"), event("b2", category="  ")])
    process_all()
    # then no tag, but the points still count
    assert tags_of("anna@example.com") == {}
    assert score_of("anna@example.com") == 2


def test_once_per_contact_fires_for_the_first_event_only():
    # given
    rule = make_rule(event_type="email_open", actions=[{"type": "add_score", "points": 10}], once_per_contact=True)
    # when three opens come in two requests
    events_ingest([event("c1", type="email_open"), event("c2", type="email_open")])
    process_all()
    events_ingest([event("c3", type="email_open")])
    process_all()
    # then
    assert score_of("anna@example.com") == 10
    assert RuleApplication.objects.filter(rule=rule).count() == 1


def test_points_cap_per_contact():
    # given a rule worth 30 points, capped at 70 per contact
    make_rule(event_type="page_view", actions=[{"type": "add_score", "points": 30}], max_points_per_contact=70)
    # when four page views come (two batches)
    events_ingest([event("d1", type="page_view"), event("d2", type="page_view"), event("d3", type="page_view")])
    process_all()
    events_ingest([event("d4", type="page_view")])
    process_all()
    # then 30 + 30 + 10 and nothing more
    assert score_of("anna@example.com") == 70


def test_rule_activated_later_does_not_apply_to_earlier_events():
    # given an event accepted before the rule became active
    events_ingest([event("e1", category="kurtki")])
    from django.utils import timezone

    make_rule(activated_at=timezone.now() + __import__("datetime").timedelta(seconds=1))
    # when
    process_all()
    # then
    assert tags_of("anna@example.com") == {}


def test_remove_tag_after_add_in_one_batch():
    # given abandoning a cart adds a tag and buying removes it
    make_rule(event_type="cart_abandon", actions=[{"type": "add_tag", "tag": "Porzucony koszyk"}])
    make_rule(event_type="purchase", actions=[{"type": "remove_tag", "tag": "porzucony koszyk"}])
    from datetime import timedelta

    from django.utils import timezone

    t0 = timezone.now() - timedelta(minutes=10)
    # when the purchase comes after the abandon for anna, before it for bob
    events_ingest([
        event("f1", type="cart_abandon", occurred_at=t0),
        event("f2", type="purchase", occurred_at=t0 + timedelta(minutes=1)),
        event("f3", type="purchase", email="bob@example.com", occurred_at=t0),
        event("f4", type="cart_abandon", email="bob@example.com", occurred_at=t0 + timedelta(minutes=1)),
    ])
    process_all()
    # then
    assert tags_of("anna@example.com") == {}
    assert tags_of("bob@example.com") == {"Porzucony koszyk": 1}


def test_set_stage_action():
    # given a funnel
    from leads.models import Funnel, Stage

    funnel = Funnel.objects.create(name="Sales")
    for position, name in enumerate(["New", "Customer"]):
        Stage.objects.create(funnel=funnel, name=name, position=position)
    make_rule(event_type="purchase", actions=[{"type": "set_stage", "funnel": "sales", "stage": "customer"}])
    # when
    events_ingest([event("g1", type="purchase", value=10)])
    process_all()
    # then
    from leads.models import ContactStage

    assert ContactStage.objects.get(contact__email="anna@example.com").stage.name == "Customer"


def test_failing_event_is_isolated_and_marked_failed_after_retries():
    # given a rule, and a hook that fails for one contact only
    make_rule()
    events_ingest([event("h1", category="a"), event("h2", category="b", email="bad@example.com")])
    from contacts.models import Contact

    bad_id = Contact.objects.get(email="bad@example.com").pk

    def hook(contact_ids, **kwargs):
        if bad_id in contact_ids:
            raise RuntimeError("boom")

    # when the engine runs (it retries the failing event until MAX_ATTEMPTS)
    with mock.patch("automation.engine.contacts_changed_send", hook):
        process_all()
    # then the good event is applied, the bad one failed with its error and counts as pending
    assert tags_of("anna@example.com") == {"a": 1}
    bad = PendingEvent.objects.get()
    assert bad.event_id == "h2" and bad.failed and bad.failed_at is not None
    assert "boom" in bad.error
    from automation.engine import events_retry_failed, events_status

    # (both contacts are new: the ingestion queued their memberships; the hook replaced the engine's)
    assert events_status() == {"pending": 3, "waiting": 0, "failed": 1, "memberships_waiting": 2}
    # when retried without the fault
    assert events_retry_failed() == 1
    process_all()
    # then
    assert tags_of("bad@example.com") == {"b": 1}
    status = events_status()
    assert status["waiting"] == status["failed"] == 0
