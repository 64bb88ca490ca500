"""Template filters used by narrow table columns and the rule editor's error list."""

from __future__ import annotations

from datetime import timedelta

from django.template import Context, Template
from django.utils import timezone, translation

from marketing_hub.templatetags.mh_text import field_label


def _render_ago(value) -> str:
    return Template("{% load mh_time %}{{ value|ago }}").render(Context({"value": value})).replace("\xa0", " ")


def test_ago_keeps_only_the_largest_unit():
    # given a moment 2 months and 4 weeks ago (naturaltime: "2 months, 4 weeks ago")
    moment = timezone.now() - timedelta(days=89)
    # when / then
    assert _render_ago(moment) == "2 months ago"


def test_ago_says_just_now_for_the_last_minute_and_nothing_for_none():
    assert _render_ago(timezone.now() - timedelta(seconds=5)) == "just now"
    assert _render_ago(None) == ""


def test_ago_speaks_polish_with_the_declined_unit_and_plural_forms():
    # given the Polish interface
    now = timezone.now()
    with translation.override("pl"):
        # when / then: accusative after "temu", three plural forms, the future with "za"
        assert _render_ago(now - timedelta(days=31)) == "1 miesiąc temu"
        assert _render_ago(now - timedelta(hours=1, minutes=5)) == "1 godzinę temu"
        assert _render_ago(now - timedelta(hours=3, minutes=5)) == "3 godziny temu"
        assert _render_ago(now - timedelta(days=5, hours=1)) == "5 dni temu"
        assert _render_ago(now - timedelta(seconds=5)) == "przed chwilą"
        assert _render_ago(now + timedelta(days=3, hours=1)) == "za 3 dni"


def test_field_label_turns_error_paths_into_words_counted_from_one():
    assert field_label("trigger.where.0.property") == "condition 1: property"
    assert field_label("actions.1.tag") == "action 2: tag"
    assert field_label("max_points_per_contact") == "max points per contact"


def test_field_label_speaks_polish():
    with translation.override("pl"):
        assert field_label("trigger.where.0.property") == "warunek 1: pole"
        assert field_label("actions.1.tag") == "akcja 2: tag"
        assert field_label("max_points_per_contact") == "limit punktów na kontakt"
        assert field_label("trigger.event_type") == "typ zdarzenia"
