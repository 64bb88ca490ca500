"""The dashboard's charts are built when its snapshot is computed, once per language, so a view
is a read and a render: no Plotly figure is built while someone waits, and a Polish browser still
gets Polish labels from the same snapshot."""

from __future__ import annotations

import pytest
from django.urls import reverse

from leads import charts
from leads.dashboard import dashboard_refresh
from leads.models import DashboardSnapshot
from tests.factories import ContactFactory
from tests.segments.factories import add_event

pytestmark = pytest.mark.django_db

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """Records every chart built (each goes through ``figure_dict``) from here on."""
    calls: list[str] = []
    real = charts.figure_dict

    def recording(figure, links=None):
        calls.append(figure.data[0].type if figure.data else "empty")
        return real(figure, links)

    monkeypatch.setattr(charts, "figure_dict", recording)
    return calls


def _temperature_labels(response) -> list[str]:
    return response.context["figures"]["temperature"]["data"][0]["x"]


def test_views_serve_the_stored_charts_without_building_them(admin_client, built):
    # given contacts and a snapshot computed by the worker (which built its charts)
    ContactFactory.create_batch(3)
    dashboard_refresh()
    assert built
    built.clear()
    stored = DashboardSnapshot.objects.get().data["figures"]
    # when the dashboard is viewed twice
    responses = [admin_client.get(reverse("dashboard")) for _ in range(2)]
    # then no chart was built: the page shows the snapshot's own
    assert [response.status_code for response in responses] == [200, 200]
    assert built == []
    assert responses[1].context["figures"] == stored["en"]
    assert 'id="chart-temperature"' in responses[1].content.decode()


def test_each_language_gets_its_own_labels_from_the_same_snapshot(admin_client, built):
    # given a snapshot computed in the worker (no request language there)
    ContactFactory(score=500)
    dashboard_refresh()
    built.clear()
    # when an English and a Polish browser open the dashboard
    english = admin_client.get(reverse("dashboard"))
    polish = admin_client.get(reverse("dashboard"), **POLISH)
    # then each sees the charts in its language, none built on the way
    assert _temperature_labels(english) == ["Cold", "Warm", "Hot"]
    assert _temperature_labels(polish) == ["Zimne", "Ciepłe", "Gorące"]
    assert polish.context["figures"]["scores"]["layout"]["xaxis"]["title"]["text"] == "Wynik leada"
    assert "Gorące" in polish.content.decode() and "Gorące" not in english.content.decode()
    assert built == []


def test_the_first_view_builds_the_charts_for_every_language(admin_client):
    # given no snapshot yet
    ContactFactory()
    # when a Polish browser opens the dashboard first
    response = admin_client.get(reverse("dashboard"), **POLISH)
    # then it sees Polish, and the stored snapshot has charts for English readers too
    assert _temperature_labels(response) == ["Zimne", "Ciepłe", "Gorące"]
    figures = DashboardSnapshot.objects.get().data["figures"]
    assert figures["en"]["temperature"]["data"][0]["x"] == ["Cold", "Warm", "Hot"]


def test_a_snapshot_stored_without_charts_still_shows_them(admin_client, built):
    # given a snapshot stored before snapshots kept their charts
    ContactFactory(score=500)
    dashboard_refresh()
    snapshot = DashboardSnapshot.objects.get()
    snapshot.data.pop("figures")
    snapshot.save()
    built.clear()
    # when the dashboard opens in Polish
    response = admin_client.get(reverse("dashboard"), **POLISH)
    # then the charts are built for the view, in Polish
    assert _temperature_labels(response) == ["Zimne", "Ciepłe", "Gorące"]
    assert "bar" in built


def test_event_types_stay_ordered_by_volume(admin_client):
    # given page views outnumbering purchases (whose type name sorts first as a stored JSON key)
    contact = ContactFactory()
    for _ in range(3):
        add_event(contact, "page_view")
    add_event(contact, "purchase")
    dashboard_refresh()
    # when the dashboard is served from the snapshot
    response = admin_client.get(reverse("dashboard"))
    # then the busiest type is the first trace, as when the figures were computed
    assert [trace["name"] for trace in response.context["figures"]["events"]["data"]] == ["Page view", "Purchase"]
