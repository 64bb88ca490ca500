"""Scoring model check: won vs lost, rule lift, and the suggested hot threshold."""

from __future__ import annotations

import pytest
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from automation.models import Rule, RuleApplication
from leads.model_check import MIN_EVIDENCE, threshold_suggestion
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _cumulative(won: list[int], lost: list[int]) -> list[tuple[int, int, int]]:
    scores = sorted(set(won) | set(lost), reverse=True)
    return [(s, sum(w >= s for w in won), sum(x >= s for x in lost)) for s in scores]


@settings(max_examples=150, deadline=None)
@given(
    won=st.lists(st.integers(-20, 300), min_size=MIN_EVIDENCE, max_size=60),
    lost=st.lists(st.integers(-20, 300), min_size=MIN_EVIDENCE, max_size=60),
)
def test_suggestion_maximises_youden_j(won, lost):
    suggestion = threshold_suggestion(_cumulative(won, lost), len(won), len(lost))
    # brute force over every candidate cut-off
    best_j = max(
        sum(w >= t for w in won) / len(won) - sum(x >= t for x in lost) / len(lost) for t in set(won) | set(lost)
    )
    assert suggestion["j"] == pytest.approx(best_j)
    t = suggestion["threshold"]
    assert suggestion["tpr"] == pytest.approx(sum(w >= t for w in won) / len(won))


def test_no_suggestion_without_evidence():
    assert threshold_suggestion(_cumulative([10, 20], [1]), 2, 1) is None
    # one short of the minimum on one side is still too little
    won, lost = list(range(MIN_EVIDENCE)), list(range(MIN_EVIDENCE - 1))
    assert threshold_suggestion(_cumulative(won, lost), len(won), len(lost)) is None
    assert threshold_suggestion(_cumulative(won, [*lost, 0]), len(won), len(lost) + 1) is not None


def test_page_refuses_advice_below_the_minimum_and_says_why(marketer_client):
    # given a rule that fired for 4 won leads and no lost one (lift 9× with smoothing), 0 lost leads
    diamonds = Rule.objects.create(name="Diamonds page", event_type="page_view", actions=[])
    for index in range(4):
        RuleApplication.objects.create(rule=diamonds, event_pk=index, contact=ContactFactory(lead_status="won", score=90),
                                       points=30)
    # when the check is opened
    response = marketer_client.get(reverse("leads:model_check"))
    # then it advises nothing and says what is missing
    body = response.content.decode()
    assert response.context["suggestion"] is None
    assert response.context["rules"][0]["reading"] == "unknown"
    assert "worth more points?" not in body
    assert f"it takes at least {MIN_EVIDENCE} won and {MIN_EVIDENCE} lost leads, and there are 4 won and 0 lost" in body
    assert f"Mark {MIN_EVIDENCE - 4} more won and {MIN_EVIDENCE} more lost" in body


def test_page_separates_won_and_lost_and_computes_lift(marketer_client):
    # given won leads with high scores that a "Diamonds page" rule fired for, and low-score lost ones
    diamonds = Rule.objects.create(name="Diamonds page", event_type="page_view", actions=[])
    opens = Rule.objects.create(name="Newsletter open", event_type="email_open", actions=[])
    for index in range(MIN_EVIDENCE):
        won = ContactFactory(lead_status="won", score=120 + index)
        lost = ContactFactory(lead_status="lost", score=20 + index)
        RuleApplication.objects.create(rule=diamonds, event_pk=index, contact=won, points=30)
        RuleApplication.objects.create(rule=opens, event_pk=100 + index, contact=won, points=10)
        RuleApplication.objects.create(rule=opens, event_pk=200 + index, contact=lost, points=10)
    # when the marketer opens the check
    response = marketer_client.get(reverse("leads:model_check"))
    # then
    assert response.status_code == 200
    rules = {rule["name"]: rule for rule in response.context["rules"]}
    assert rules["Diamonds page"]["lift"] > 5
    assert rules["Newsletter open"]["lift"] == pytest.approx(1.0)
    assert rules["Diamonds page"]["reading"] == "winners" and rules["Newsletter open"]["reading"] == "none"
    assert response.context["shortfall"] == ""
    suggestion = response.context["suggestion"]
    assert 26 <= suggestion["threshold"] <= 120 and suggestion["j"] == pytest.approx(1.0)
    assert response.context["figure"] is not None
