"""Segmentation matrices, ad-hoc actions over a segment or a filter, and the starter model."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import translation

from automation.adhoc import adhoc_run
from automation.ingestion import events_ingest
from automation.models import MatrixApplication, Rule, SegmentationMatrix
from automation.starter import STARTER_RULES, install_starter_rules
from core.jobs import Progress
from core.models import Job
from tests.automation.factories import event, process_all, score_of, tags_of
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


@pytest.mark.parametrize(
    ("match", "rows", "url", "expected"),
    [
        ("eq", [{"value": "kurtki", "tag": "KURTKI", "score": 1}], "KURTKI", {"KURTKI": 1}),
        ("prefix", [{"value": "/diamenty", "tag": "Diamenty", "score": 3}, {"value": "/zloto", "tag": "Złoto", "score": 1}],
         "/Diamenty/pierscionek", {"Diamenty": 3}),
        ("contains", [{"value": "sale", "tag": "Promo", "score": 1}, {"value": "/", "tag": "Any", "score": 1}],
         "/summer-SALE/", {"Promo": 1, "Any": 1}),
    ],
)
def test_matrix_maps_values_to_tags_once(match, rows, url, expected):
    # given a matrix reading "url" of page views
    matrix = SegmentationMatrix.objects.create(name="m", event_type="page_view", property="url", match=match, rows=rows)
    # when a matching event is processed (and processing runs again)
    events_ingest([event("m1", type="page_view", url=url), event("m2", type="product_view", url=url)])
    process_all()
    process_all()
    # then
    assert tags_of("anna@example.com") == expected
    assert MatrixApplication.objects.filter(matrix=matrix).count() == 1


def test_starter_rules_are_named_in_the_installers_language_and_installed_once_in_any():
    # when a Polish user installs the starter model, and an English one clicks the button again
    with translation.override("pl"):
        polish = install_starter_rules()
    english = install_starter_rules()
    # then the rules carry Polish names and descriptions, and none is installed twice
    assert Rule.objects.count() == len(STARTER_RULES)
    assert [rule.pk for rule in polish] == [rule.pk for rule in english]
    assert Rule.objects.filter(name="Zapis na newsletter → tag newsletter", description="Oznacza subskrybentów.").exists()


def test_starter_rules_install_idempotently_and_score_like_the_seeds():
    # when installed twice
    first = install_starter_rules()
    second = install_starter_rules()
    # then
    assert [rule.pk for rule in first] == [rule.pk for rule in second]
    assert Rule.objects.count() == len(STARTER_RULES) == 6
    # and the model scores as the seeds describe
    events_ingest([
        event("s1", category="Kurtki"), event("s2", category="kurtki"),
        event("s3", type="purchase", value=200), event("s4", type="purchase", value=1500.5),
        event("s5", type="email_open"), event("s6", type="page_view", url="https://shop.pl/diamenty/ring"),
        event("s7", type="page_view", url="https://shop.pl/buty"), event("s8", type="newsletter_signup"),
    ])
    process_all()
    assert tags_of("anna@example.com") == {"Kurtki": 2, "PURCHASE": 2, "newsletter": 1}
    assert score_of("anna@example.com") == 25 + 50 + 10 + 30


def _job(params: dict) -> Job:
    return Job.objects.create(kind="adhoc_actions", title="Winter promo", params=params)


def test_adhoc_over_a_segment():
    # given a segment of two contacts
    from segments.models import Segment, SegmentMember

    members = [ContactFactory(), ContactFactory()]
    outsider = ContactFactory()
    segment = Segment.objects.create(name="VIP", definition={"all": []})
    for contact in members:
        SegmentMember.objects.create(segment=segment, contact=contact)
    job = _job({"target": "segment", "segment_id": segment.pk, "actions": [
        {"type": "add_tag", "tag": "WINTER-PROMO", "score": 1}, {"type": "add_score", "points": 15}]})
    # when the job's body runs
    result = adhoc_run(job, Progress(job))
    # then
    assert result == {"contacts": 2}
    for contact in members:
        assert tags_of(contact.email) == {"WINTER-PROMO": 1}
        assert score_of(contact.email) == 15
    assert tags_of(outsider.email) == {}


def test_adhoc_over_a_contact_list_filter_resumes_after_a_crash():
    # given three contacts with the tag kurtki and one without
    tagged = [ContactFactory() for _ in range(3)]
    for contact in tagged:
        give_tag(contact, "kurtki", 2)
    ContactFactory()
    job = _job({"target": "filter", "query": "tag=kurtki", "actions": [{"type": "add_tag", "tag": "Promo", "score": 1}]})
    # and a previous attempt that committed the first contact before the worker died
    first_id = min(contact.pk for contact in tagged)
    Job.objects.filter(pk=job.pk).update(resume_after=first_id, counts={"contacts": 1}, processed=1, chunks_done=1)
    job.refresh_from_db()
    # when the redelivered task runs
    result = adhoc_run(job, Progress(job))
    # then only the other two get it now
    assert result == {"contacts": 3}
    assert sorted(tags_of(contact.email).get("Promo", 0) for contact in tagged) == [0, 1, 1]


def test_adhoc_view_counts_then_starts_a_job(marketer_client, monkeypatch):
    from segments.models import Segment, SegmentMember

    segment = Segment.objects.create(name="VIP", definition={"all": []})
    SegmentMember.objects.create(segment=segment, contact=ContactFactory())
    started = []
    monkeypatch.setattr("automation.adhoc.job_start", lambda task, **kwargs: started.append(kwargs) or Job.objects.create(kind="adhoc_actions", **{k: v for k, v in kwargs.items() if k in ("title", "params")}))
    data = {"target": "segment", "segment": segment.pk, "act-0-type": "add_tag", "act-0-tag": "WINTER-PROMO", "act-0-score": "1"}
    # when counted
    counted = marketer_client.post("/automation/adhoc/", {**data, "confirm": "0"})
    # then the count shows and nothing started
    assert counted.status_code == 200 and b"will get these actions" in counted.content and not started
    # when confirmed
    response = marketer_client.post("/automation/adhoc/", {**data, "confirm": "1"})
    assert response.status_code == 302 and started
    assert started[0]["params"]["actions"] == [{"type": "add_tag", "tag": "WINTER-PROMO", "score": 1}]


def test_adhoc_view_rejects_templates_and_missing_target(marketer_client):
    response = marketer_client.post("/automation/adhoc/", {"target": "segment", "act-0-type": "add_tag",
                                                           "act-0-tag": "{category}", "confirm": "1"})
    assert response.status_code == 200
    assert "Choose the segment" in response.content.decode()
    assert "Templates such as {category} need an event" in response.content.decode()
