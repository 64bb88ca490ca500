"""The funnel report's figures against an independent computation from the whole history.

The report reads what the writers keep on each move (when its stay ended, when the contact last
entered the stage); these tests move contacts back and forth at known times through the real
writers and compare every figure, for several ranges, with a plain Python computation that orders
each contact's history itself.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from contacts.merging import anonymous_profiles_ensure, profiles_merge
from leads.funnels import funnel_report, stages_set, transition_stays_recompute
from leads.models import ContactStage, Funnel, StageTransition
from tests.factories import ContactFactory
from tests.leads.factories import funnel_with_stages

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.get_fixed_timezone(0))


def _move_at(when: datetime, contact_ids: list[int], stage: str, funnel: str = "Sales") -> None:
    with mock.patch("leads.funnels.timezone.now", return_value=when), connection.cursor() as cursor:
        stages_set(cursor, contact_ids=contact_ids, funnel_names=[funnel] * len(contact_ids),
                   stage_names=[stage] * len(contact_ids), cause="api")


def _expected(funnel: Funnel, *, start: datetime | None, end: datetime | None, now: datetime) -> list[dict]:
    """The report's definition, computed from the raw moves in Python."""
    start = start or datetime(1970, 1, 1, tzinfo=T0.tzinfo)
    end = end or datetime(9999, 1, 1, tzinfo=T0.tzinfo)
    moves = list(
        StageTransition.objects.filter(funnel=funnel, contact__is_anonymous=False)
        .order_by("contact_id", "created_at", "id").values_list("contact_id", "to_stage_id", "created_at")
    )
    stays: dict[int, list[float]] = {}
    entered: dict[int, set[int]] = {}
    for index, (contact_id, stage_id, created_at) in enumerate(moves):
        following = moves[index + 1] if index + 1 < len(moves) else None
        ended = following[2] if following and following[0] == contact_id else now
        if start <= created_at < end:
            stays.setdefault(stage_id, []).append((ended - created_at).total_seconds() / 86400)
            entered.setdefault(stage_id, set()).add(contact_id)
    rows = []
    stages = list(funnel.stages.order_by("position"))
    for index, stage in enumerate(stages):
        count = ContactStage.objects.filter(stage=stage, contact__is_anonymous=False).count()
        n = len(entered.get(stage.pk, ()))
        next_entered = len(entered.get(stages[index + 1].pk, ())) if index + 1 < len(stages) else None
        rows.append({
            "name": stage.name,
            "count": count,
            "entered": n,
            "conversion_to_next": round(next_entered / n, 4) if next_entered is not None and n else None,
            "median_days_in_stage": round(statistics.median(stays[stage.pk]), 2) if stage.pk in stays else None,
        })
    return rows


def _report(funnel: Funnel, *, start: datetime | None, end: datetime | None, now: datetime) -> list[dict]:
    with mock.patch("leads.funnels.timezone.now", return_value=now):
        return funnel_report(funnel, start=start, end=end)


def _assert_every_range(funnel: Funnel, now: datetime) -> None:
    day = timedelta(days=1)
    ranges = [(None, None), (T0, T0 + day), (T0 + day, T0 + 4 * day), (T0 + 2 * day, None),
              (None, T0 + 3 * day), (T0 + 3 * day, T0 + 30 * day), (T0 - 30 * day, T0)]
    for start, end in ranges:
        assert _report(funnel, start=start, end=end, now=now) == _expected(funnel, start=start, end=end, now=now), (
            start, end)


