"""The funnel report's wide ranges come from a stored snapshot per (funnel, range) that the worker
keeps: the first view of a short range computes it, a wide one is computed by the worker while the
page says so; later views read it, an old one is shown (saying when it is from) while the worker is
asked — once — for new figures. Short custom ranges are read live."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from core import locks
from leads import funnels
from leads.funnels import day_bounds, funnel_report_snapshot_refresh, report_range
from leads.models import FunnelReportSnapshot, Stage
from leads.tasks import funnel_report_refresh_task
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages
from tests.leads.test_funnel_report_figures import _expected, _move_at

pytestmark = pytest.mark.django_db

POLISH = {"HTTP_ACCEPT_LANGUAGE": "pl"}


def _get(client, funnel, *, headers: dict | None = None, **params):
    return client.get(reverse("leads:funnel_detail", args=[funnel.pk]), params, **(headers or {}))


def _entered(response) -> list[int]:
    return [row["entered"] for row in response.context["stages"]]


def _age(minutes: float) -> None:
    FunnelReportSnapshot.objects.update(computed_at=timezone.now() - timedelta(minutes=minutes))


@pytest.fixture
def funnel():
    """Three contacts entering New over the last 400 days, one moving on to Engaged."""
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "Won"))
    now = timezone.now()
    a, b, c = (ContactFactory().pk for _ in range(3))
    _move_at(now - timedelta(days=400), [a], "New")
    _move_at(now - timedelta(days=100), [b], "New")
    _move_at(now - timedelta(days=3), [c], "New")
    _move_at(now - timedelta(days=2), [c], "Engaged")
    return funnel


def test_first_view_of_a_preset_stores_the_figures_and_later_views_read_them(marketer_client, funnel):
    # given no snapshot yet
    # when the 30-day report opens, a contact enters New, and it opens again within the minute
    first = _get(marketer_client, funnel, range="30")
    _move_at(timezone.now(), [ContactFactory().pk], "New")
    with mock.patch.object(funnels, "funnel_report", side_effect=AssertionError("computed")) as compute:
        second = _get(marketer_client, funnel, range="30")
    # then both show the stored figures, not recomputed, and the page says when they are from
    assert _entered(first) == _entered(second) == [1, 1, 0]
    assert not compute.called
    snapshot = FunnelReportSnapshot.objects.get(funnel=funnel, range_key="30")
    assert snapshot.refresh_requested_at is None
    body = second.content.decode()
    assert f"Figures as of {timezone.localtime(snapshot.computed_at):%H:%M}." in body
    assert "Newer figures are being computed" not in body


def test_an_old_snapshot_is_shown_and_the_worker_asked_once(marketer_client, sales_client, funnel, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    # given a 7-day snapshot computed five minutes ago, and a contact entering since
    _get(marketer_client, funnel, range="7")
    _age(5)
    _move_at(timezone.now(), [ContactFactory().pk], "New")
    asked: list[int] = []
    monkeypatch.setattr(funnel_report_refresh_task, "delay", asked.append)
    # when two people open the report in the same minute
    with django_capture_on_commit_callbacks(execute=True), \
            mock.patch.object(funnels, "funnel_report", side_effect=AssertionError("computed")):
        marketer = _get(marketer_client, funnel, range="7")
        seller = _get(sales_client, funnel, range="7")
    # then both see the old figures at once, told newer ones are coming, and the worker was asked once
    assert _entered(marketer) == _entered(seller) == [1, 1, 0]
    assert 'data-testid="figures-updating"' in marketer.content.decode()
    assert asked == [funnel.pk]
    assert FunnelReportSnapshot.objects.get(funnel=funnel, range_key="7").refresh_requested_at is not None


def test_the_refresh_stores_current_figures_of_the_ranges_asked_for(marketer_client, funnel):
    # given old 7- and 30-day snapshots, the 7-day one asked for, and a contact entering since
    _get(marketer_client, funnel, range="7")
    _get(marketer_client, funnel, range="30")
    _age(5)
    FunnelReportSnapshot.objects.filter(range_key="7").update(refresh_requested_at=timezone.now())
    _move_at(timezone.now(), [ContactFactory().pk], "New")
    # when the worker runs the refresh
    assert funnel_report_refresh_task(funnel.pk) == 1
    # then the 7-day figures are new and computed just now; the 30-day ones were not asked for
    fresh = FunnelReportSnapshot.objects.get(funnel=funnel, range_key="7")
    assert fresh.refresh_requested_at is None
    assert timezone.now() - fresh.computed_at < timedelta(seconds=30)
    assert _entered(_get(marketer_client, funnel, range="7")) == [2, 1, 0]
    assert timezone.now() - FunnelReportSnapshot.objects.get(range_key="30").computed_at > timedelta(minutes=4)


def test_a_wide_range_never_computed_is_left_to_the_worker(marketer_client, funnel, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    # given no snapshot of all time
    asked: list[int] = []
    monkeypatch.setattr(funnel_report_refresh_task, "delay", asked.append)
    # when the report opens on all time, twice
    with django_capture_on_commit_callbacks(execute=True), \
            mock.patch.object(funnels, "funnel_report", side_effect=AssertionError("computed")):
        first = _get(marketer_client, funnel)
        again = _get(marketer_client, funnel)
    # then the page says the figures are being computed and polls; the worker was asked once
    body = first.content.decode()
    assert 'data-testid="figures-computing"' in body and 'hx-trigger="load delay:3s"' in body
    assert first.context["stages"] is None and again.context["stages"] is None
    assert asked == [funnel.pk]
    # and once the worker has run, the page shows them
    assert funnel_report_refresh_task(funnel.pk) == 1
    assert _entered(_get(marketer_client, funnel)) == [3, 1, 0]


def test_the_poll_gets_the_report_fragment(marketer_client, funnel):
    # given all time computed by the worker
    _get(marketer_client, funnel)
    funnel_report_refresh_task(funnel.pk)
    # when the page's poll asks for it
    response = marketer_client.get(reverse("leads:funnel_detail", args=[funnel.pk]), HTTP_HX_REQUEST="true")
    # then the report fragment comes back with the figures
    body = response.content.decode()
    assert "<html" not in body and 'data-testid="figures-as-of"' in body and "figures-computing" not in body


@pytest.mark.parametrize("key", ["7", "30", "90", "365", "all", "2024-01-01..", "..2030-12-31"])
def test_the_worker_computes_what_the_history_says(funnel, key):
    # given a snapshot asked for (the fixture's contacts moving over 400 days, one anonymous-free)
    FunnelReportSnapshot.objects.create(funnel=funnel, range_key=key, refresh_requested_at=timezone.now())
    # when the worker computes it
    assert funnel_report_refresh_task(funnel.pk) == 1
    # then every figure is the plain computation from the raw moves, as of the snapshot's time
    snapshot = FunnelReportSnapshot.objects.get(funnel=funnel, range_key=key)
    start = snapshot.data["start"] and timezone.datetime.fromisoformat(snapshot.data["start"]).date()
    end = snapshot.data["end"] and timezone.datetime.fromisoformat(snapshot.data["end"]).date()
    start_at, end_at = day_bounds(start or None, end or None)
    now = snapshot.computed_at
    expected = _expected(funnel, start=start_at, end=min(end_at, now) if end_at else now, now=now)
    assert snapshot.data["stages"] == expected


def test_a_short_custom_range_is_read_live(marketer_client, funnel):
    # given no snapshot; when a 60-day custom range opens
    today = timezone.localdate()
    response = _get(marketer_client, funnel, start=(today - timedelta(days=59)).isoformat(), end=today.isoformat())
    # then its figures are current, no snapshot is stored and no time is given
    assert _entered(response) == [1, 1, 0]
    assert not FunnelReportSnapshot.objects.exists()
    assert "figures-as-of" not in response.content.decode()


def test_a_wide_custom_range_has_its_own_snapshot_and_old_ones_expire(marketer_client, funnel):
    # given a custom range's snapshot nobody has looked at for two days
    FunnelReportSnapshot.objects.create(funnel=funnel, range_key="2020-01-01..2020-12-31", data={},
                                        computed_at=timezone.now() - timedelta(days=2))
    # when another wide custom range is computed
    wide = report_range(preset="", start=timezone.localdate() - timedelta(days=200), end=None)
    assert wide.key == f"{wide.start.isoformat()}.."
    funnel_report_snapshot_refresh(funnel, wide.key)
    # then it is stored under its range and the forgotten one is gone
    assert set(FunnelReportSnapshot.objects.values_list("range_key", flat=True)) == {wide.key}


def test_a_snapshot_of_other_stages_is_not_shown(marketer_client, funnel):
    # given a 30-day snapshot, and then a stage renamed
    _get(marketer_client, funnel, range="30")
    Stage.objects.filter(funnel=funnel, name="Won").update(name="Customer")
    # when the report opens
    response = _get(marketer_client, funnel, range="30")
    # then it is computed again for the stages as they are
    assert [row["name"] for row in response.context["stages"]] == ["New", "Engaged", "Customer"]
    assert FunnelReportSnapshot.objects.get(range_key="30").data["stage_signature"][2][1] == "Customer"


def test_one_refresh_per_funnel_at_a_time(funnel):
    # given another worker process refreshing this funnel's report (holding its lock)
    other_funnel = funnel_with_stages("Other", ("A", "B"))
    for target in (funnel, other_funnel):
        FunnelReportSnapshot.objects.create(funnel=target, range_key="all", refresh_requested_at=timezone.now())
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            assert locks.advisory_xact_try_lock(cursor, locks.FUNNEL_REPORT, funnel.pk)
            # when refreshes of this funnel and of another run meanwhile
            answered = funnel_report_refresh_task(funnel.pk)
            elsewhere = funnel_report_refresh_task(other_funnel.pk)
            cursor.execute("ROLLBACK")
    finally:
        other.close()
    # then this funnel's is left to the first one, the other funnel's runs; once free, it computes
    assert answered is None and elsewhere == 1
    assert FunnelReportSnapshot.objects.get(funnel=funnel).computed_at is None
    assert funnel_report_refresh_task(funnel.pk) == 1


def test_stage_changes_are_not_blocked_by_a_refresh(funnel):
    # given a refresh holding the funnel's lock (a worker computing)
    with connection.cursor() as cursor, locks.advisory_session_lock(cursor, locks.FUNNEL_REPORT, funnel.pk, wait=True):
        # when a contact moves meanwhile, then it moves (the refresh only reads)
        _move_at(timezone.now(), [ContactFactory().pk], "New")
    assert funnel.contact_stages.count() == 4


def test_the_notes_are_in_polish(sales_client, funnel):
    # given a 7-day snapshot ten minutes old
    _get(sales_client, funnel, range="7")
    _age(10)
    # when a Polish browser opens the report
    body = _get(sales_client, funnel, range="7", headers=POLISH).content.decode()
    # then the time and the note are in Polish
    assert "Dane z " in body
    assert "Nowsze dane są właśnie liczone" in body


def test_the_computing_note_is_in_polish(sales_client, funnel, monkeypatch):
    # given no snapshot of the last year; when a Polish browser opens it, then the note is Polish
    monkeypatch.setattr(funnel_report_refresh_task, "delay", lambda funnel_id: None)
    body = _get(sales_client, funnel, range="365", headers=POLISH).content.decode()
    assert "Dane za ten okres są właśnie liczone" in body
