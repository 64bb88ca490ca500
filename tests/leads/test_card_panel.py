"""The contact card's lead panel: score dynamics, why, stages — constant queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from automation.models import Rule
from leads.models import ContactStage, ScoreChange, StageTransition
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages, give_points

pytestmark = pytest.mark.django_db


def _rule(name: str) -> Rule:
    return Rule.objects.create(name=name, event_type="purchase", actions=[{"type": "add_score", "points": 25}])


def test_panel_shows_dynamics_and_top_rules(marketer_client):
    # given points from two rules, some of them 10 days old
    contact = ContactFactory()
    order, newsletter = _rule("Any order"), _rule("Newsletter open")
    give_points(contact, 25, 25, rule_id=order.pk)
    give_points(contact, 10, rule_id=newsletter.pk)
    ScoreChange.objects.filter(rule=order).update(created_at=timezone.now() - timedelta(days=10))
    # when the card loads the panel
    response = marketer_client.get(reverse("leads:card_panel", args=[contact.pk]), headers={"HX-Request": "true"})
    # then
    assert response.status_code == 200
    context = response.context
    assert (context["points_7d"], context["points_30d"], context["points_prev_7d"]) == (10, 60, 50)
    assert context["trend"] == "down"
    assert [(row["name"], row["points"]) for row in context["why"]] == [("Any order", 50), ("Newsletter open", 10)]
    assert context["score_figure"]["data"][0]["y"][-1] == 60


def test_panel_query_count_is_constant(marketer_client, django_assert_max_num_queries):
    contact = ContactFactory()
    for name in ("A", "B", "C"):
        funnel_with_stages(name)
    for _ in range(30):
        give_points(contact, 3)
    marketer_client.get(reverse("leads:card_panel", args=[contact.pk]))
    with django_assert_max_num_queries(12):
        marketer_client.get(reverse("leads:card_panel", args=[contact.pk]))


def test_marketer_moves_a_stage_from_the_panel(marketer_client, marketer):
    funnel = funnel_with_stages("Sales")
    contact = ContactFactory()
    stage = funnel.stages.get(name="MQL")
    response = marketer_client.post(reverse("leads:card_stage", args=[contact.pk]), {"stage": stage.pk})
    assert response.status_code == 200
    assert ContactStage.objects.get(contact=contact).stage == stage
    move = StageTransition.objects.get(contact=contact)
    assert (move.cause, move.user) == ("manual", marketer)


def test_sales_moves_only_leads_they_hold(sales_client, sales):
    funnel = funnel_with_stages("Sales")
    stage = funnel.stages.get(name="SQL")
    not_theirs = ContactFactory()
    theirs = ContactFactory(owner=sales)
    sales_client.post(reverse("leads:card_stage", args=[not_theirs.pk]), {"stage": stage.pk})
    sales_client.post(reverse("leads:card_stage", args=[theirs.pk]), {"stage": stage.pk})
    assert not ContactStage.objects.filter(contact=not_theirs).exists()
    assert ContactStage.objects.get(contact=theirs).stage == stage


def test_panel_status_update_renders_the_panel(sales_client, sales):
    contact = ContactFactory(owner=sales)
    response = sales_client.post(reverse("leads:lead_update", args=[contact.pk]) + "?panel=1", {"status": "lost", "note": ""})
    assert f'id="lead-panel-{contact.pk}"' in response.content.decode()
    assert "reason is required" in response.content.decode()
