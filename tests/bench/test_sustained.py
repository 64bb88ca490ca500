"""The sustained ingestion part of the benchmark (``bench/sustained.py``) for a few seconds on a small
generated bench shop, with the real servers it starts (gunicorn, the worker, webhook delivery's
worker, beat): it measures something, every probe is accounted for and completes, the figures agree
with what the run recorded, and the shop is left as it was. Timings are not checked against targets."""

from __future__ import annotations

import math

import pytest
from django.db import connection

from bench import sustained
from contacts.models import Contact
from core.models import ApiKey
from demo import datagen
from loyalty.models import ContactTier
from segments.models import Segment, SegmentMember

SECONDS = 5.0
# batches of 100 (not the bench's 1,000): the load then drains in seconds on a busy test machine
BATCH = 100


def test_percentiles_rank_probes_that_never_completed_above_every_latency():
    # given ten probes, one of which never completed
    latencies: list[float | None] = [0.1 * (i + 1) for i in range(9)] + [None]
    # then the median is a latency, the p95 lands on the missing probe and is null
    assert sustained.percentile_or_none(latencies, 0.5) == pytest.approx(0.5)
    assert sustained.percentile_or_none(latencies, 0.95) is None
    # and a median over runs is null when a middle run has none
    assert sustained.median_or_none([1.0, None, 3.0]) == 3.0
    assert sustained.median_or_none([1.0, None]) is None


@pytest.mark.django_db(transaction=True)
def test_a_short_sustained_run_measures_every_probe_and_leaves_the_shop_as_it_was(monkeypatch):
    # given a small bench shop (20 saved segments, starter and stage rules, the loyalty programme),
    # and two web workers instead of 2 × cores + 1 (ten processes importing Django at once took
    # 40 s to answer on a busy 2-core machine)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    datagen.generate(contacts=300, demo=False)
    contacts_before = set(Contact.objects.values_list("pk", flat=True))
    segments_before = set(Segment.objects.values_list("pk", flat=True))
    keys_before = set(ApiKey.objects.values_list("pk", flat=True))
    log: list[str] = []

    # when the part runs once for a few seconds against real servers
    figures = {figure["name"]: figure for figure in
               sustained.measure(connection.settings_dict["NAME"], seconds=SECONDS, runs=1, say=log.append,
                                 batch=BATCH)}

    # then every figure is measured, from the one run
    assert set(figures) == set(sustained.FIGURES)
    rate = figures["sustained_events_per_s"]
    [run] = rate["runs"]
    assert rate["value"] == run["events_per_s"] > 0
    # the rate is the events accepted over first POST → events/status 0, as recorded
    assert run["events_sent"] >= BATCH and run["http_errors"] == 0 and rate["batch_events"] == BATCH
    assert run["events_per_s"] == pytest.approx(run["events_sent"] / run["elapsed_s"], abs=1)
    assert SECONDS - 1 <= run["send_seconds"] <= run["elapsed_s"]
    assert run["new_contact_events"] == pytest.approx(0.1 * (run["events_sent"] - run["probe_events"]), abs=1)
    # the time series covers the run and accounts for every accepted event
    series = run["series"]
    assert len(series) == math.ceil(run["elapsed_s"] / sustained.WINDOW_S)
    assert sum(window["accepted"] for window in series) == run["events_sent"]
    assert 0 < sum(window["processed"] for window in series) <= run["events_sent"]
    assert run["pending_samples"]

    # every probe sent is accounted for, and every one completed: all four effects seen after its 202
    latency = run["latency"]
    assert latency["probes_sent"] >= SECONDS / sustained.PROBE_INTERVAL_S - 1
    assert latency["probes_accepted"] == latency["probes_sent"] == len(latency["probes"])
    assert latency["probes_completed"] == latency["probes_sent"]
    assert latency["probes_not_completed"] == 0 == latency["probes_send_failed"]
    for sent_s, latency_s in latency["probes"]:
        assert latency_s is not None and latency_s > 0
        # sent while the load ran, and visible no later than one poll after events/status read 0
        assert 0 <= sent_s <= run["send_seconds"]
        assert sent_s + latency_s <= run["elapsed_s"] + sustained.POLL_INTERVAL_S + 1.0
    assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["p99_s"] <= latency["max_s"]
    assert all(effect["p95_s"] is not None and effect["p95_s"] <= latency["p95_s"]
               for effect in latency["per_effect"].values())
    effect = figures["event_to_effect_p95_s"]
    assert effect["value"] == latency["p95_s"]
    assert effect["probes_sent"] == latency["probes_sent"] and effect["probes_not_completed"] == 0

    # the pages were timed during the load, every answer a 200
    for name in ("sustained_contact_list_p95_ms", "sustained_contact_card_p95_ms"):
        assert figures[name]["value"] > 0 and figures[name]["errors"] == 0
        assert figures[name]["runs"][0]["n"] > 0

    # and the shop is as it was: the probe segment, the probe contacts and the new contacts are gone
    # with their memberships and tiers, the saved segments' cached counts agree with their members
    # again, the part's API keys are gone
    assert not Contact.objects.filter(email__startswith=sustained.EMAIL_PREFIX).exists()
    assert set(Contact.objects.values_list("pk", flat=True)) == contacts_before
    assert not SegmentMember.objects.exclude(contact_id__in=contacts_before).exists()
    assert not ContactTier.objects.exclude(contact_id__in=contacts_before).exists()
    assert set(Segment.objects.values_list("pk", flat=True)) == segments_before
    assert {segment.pk: segment.count for segment in Segment.objects.exclude(count=None)} == {
        segment.pk: SegmentMember.objects.filter(segment=segment).count() for segment in Segment.objects.exclude(count=None)}
    assert set(ApiKey.objects.values_list("pk", flat=True)) == keys_before
    assert run["contacts_removed"] >= latency["probes_sent"] + run["new_contact_events"]


@pytest.mark.django_db(transaction=True)
def test_an_open_loop_run_sends_batches_on_schedule_at_the_offered_rate(monkeypatch):
    # given a small bench shop and an offered rate of 100 events/s in batches of 20 (one due every 0.2 s)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    datagen.generate(contacts=300, demo=False)
    rate, batch, seconds = 100.0, 20, 4.0
    # when the part runs once with that rate
    figures = {figure["name"]: figure for figure in
               sustained.measure(connection.settings_dict["NAME"], seconds=seconds, runs=1, say=lambda _: None,
                                 batch=batch, rate=rate)}
    # then the load went out on its schedule: as many batches as were due in the run, not as many as
    # the clients could post, every one accepted and recorded with how late it went
    events = figures["sustained_events_per_s"]
    [run] = events["runs"]
    assert events["offered_events_per_s"] == run["offered_events_per_s"] == rate
    assert "offering 100 events/s (open loop)" in events["measures"]
    due = seconds * rate / batch
    assert due - 2 <= run["batches"] <= due + 1
    assert run["events_sent"] - run["probe_events"] == run["batches"] * batch
    assert run["late_sends"]["batches"] == run["batches"]
    assert 0 <= run["late_sends"]["p95_s"] < 1.0 and run["late_sends"]["over_1s"] == 0
    assert run["accepted_per_s_while_sending"] <= rate * 1.5
    # and the probes completed as in a closed-loop run
    assert figures["event_to_effect_p95_s"]["probes_not_completed"] == 0
