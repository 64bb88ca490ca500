"""The dashboard's figures come from one stored snapshot that every web process shares: the first
view computes it, later views read it, an old one is shown (saying when it is from) while the
worker is asked — once — for new figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from leads.models import DashboardSnapshot, TemperatureSettings
from leads.tasks import dashboard_refresh_task
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _contacts_kpi(response) -> str:
    return {kpi["label"]: kpi for kpi in response.context["kpis"]}["Contacts"]["value"]


def _age(minutes: float) -> None:
    DashboardSnapshot.objects.update(computed_at=timezone.now() - timedelta(minutes=minutes))


def test_first_view_stores_the_figures_and_later_views_read_them(marketer_client):
    # given two contacts and no snapshot yet
    ContactFactory.create_batch(2)
    assert not DashboardSnapshot.objects.exists()
    # when the dashboard opens, a contact arrives, and it opens again within the minute
    first = marketer_client.get(reverse("dashboard"))
    ContactFactory()
    second = marketer_client.get(reverse("dashboard"))
    # then both show the stored figures (2), and the page says when they were computed
    snapshot = DashboardSnapshot.objects.get()
    assert _contacts_kpi(first) == _contacts_kpi(second) == "2"
    assert snapshot.data["contacts"]["total"] == 2
    assert snapshot.refresh_requested_at is None
    as_of = timezone.localtime(snapshot.computed_at).strftime("%H:%M")
    assert f"Figures as of {as_of}" in second.content.decode()
    assert "Newer figures are being computed" not in second.content.decode()


def test_an_old_snapshot_is_shown_and_the_worker_asked_once(marketer_client, sales_client,
                                                             django_capture_on_commit_callbacks, monkeypatch):
    # given figures computed five minutes ago, and a contact since
    ContactFactory()
    marketer_client.get(reverse("dashboard"))
    _age(5)
    ContactFactory()
    asked: list[bool] = []
    monkeypatch.setattr(dashboard_refresh_task, "delay", lambda: asked.append(True))
    # when two people open the dashboard in the same minute
    with django_capture_on_commit_callbacks(execute=True):
        marketer = marketer_client.get(reverse("dashboard"))
        seller = sales_client.get(reverse("dashboard"))
    # then both see the old figures at once, told newer ones are coming, and the worker was asked once
    assert _contacts_kpi(marketer) == _contacts_kpi(seller) == "1"
    assert "Newer figures are being computed" in marketer.content.decode()
    assert asked == [True]
    assert DashboardSnapshot.objects.get().refresh_requested_at is not None


def test_the_refresh_stores_current_figures(marketer_client):
    # given an old snapshot that asked for a refresh, and a contact it does not count
    ContactFactory()
    marketer_client.get(reverse("dashboard"))
    _age(5)
    DashboardSnapshot.objects.update(refresh_requested_at=timezone.now())
    ContactFactory(score=1_000)
    # when the worker runs the refresh
    assert dashboard_refresh_task() is True
    # then the next view shows the new figures, computed just now
    snapshot = DashboardSnapshot.objects.get()
    assert snapshot.refresh_requested_at is None
    assert timezone.now() - snapshot.computed_at < timedelta(seconds=30)
    assert _contacts_kpi(marketer_client.get(reverse("dashboard"))) == "2"


def test_a_request_that_went_unanswered_is_made_again_after_a_minute(marketer_client, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    # given an old snapshot whose refresh was asked for two minutes ago (the worker was down)
    ContactFactory()
    marketer_client.get(reverse("dashboard"))
    _age(10)
    DashboardSnapshot.objects.update(refresh_requested_at=timezone.now() - timedelta(minutes=2))
    asked: list[bool] = []
    monkeypatch.setattr(dashboard_refresh_task, "delay", lambda: asked.append(True))
    # when the dashboard opens
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.get(reverse("dashboard"))
    # then the worker is asked again
    assert asked == [True]


def test_new_thresholds_are_computed_at_once(marketer_client):
    # given a snapshot for thresholds 10/20 and a contact scoring 15 (warm there)
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"warm": 10, "hot": 20})
    ContactFactory(score=15)
    marketer_client.get(reverse("dashboard"))
    # when the hot threshold drops to 15 and the dashboard opens
    TemperatureSettings.objects.filter(pk=1).update(hot=15)
    response = marketer_client.get(reverse("dashboard"))
    # then its figures are the new thresholds' (no snapshot of the old ones is shown for them)
    assert {kpi["label"]: kpi for kpi in response.context["kpis"]}["Hot leads"]["value"] == "1"
    assert set(DashboardSnapshot.objects.values_list("key", flat=True)) == {"10:20", "10:15"}


def test_one_refresh_at_a_time(monkeypatch):
    # given another worker process computing the figures (holding the dashboard's lock)
    from django.db import connections

    from core import locks

    computed: list[bool] = []
    monkeypatch.setattr("leads.tasks.dashboard_refresh", lambda: computed.append(True))
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            assert locks.advisory_xact_try_lock(cursor, locks.DASHBOARD)
            # when a second refresh runs meanwhile
            answered = dashboard_refresh_task()
            cursor.execute("ROLLBACK")
    finally:
        other.close()
    # then it leaves the work to the first one; once that is done, a refresh computes
    assert answered is False and computed == []
    assert dashboard_refresh_task() is True and computed == [True]
