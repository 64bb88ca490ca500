"""Dashboard figures that could be misread say what they count: the funnel card shows current
counts per stage (bars, not a funnel shape), and "Hot leads" says how it differs from the Hot
leads page (any status there vs open leads only here)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from leads.models import ContactStage, TemperatureSettings
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db


def test_hot_leads_kpi_states_its_definition_and_the_open_count(sales_client):
    # given 3 hot contacts, one of them won, one lost, and the hot-leads page's default view
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    ContactFactory(score=30)
    ContactFactory(score=40, lead_status="won")
    ContactFactory(score=50, lead_status="lost")
    ContactFactory(score=5)
    # when a seller opens the dashboard and the hot-leads page
    dashboard = sales_client.get(reverse("dashboard"))
    hot_page = sales_client.get(reverse("leads:hot"))
    # then the KPI counts every hot contact and says how many are open: the page's count
    kpi = {kpi["label"]: kpi for kpi in dashboard.context["kpis"]}["Hot leads"]
    assert kpi["value"] == "3"
    assert kpi["hint"] == "score ≥ 20, any status; 1 still open (the Hot leads page)"
    assert hot_page.context["total"] == 1
    assert "score ≥ 20, any status; 1 still open (the Hot leads page)" in dashboard.content.decode()


def test_funnel_card_is_labelled_as_current_counts_and_drawn_as_bars(marketer_client):
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "MQL"))
    stages = list(funnel.stages.order_by("position"))
    # more contacts in MQL now than in Engaged: current counts, which a funnel shape would misstate
    for stage, count in ((stages[1], 1), (stages[2], 3)):
        for _ in range(count):
            ContactStage.objects.create(contact=ContactFactory(), funnel=funnel, stage=stage)
    response = marketer_client.get(reverse("dashboard"))
    figure = response.context["figures"]["funnel"]
    assert figure["data"][0]["type"] == "bar"
    assert dict(zip(figure["data"][0]["y"], figure["data"][0]["x"], strict=True)) == {"New": 0, "Engaged": 1, "MQL": 3}
    assert "current counts, not conversion" in response.content.decode()
