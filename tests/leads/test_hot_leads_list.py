"""The hot-leads list: hot by default, sorted by score or growth, filtered in SQL."""

from __future__ import annotations

import pytest
from django.urls import reverse

from leads.models import TemperatureSettings
from tests.factories import ContactFactory, give_tag
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db


def _emails(response) -> list[str]:
    return [lead.email for lead in response.context["leads"]]


def test_default_is_open_hot_leads_by_score(sales_client):
    # given a hot, a hotter, a warm and a cold contact, and a hot one already won
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 20, "hot": 50})
    hot = ContactFactory(email="hot@example.com")
    hotter = ContactFactory(email="hotter@example.com")
    warm = ContactFactory(email="warm@example.com")
    ContactFactory(email="cold@example.com")
    won = ContactFactory(email="won@example.com", lead_status="won")
    give_points(hot, 50)
    give_points(hotter, 90)
    give_points(warm, 30)
    give_points(won, 200)
    # when a sales user opens the page
    response = sales_client.get(reverse("leads:hot"))
    # then only the open hot leads are listed, highest first
    assert response.status_code == 200
    assert _emails(response) == ["hotter@example.com", "hot@example.com"]
    # and other temperatures / statuses are one filter away
    assert _emails(sales_client.get(reverse("leads:hot"), {"temperature": "warm"})) == ["warm@example.com"]
    assert "won@example.com" in _emails(sales_client.get(reverse("leads:hot"), {"status": "any"}))


def test_sort_by_growth_uses_points_of_the_last_7_days(sales_client):
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    steady = ContactFactory(email="steady@example.com")
    rising = ContactFactory(email="rising@example.com")
    give_points(steady, 100)
    give_points(rising, 30)
    # the steady lead earned its points long ago
    from datetime import timedelta

    from django.utils import timezone

    from leads.models import ScoreChange
    from leads.tasks import score_trend_refresh

    ScoreChange.objects.filter(contact=steady).update(created_at=timezone.now() - timedelta(days=20))
    score_trend_refresh()
    response = sales_client.get(reverse("leads:hot"), {"sort": "growth"})
    assert _emails(response) == ["rising@example.com", "steady@example.com"]
    growing = sales_client.get(reverse("leads:hot"), {"growth": "up"})
    assert _emails(growing) == ["rising@example.com"]


def test_mine_and_unassigned_filters(sales_client, sales, marketer):
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 1, "hot": 2})
    mine = ContactFactory(email="mine@example.com", owner=sales)
    theirs = ContactFactory(email="theirs@example.com", owner=marketer)
    free = ContactFactory(email="free@example.com")
    for contact in (mine, theirs, free):
        give_points(contact, 10)
    assert _emails(sales_client.get(reverse("leads:hot"), {"owner": "mine"})) == ["mine@example.com"]
    assert _emails(sales_client.get(reverse("leads:hot"), {"owner": "unassigned"})) == ["free@example.com"]
    assert _emails(sales_client.get(reverse("leads:hot"), {"owner": "others"})) == ["theirs@example.com"]


def test_fragment_request_gets_the_results_partial(sales_client):
    response = sales_client.get(reverse("leads:hot"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert response["Vary"] == "HX-Request" or "HX-Request" in response["Vary"]


def test_invalid_filter_values_do_not_500(sales_client):
    response = sales_client.get(reverse("leads:hot"), {"sort": "nope", "temperature": "boiling", "score_min": "x"})
    assert response.status_code == 200


def test_query_count_does_not_grow_with_the_page(sales_client, django_assert_max_num_queries):
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 1, "hot": 2})
    for index in range(12):
        contact = ContactFactory()
        give_points(contact, 10 + index)
        give_tag(contact, "Sport", index + 1)
        give_tag(contact, "kurtki", 2)
    sales_client.get(reverse("leads:hot"))  # warm the session and role caches
    with django_assert_max_num_queries(12):
        response = sales_client.get(reverse("leads:hot"))
    assert len(response.context["leads"]) == 12
    assert [tag["name"] for tag in response.context["leads"][0].top_tags] == ["Sport", "kurtki"]


def test_growth_pages_equal_the_plain_growth_order(sales):
    # given leads with rising, flat, falling and no recent points, some tied
    from django.db.models import F
    from django.http import QueryDict

    from leads.filters import HotLeadFilter, hot_leads_base
    from leads.models import ScoreTrend

    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 1, "hot": 2})
    growths = [5, 0, -3, None, 5, 12, 0, -1, None, 7, 5, -3, 0, 2, None]
    for index, growth in enumerate(growths):
        contact = ContactFactory(score=10 + (index * 7) % 13)
        if growth is not None:
            ScoreTrend.objects.create(contact=contact, points_7d=growth, points_30d=growth)
    lead_filter = HotLeadFilter(QueryDict("sort=growth"), queryset=hot_leads_base(), user=sales)
    assert lead_filter.is_valid()
    plain = list(hot_leads_base().filter(score__gte=2).order_by(F("points_7d").desc(), "-score", "id").values_list("pk", flat=True))
    paged = lead_filter.leads()
    # when read in pages of any size, then the concatenation is the plain order
    for size in (1, 2, 4, 7, 15, 20):
        pages = [lead.pk for start in range(0, len(plain), size) for lead in paged[start : start + size]]
        assert pages == plain, size
    assert paged.count() == len(plain)
