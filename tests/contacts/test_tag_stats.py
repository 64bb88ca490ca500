"""The Tags page's numbers: counted live on a small database, read from a snapshot the worker
recounts on a large one (every 5 minutes, or "Recount now" as a Job)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.urls import reverse

from contacts.models import ContactTag, TagStats
from contacts.services import tag_merge, tag_overview, tag_stats_refresh
from contacts.tasks import tag_stats_recount_task, tag_stats_refresh_task
from core import locks
from core.jobs import job_start
from core.models import Job
from marketing_hub.celery import app
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    """kurtki on three contacts (scores 1, 6, 25), buty on one (2)."""
    first, second, third = ContactFactory.create_batch(3)
    kurtki = give_tag(first, "kurtki", 1).tag
    ContactTag.objects.create(contact=second, tag=kurtki, score=6)
    ContactTag.objects.create(contact=third, tag=kurtki, score=25)
    buty = give_tag(first, "buty", 2).tag
    return {"kurtki": kurtki, "buty": buty, "contacts": (first, second, third)}


@pytest.fixture
def large(settings):
    """Make the database count as large: the page reads the snapshot."""
    settings.MH_TAG_STATS_LIVE_MAX_ROWS = -1


def _numbers(overview) -> dict:
    return {tag.name: (tag.contact_count, tag.total_score) for tag in overview.tags}


def test_small_database_counts_live(marketer_client, shop):
    overview = tag_overview()
    assert overview.counted_at is None
    assert _numbers(overview) == {"kurtki": (3, 32), "buty": (1, 2)}
    # bands 1, 2, 3, 4, 5–9, 10–19, 20+
    assert overview.bands == [1, 1, 0, 0, 1, 0, 1]
    page = marketer_client.get(reverse("contacts:tags")).content.decode()
    assert 'data-testid="tag-counted"' not in page


def test_large_database_reads_the_snapshot_until_recounted(marketer_client, shop, large):
    # given no count yet: the tags show "—" and say so
    overview = tag_overview()
    assert _numbers(overview) == {"buty": (None, None), "kurtki": (None, None)} and overview.uncounted == 2
    page = marketer_client.get(reverse("contacts:tags")).content.decode()
    assert "Counted not yet" in page and 'data-testid="recount"' in page
    # when the worker recounts
    assert tag_stats_refresh_task.run() == 2
    # then the numbers are those of a live count, with their bands and time
    overview = tag_overview()
    assert _numbers(overview) == {"kurtki": (3, 32), "buty": (1, 2)}
    assert overview.bands == [1, 1, 0, 0, 1, 0, 1] and overview.counted_at is not None
    assert [round(tag.average_score, 2) for tag in overview.tags] == [10.67, 2.0]
    # and a change since is not in them until the next count
    ContactTag.objects.filter(tag=shop["buty"]).delete()
    assert _numbers(tag_overview())["buty"] == (1, 2)
    tag_stats_refresh()
    assert _numbers(tag_overview())["buty"] == (0, 0)
    # while the dialogs count exactly, now
    ContactTag.objects.filter(tag=shop["kurtki"], score=1).delete()
    dialog = marketer_client.get(reverse("contacts:tag_dialog", args=[shop["kurtki"].pk, "delete"])).content.decode()
    assert "2 contacts will lose it" in dialog and _numbers(tag_overview())["kurtki"] == (3, 32)


def test_search_filters_the_snapshot(shop, large):
    tag_stats_refresh()
    assert _numbers(tag_overview(search="KURT")) == {"kurtki": (3, 32)}


def test_merge_keeps_the_target_counted(shop, large):
    tag_stats_refresh()
    tag_merge(shop["buty"], shop["kurtki"])
    # buty's one contact already had kurtki: the scores add up there
    assert _numbers(tag_overview()) == {"kurtki": (3, 34)}


def test_recount_now_runs_as_a_job_and_tells_the_page(marketer_client, shop, large):
    # when the marketer asks for a recount
    response = marketer_client.post(reverse("contacts:tag_stats_recount"), headers={"HX-Request": "true"})
    job = Job.objects.get(kind="tag_stats")
    assert response.status_code == 200 and f'id="job-{job.pk}"' in response.content.decode()
    # and the worker runs it
    tag_stats_recount_task.run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.result) == ("done", {"tags": 2})
    assert TagStats.objects.get(tag=shop["kurtki"]).contact_count == 3
    # then the finished progress tells the page to show the new counts
    progress = marketer_client.get(reverse("jobs:progress", args=[job.pk]), headers={"HX-Request": "true"})
    assert progress.status_code == 286
    assert "tag_stats-finished" in progress["HX-Trigger"]
    page = marketer_client.get(reverse("contacts:tags")).content.decode()
    assert 'hx-trigger="tag_stats-finished from:body"' in page


def test_scheduled_recount_skips_while_another_runs(shop, large):
    # given another session holding the recount lock
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, 0)", [locks.TAG_STATS.key])
        # then the scheduled recount skips
        assert tag_stats_refresh_task.run() is None
        assert not TagStats.objects.exists()
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, 0)", [locks.TAG_STATS.key])
        other.close()
    # and once it is free, it counts
    assert tag_stats_refresh_task.run() == 2


def test_small_database_has_nothing_to_recount_and_the_schedule_has_the_task(shop):
    assert tag_stats_refresh_task.run() == 0 and not TagStats.objects.exists()
    assert "contacts.tasks.tag_stats_refresh_task" in {entry["task"] for entry in app.conf.beat_schedule.values()}
    job = job_start(tag_stats_recount_task, title="Recount tags")
    assert job.kind == "tag_stats"
