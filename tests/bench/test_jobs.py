"""The jobs part of the benchmark (``bench/jobs.py``) on a small generated shop: every figure is
measured, and the part leaves the data as it found it. Nothing here is timed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bench import jobs
from contacts.models import Contact, ContactImport, ContactTag, Tag
from core.jobs.files import job_file_path
from core.models import Job
from demo import datagen
from leads.models import ScoreChange, TemperatureSettings

CONTACTS = 300
# Whole rows, timestamps included, of what the jobs write to and of what the areas derive from it:
# a contact the import rewrote with the value it had, a tag score, a consent, a guard row of the
# rule, an audit row of the rule or of a bench tag, a membership or tier not brought back changes a
# table's hash.
FINGERPRINTED = (
    "contacts_contact", "contacts_contacttag", "contacts_tagscorechange", "contacts_tag", "contacts_tagevent",
    "contacts_consent", "contacts_consentchange", "contacts_contactimport", "contacts_note", "automation_rule",
    "automation_ruleevent", "automation_ruleapplication", "automation_segmentdirtycontact", "segments_segment",
    "segments_segmentmember", "loyalty_contacttier", "loyalty_tierchange", "leads_scorechange", "pghistory_context",
)


def _state() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(score), 0) FROM contacts_contacttag")
        tags = cursor.fetchone()
        tables = {}
        for table in FINGERPRINTED:
            cursor.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")
            tables[table] = cursor.fetchone()
        # the erasure tells the world of the erased contact: that message is the erasure's own record
        cursor.execute("SELECT count(*) FROM core_outboxmessage WHERE type <> 'contact.erased'")
        outbox = cursor.fetchone()[0]
    settings = TemperatureSettings.current()
    return {"contacts": Contact.objects.count(), "tags": tags, "tag_names": Tag.objects.count(),
            "scores": list(Contact.objects.order_by("pk").values_list("score", flat=True)),
            "ledger": ScoreChange.objects.count(), "decay": (settings.decay_enabled, settings.tag_decay_enabled),
            "tables": tables, "outbox": outbox}


def _one(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_every_job_figure_is_measured_and_the_data_is_left_as_it_was():
    # given a small shop generated up to now (the rule backfill looks at the last days, and the
    # memberships the jobs recompute are those of today)
    datagen.generate(contacts=CONTACTS, now=timezone.now())
    before = _state()
    newest_view = _one("SELECT max(occurred_at) FROM automation_event WHERE type = 'product_view'", [])
    since = newest_view - timedelta(days=jobs.BACKFILL_DAYS)
    broadest = _one("SELECT max(n) FROM (SELECT count(*) AS n FROM segments_segmentmember GROUP BY segment_id) s", [])
    # when the part runs
    figures = {figure["name"]: figure for figure in jobs.measure(runs=1)}
    # then every figure has a value, over the shop's contacts
    assert set(figures) == {"job_contacts_export", "job_bulk_tag", "job_bulk_untag", "job_contacts_import",
                            "job_rule_backfill", "job_adhoc_rule", "job_score_decay", "job_tag_decay",
                            "preview_temperature_thresholds", "preview_loyalty_tiers", "gdpr_erasure"}
    assert all(figure["value"] for figure in figures.values()), figures
    assert figures["job_contacts_export"]["rows"] == CONTACTS and figures["job_contacts_export"]["counts_agree"]
    assert figures["job_bulk_tag"]["changed"] == CONTACTS == figures["job_bulk_untag"]["changed"]
    assert figures["job_score_decay"]["changed"] > 0 and figures["job_tag_decay"]["changed"] > 0
    assert figures["preview_temperature_thresholds"]["statuses"] == [200]
    assert figures["gdpr_erasure"]["events_left"] == 0
    # the import: a row per contact (fewer contacts than IMPORT_ROWS), half of them new, none refused
    imported = figures["job_contacts_import"]
    assert (imported["rows"], imported["imported"], imported["errors"]) == (CONTACTS, CONTACTS, 0)
    assert imported["created"] == CONTACTS // 2 == imported["updated"]
    assert "contacts" in imported["rows_are"] and 0 < imported["bytes"]
    # the backfill examined every product view of the window and fired on those of one category
    backfill = figures["job_rule_backfill"]
    assert backfill["rows"] == backfill["total"] == _one(
        "SELECT count(*) FROM automation_event WHERE type = 'product_view' AND occurred_at >= %s", [since])
    assert backfill["applied"] == _one(
        "SELECT count(*) FROM automation_event WHERE type = 'product_view' AND occurred_at >= %s"
        " AND properties ->> 'category' = %s", [since, backfill["category"]])
    assert 0 < backfill["contacts"] <= backfill["applied"] < backfill["rows"]
    # the ad-hoc run reached every member of the broadest saved segment
    adhoc = figures["job_adhoc_rule"]
    assert adhoc["rows"] == adhoc["segment_members"] == broadest > 0
    # and the shop is as it was: no bench tag, rule or import, decay rolled back, the imported
    # contacts purged, the erased contact gone, no file left
    after = _state()
    assert after["tables"] == before["tables"], [table for table in FINGERPRINTED
                                                 if after["tables"][table] != before["tables"][table]]
    assert after == before
    assert not any(job_file_path(job.pk).exists() for job in Job.objects.filter(kind="contacts_export"))
    assert not ContactTag.objects.filter(tag__name__startswith="bench ").exists()
    assert not ContactImport.objects.exists()
    assert not Contact.all_objects.filter(email__startswith="bench-import-").exists()
