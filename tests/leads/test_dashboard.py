"""The dashboard: KPIs and charts from aggregate queries, each linked to the list behind it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from automation.models import Rule
from leads.dashboard import dashboard_data
from leads.models import TemperatureSettings
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db


def test_kpis_and_charts(marketer_client):
    # given contacts of each temperature, an old one, tags, a funnel and an active rule
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    for score in (0, 5, 12, 25, 30):
        give_tag(ContactFactory(score=score), "Sport", 1)
    ContactFactory(created_at=timezone.now() - timedelta(days=30))
    funnel_with_stages("Sales")
    Rule.objects.create(name="r", event_type="purchase", actions=[], active=True)
    # when the dashboard opens
    response = marketer_client.get(reverse("dashboard"))
    # then
    assert response.status_code == 200
    kpis = {kpi["label"]: kpi for kpi in response.context["kpis"]}
    assert kpis["Contacts"]["value"] == "6"
    assert kpis["New this week"]["value"] == "5"
    assert kpis["Hot leads"]["value"] == "2"
    assert kpis["Active rules"]["value"] == "1"
    figures = response.context["figures"]
    assert figures["temperature"]["data"][0]["y"] == [3, 1, 2]
    assert figures["temperature"]["layout"]["meta"]["links"][2].endswith("temperature=hot")
    assert figures["tags"]["layout"]["meta"]["links"] == ["/contacts/?tag=Sport"]
    assert len(figures["scores"]["layout"]["meta"]["links"]) == len(figures["scores"]["data"][0]["x"])
    assert figures["funnel"] is not None


def test_dashboard_is_cached_and_cheap(marketer_client, django_assert_max_num_queries):
    ContactFactory()
    marketer_client.get(reverse("dashboard"))
    with django_assert_max_num_queries(6):
        marketer_client.get(reverse("dashboard"))


def test_score_buckets_cover_every_contact():
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 50, "hot": 100})
    for score in (-5, 0, 7, 99, 100, 5000):
        ContactFactory(score=score)
    data = dashboard_data(use_cache=False)
    assert sum(count for _, _, count in data["buckets"]) == 6
    assert data["buckets"][0][0] < 0


def test_sales_dashboard_links_only_to_pages_sales_may_open(sales_client):
    ContactFactory(score=500)
    response = sales_client.get(reverse("dashboard"))
    assert response.status_code == 200
    hrefs = [kpi["href"] for kpi in response.context["kpis"] if kpi["href"]]
    assert hrefs and all(sales_client.get(href).status_code == 200 for href in hrefs)