@pytest.fixture
def history() -> dict:
    """Five contacts going forwards, backwards and re-entering stages over a week; one anonymous
    profile moving too; a second funnel whose moves must not mix in."""
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "MQL", "Customer"))
    funnel_with_stages("Other", ("Cold", "Warm"))
    a, b, c, d, e = (ContactFactory().pk for _ in range(5))
    profile = anonymous_profiles_ensure(["visitor@example.com"])["visitor@example.com"]
    hour = timedelta(hours=1)
    _move_at(T0, [a, b, c, d, profile], "New")
    _move_at(T0 + 5 * hour, [a, b], "Engaged")
    _move_at(T0 + 6 * hour, [a], "Cold", funnel="Other")
    _move_at(T0 + 30 * hour, [a], "New")  # back
    _move_at(T0 + 31 * hour, [c, profile], "Engaged")
    _move_at(T0 + 50 * hour, [a, c], "Engaged")  # a re-enters Engaged
    _move_at(T0 + 51 * hour, [b], "MQL")
    _move_at(T0 + 75 * hour, [b], "Engaged")  # back
    _move_at(T0 + 76 * hour, [b], "MQL")  # and MQL again
    _move_at(T0 + 80 * hour, [a, e], "MQL")
    _move_at(T0 + 100 * hour, [a, b], "Customer")
    _move_at(T0 + 101 * hour, [d], "New")  # no move: already there
    _move_at(T0 + 120 * hour, [a], "New")  # a customer back to New
    return {"funnel": funnel, "contacts": (a, b, c, d, e), "profile": profile}


def test_every_figure_matches_the_history_for_every_range(history) -> None:
    # given contacts moving back and forth (the fixture)
    now = T0 + timedelta(days=9, hours=3)
    # when the report is read for several ranges, then every figure matches the raw history
    _assert_every_range(history["funnel"], now)


def test_re_entries_count_once_per_contact_and_each_stay_counts() -> None:
    # given a contact entering New three times in one day
    funnel = funnel_with_stages("Sales", ("New", "Won"))
    contact = ContactFactory().pk
    for hours, stage in ((0, "New"), (1, "Won"), (3, "New"), (4, "Won"), (10, "New")):
        _move_at(T0 + timedelta(hours=hours), [contact], stage)
    # when the report covers the day
    report = _report(funnel, start=T0, end=T0 + timedelta(days=1), now=T0 + timedelta(hours=12))
    # then it entered New once, and the median is over the three stays (1 h, 1 h, 2 h open)
    assert report[0]["entered"] == 1
    assert report[0]["median_days_in_stage"] == round(1 / 24, 2)
    # and a range starting between the entries counts the contact once again
    later = _report(funnel, start=T0 + timedelta(hours=2), end=None, now=T0 + timedelta(hours=12))
    assert [row["entered"] for row in later] == [1, 1]


def test_the_writer_keeps_when_each_stay_ended() -> None:
    # given a contact moved three times
    funnel = funnel_with_stages("Sales", ("New", "Engaged", "MQL"))
    contact = ContactFactory().pk
    for hours, stage in ((0, "New"), (2, "Engaged"), (5, "New")):
        _move_at(T0 + timedelta(hours=hours), [contact], stage)
    # then each move knows when its stay ended and when the stage was last entered
    rows = list(StageTransition.objects.filter(funnel=funnel).order_by("id")
                .values_list("left_at", "previous_entry_at"))
    assert rows == [(T0 + timedelta(hours=2), None), (T0 + timedelta(hours=5), None), (None, T0)]


def test_a_merged_profile_history_interleaves_with_the_contact(history) -> None:
    # given the anonymous profile (New, then Engaged) merged into contact d (New only)
    a, b, c, d, e = history["contacts"]
    profiles_merge([(history["profile"], d)])
    # then d's history holds both, each stay ending at d's next move, as the report reads it
    assert StageTransition.objects.filter(contact_id=d).count() == 3
    _assert_every_range(history["funnel"], T0 + timedelta(days=9))


def test_removing_a_stage_takes_its_moves_and_the_stays_around_them_end_elsewhere(history, marketer_client) -> None:
    # given MQL emptied (its holders moved on) and then removed from the funnel by a marketer
    funnel = history["funnel"]
    a, b, c, d, e = history["contacts"]
    _move_at(T0 + timedelta(hours=130), [e], "Customer")
    response = marketer_client.post(f"/leads/funnels/{funnel.pk}/edit/",
                           {"name": "Sales", "description": "", "stages": "New\nEngaged\nCustomer"})
    assert response.status_code == 302
    # then the report still matches the remaining history
    assert not StageTransition.objects.filter(to_stage__name="MQL").exists()
    _assert_every_range(funnel, T0 + timedelta(days=9))


def test_recompute_changes_nothing_after_the_writers(history) -> None:
    # given the writers' bookkeeping, when it is recomputed from the history, then nothing changes
    with connection.cursor() as cursor:
        assert transition_stays_recompute(cursor) == 0
