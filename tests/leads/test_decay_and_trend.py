"""Scheduled set-based jobs: growth counters, lead-score decay and tag-score decay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from contacts.models import ContactTag, TagScoreChange
from leads.models import ScoreChange, ScoreTrend, TemperatureSettings
from leads.scoring import score_recompute_all
from leads.tasks import score_decay_apply, score_trend_refresh, tag_decay_apply
from tests.factories import ContactFactory, TagFactory, give_tag
from tests.leads.factories import give_points

pytestmark = pytest.mark.django_db


def _age(contact, days: int) -> None:
    ScoreChange.objects.filter(contact=contact).update(created_at=timezone.now() - timedelta(days=days))


def test_trend_refresh_matches_the_ledger_windows():
    fresh, month_old, ancient = ContactFactory(), ContactFactory(), ContactFactory()
    give_points(fresh, 10, 5)
    give_points(month_old, 7)
    give_points(ancient, 9)
    _age(month_old, 20)
    _age(ancient, 60)
    score_trend_refresh()
    trends = {t.contact_id: (t.points_7d, t.points_30d) for t in ScoreTrend.objects.all()}
    assert trends == {fresh.pk: (15, 15), month_old.pk: (0, 7)}


def test_decay_is_off_by_default():
    contact = ContactFactory()
    give_points(contact, 100)
    _age(contact, 400)
    assert score_decay_apply() == 0
    contact.refresh_from_db()
    assert contact.score == 100


def test_decay_halves_points_per_half_life_and_keeps_the_ledger_true():
    # given decay with a 30-day half-life, points 35 days old and 65 days old, and fresh ones
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"decay_enabled": True, "decay_half_life_days": 30})
    one_half_life, two_half_lives, fresh = ContactFactory(), ContactFactory(), ContactFactory()
    give_points(one_half_life, 100)
    give_points(two_half_lives, 100)
    give_points(fresh, 100)
    _age(one_half_life, 35)
    _age(two_half_lives, 65)
    # when the job runs
    changed = score_decay_apply()
    # then scores halve once / twice, written as decay rows in the ledger
    for contact in (one_half_life, two_half_lives, fresh):
        contact.refresh_from_db()
    assert changed == 2
    assert (one_half_life.score, two_half_lives.score, fresh.score) == (50, 25, 100)
    assert ScoreChange.objects.filter(reason="decay").count() == 2
    # and a second run in the same window changes nothing; the recompute agrees
    assert score_decay_apply() == 0
    with connection.cursor() as cursor:
        assert score_recompute_all(cursor) == 0


def test_decay_later_run_applies_only_newly_crossed_half_lives():
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"decay_enabled": True, "decay_half_life_days": 30})
    contact = ContactFactory()
    give_points(contact, 80)
    _age(contact, 35)
    score_decay_apply()
    # 30 days later the points cross their second half-life
    score_decay_apply(now=timezone.now() + timedelta(days=30))
    contact.refresh_from_db()
    assert contact.score == 20


def test_tag_decay_uses_each_tags_half_life():
    TemperatureSettings.objects.update_or_create(pk=1, defaults={"tag_decay_enabled": True})
    contact = ContactFactory()
    decaying = TagFactory(name="kurtki", half_life_days=10)
    TagFactory(name="Sport")
    give_tag(contact, "kurtki", 8)
    give_tag(contact, "Sport", 8)
    old = timezone.now() - timedelta(days=25)  # two half-lives of kurtki
    for tag_name in ("kurtki", "Sport"):
        TagScoreChange.objects.create(contact=contact, tag=TagFactory(name=tag_name), delta=8, score_after=8, source="manual", created_at=old)
    assert tag_decay_apply() == 1
    scores = dict(ContactTag.objects.filter(contact=contact).values_list("tag__name", "score"))
    assert scores == {"kurtki": 2, "Sport": 8}
    assert TagScoreChange.objects.get(tag=decaying, source="decay").delta == -6
    assert tag_decay_apply() == 0
