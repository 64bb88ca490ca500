"""The shell: the whole beat schedule lives in marketing_hub/celery.py and names real tasks; the
navigation marks the section a page belongs to; settings are read when used, not at import."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core.models import Job
from marketing_hub.celery import app
from segments.models import Segment
from segments.services import segments_refresh_due
from tests.segments.factories import make_segment


def test_every_beat_entry_names_a_registered_task():
    # given the schedule and the tasks the apps' tasks modules register
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    registered = set(app.tasks.keys())
    # then each periodic task exists under the name beat sends, loyalty's included
    assert scheduled - registered == set()
    assert {"loyalty.tasks.tiers_apply_due_task", "loyalty.tasks.programs_recompute_daily_task"} <= scheduled


@pytest.mark.django_db
def test_a_job_page_marks_jobs_in_the_navigation(marketer_client):
    # given a job
    job = Job.objects.create(kind="contacts_bulk", title="Add tag VIP")
    # when a marketer opens its page
    response = marketer_client.get(f"/jobs/{job.pk}/")
    # then the navigation item "Jobs" (and only it) is the active one
    assert response.status_code == 200
    active = [item["label"] for item in response.context["nav_items"] if item["active"]]
    assert active == ["Jobs"]


@pytest.mark.django_db
def test_the_refresh_cadence_is_read_when_the_schedule_runs(settings):
    # given a segment (not time-relative) last refreshed 10 minutes ago
    segment = make_segment({"type": "has_tag", "tag": "x"}, name="x")
    ten_minutes_ago = timezone.now() - dt.timedelta(minutes=10)
    Segment.objects.filter(pk=segment.pk).update(refreshed_at=ten_minutes_ago)
    # when the schedule runs under the default cadence (60 minutes), then under 5 minutes
    settings.SEGMENT_REFRESH_MINUTES_OTHER = 60
    under_default = segments_refresh_due()
    settings.SEGMENT_REFRESH_MINUTES_OTHER = 5
    under_override = segments_refresh_due()
    # then only the second run finds it due: the setting is read at call time
    assert segment.pk not in under_default
    assert segment.pk in under_override
