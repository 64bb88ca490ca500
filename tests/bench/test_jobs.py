"""The jobs part of the benchmark (``bench/jobs.py``) on a small generated shop: every figure is
measured, and the part leaves the data as it found it. Nothing here is timed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from bench import jobs
from contacts.models import Contact, ContactTag, Tag
from core.jobs.files import job_file_path
from core.models import Job
from demo import datagen
from leads.models import ScoreChange, TemperatureSettings

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _state() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(score), 0) FROM contacts_contacttag")
        tags = cursor.fetchone()
    settings = TemperatureSettings.current()
    return {"contacts": Contact.objects.count(), "tags": tags, "tag_names": Tag.objects.count(),
            "scores": list(Contact.objects.order_by("pk").values_list("score", flat=True)),
            "ledger": ScoreChange.objects.count(), "decay": (settings.decay_enabled, settings.tag_decay_enabled)}


@pytest.mark.django_db(transaction=True)
def test_every_job_figure_is_measured_and_the_data_is_left_as_it_was():
    # given a small shop
    datagen.generate(contacts=300, now=NOW)
    before = _state()
    # when the part runs
    figures = {figure["name"]: figure for figure in jobs.measure(runs=1)}
    # then every figure has a value, over the shop's contacts
    assert set(figures) == {"job_contacts_export", "job_bulk_tag", "job_bulk_untag", "job_score_decay",
                            "job_tag_decay", "preview_temperature_thresholds", "preview_loyalty_tiers", "gdpr_erasure"}
    assert all(figure["value"] for figure in figures.values()), figures
    assert figures["job_contacts_export"]["rows"] == 300 and figures["job_contacts_export"]["counts_agree"]
    assert figures["job_bulk_tag"]["changed"] == 300 == figures["job_bulk_untag"]["changed"]
    assert figures["job_score_decay"]["changed"] > 0 and figures["job_tag_decay"]["changed"] > 0
    assert figures["preview_temperature_thresholds"]["statuses"] == [200]
    assert figures["gdpr_erasure"]["events_left"] == 0
    # and the shop is as it was: no bench tag, decay rolled back, the erased contact gone, no file left
    assert _state() == before
    assert not any(job_file_path(job.pk).exists() for job in Job.objects.filter(kind="contacts_export"))
    assert not ContactTag.objects.filter(tag__name__startswith="bench bulk").exists()
