"""Template filters used by narrow table columns and the rule editor's error list."""

from __future__ import annotations

from datetime import timedelta

from django.template import Context, Template
from django.utils import timezone

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


def test_field_label_turns_error_paths_into_words_counted_from_one():
    assert field_label("trigger.where.0.property") == "condition 1: property"
    assert field_label("actions.1.tag") == "action 2: tag"
    assert field_label("max_points_per_contact") == "max points per contact"
