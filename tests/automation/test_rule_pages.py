"""The rules pages: list with switches and counts, the editor (errors in place, summary, preview),
run on the past, and the job pages."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import translation

from automation.ingestion import events_ingest
from automation.models import Rule
from automation.rules import rule_summary
from contacts.models import EVENT_TYPE_LABELS
from core.models import Job
from tests.automation.factories import JACKETS_FORM, event, make_rule, process_all

pytestmark = pytest.mark.django_db

VALID = JACKETS_FORM


def test_list_shows_rules_with_fired_counts(marketer_client, django_assert_max_num_queries):
    # given a rule that fired twice
    make_rule("Jackets")
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event(category="kurtki"), event(category="buty")])
        process_all()
    # when
    with django_assert_max_num_queries(12):
        response = marketer_client.get("/automation/rules/")
    # then
    assert response.status_code == 200
    assert response.context["rules"][0].fired == {"days7": 2, "days30": 2}


def test_toggle_with_htmx_returns_the_row(marketer_client):
    rule = make_rule("Jackets")
    response = marketer_client.post(f"/automation/rules/{rule.pk}/toggle/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert f'id="rule-{rule.pk}"' in response.content.decode()
    assert "toast" in response["HX-Trigger"]
    rule.refresh_from_db()
    assert rule.active is False
    # switching it on again restarts its activation
    marketer_client.post(f"/automation/rules/{rule.pk}/toggle/", headers={"HX-Request": "true"})
    rule.refresh_from_db()
    assert rule.active is True and rule.activated_at is not None


def test_editor_creates_a_rule(marketer_client, marketer):
    response = marketer_client.post("/automation/rules/new/", VALID)
    rule = Rule.objects.get()
    assert response.status_code == 302
    assert (rule.event_type, rule.conditions, rule.actions) == (
        "product_view", [{"property": "category", "op": "eq", "value": "kurtki"}],
        [{"type": "add_tag", "tag": "KURTKI", "score": 1}])
    assert rule.created_by == marketer and rule.activated_at


def test_editor_shows_errors_in_place_and_keeps_input(marketer_client):
    # given a condition with a text where a number is needed, and an empty tag
    data = {**VALID, "cond-3-property": "value", "cond-3-op": "gt", "cond-3-value": "lots", "act-0-tag": ""}
    # when
    response = marketer_client.post("/automation/rules/new/", data)
    # then 200, nothing saved, the messages next to the fields, the typed values kept
    html = response.content.decode()
    assert response.status_code == 200 and not Rule.objects.exists()
    assert "must be a number for gt" in html and 'value="lots"' in html
    assert "is required (a tag name" in html
    assert response.context["editor"].conditions[1].errors == {"value": "must be a number for gt"}


def test_summary_and_rows_endpoints(marketer_client):
    summary = marketer_client.post("/automation/rules/summary/", VALID)
    assert "When a product view with category = kurtki happens, add tag KURTKI +1." in summary.content.decode()
    row = marketer_client.get("/automation/rules/condition-row/?index=4")
    assert 'name="cond-4-property"' in row.content.decode() and "index=5" in row.content.decode()
    action = marketer_client.get("/automation/rules/action-row/?index=2&replace=1&act-2-type=add_score")
    assert 'name="act-2-points"' in action.content.decode()


def test_summary_names_the_event_by_its_label_in_the_language_of_the_page(marketer_client):
    # given the rule in Polish: the event type's label, the actions in Polish
    with translation.override("pl"):
        label = str(EVENT_TYPE_LABELS["product_view"]).lower()
        summary = rule_summary(event_type="product_view",
                               conditions=[{"property": "category", "op": "eq", "value": "kurtki"}],
                               actions=[{"type": "add_tag", "tag": "KURTKI", "score": 1},
                                        {"type": "add_score", "points": 5}],
                               max_points_per_contact=22)
    # then no slug, and the numbers agree with their nouns (5 punktów, 22 punkty)
    assert summary == (f"Gdy nastąpi zdarzenie „{label}”, w którym category = kurtki: dodaj tag KURTKI +1 i dodaj "
                       "5 punktów (łącznie najwyżej 22 punkty na kontakt).")
    assert "product_view" not in summary


def test_preview_counts_without_writing(marketer_client):
    # given past events (no rule existed)
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event(category="kurtki"), event(category="kurtki", email="b@example.com"),
                       event(category="buty")])
        process_all()
    # when previewing a rule worth a tag and 5 points
    response = marketer_client.post("/automation/rules/preview/", {
        **VALID, "act-1-type": "add_score", "act-1-points": "5"})
    # then
    preview = response.context["preview"]
    assert (preview["events"], preview["contacts"], preview["points"]) == (2, 2, 10)
    assert preview["top_tags"] == [("KURTKI", 2)]
    from contacts.models import ContactTag

    assert not ContactTag.objects.exists() and not Rule.objects.exists()


def test_run_on_past_events_starts_a_job(marketer_client):
    rule = make_rule()
    with mock.patch("automation.tasks.rule_backfill_task.delay"):
        response = marketer_client.post(f"/automation/rules/{rule.pk}/run/", {"since": "2025-01-01T10:00"},
                                        headers={"HX-Request": "true"})
    job = Job.objects.get()
    assert response.status_code == 200 and f"/jobs/{job.pk}/progress/" in response.content.decode()
    assert job.params["rule_id"] == rule.pk and job.params["since"].startswith("2025-01-01T10:00")


def test_job_progress_stops_polling_when_finished(marketer_client):
    running = Job.objects.create(kind="rule_backfill", status="running", progress=0.5, total=10, processed=5)
    done = Job.objects.create(kind="rule_backfill", status="done", progress=1.0)
    polling = marketer_client.get(f"/jobs/{running.pk}/progress/", headers={"HX-Request": "true"})
    finished = marketer_client.get(f"/jobs/{done.pk}/progress/", headers={"HX-Request": "true"})
    assert polling.status_code == 200 and 'hx-trigger="every 1s"' in polling.content.decode()
    assert finished.status_code == 286


def test_job_rerun_starts_a_new_job(marketer_client):
    rule = make_rule()
    job = Job.objects.create(kind="rule_backfill", status="done", params={"rule_id": rule.pk, "since": "2025-01-01T00:00:00+00:00"})
    with mock.patch("automation.tasks.rule_backfill_task.delay"):
        response = marketer_client.post(f"/jobs/{job.pk}/rerun/")
    new_job = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and new_job.params == job.params and new_job.status == "queued"


def test_events_page_lists_failed_and_retries(marketer_client):
    from automation.models import PendingEvent

    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event("bad-1")])
        PendingEvent.objects.update(failed=True, error="RuntimeError: boom", attempts=3)
        page = marketer_client.get("/automation/events/")
        assert "RuntimeError: boom" in page.content.decode()
        response = marketer_client.post("/automation/events/retry/", {"event_id": "bad-1"})
    assert response.status_code == 302
    retried = PendingEvent.objects.get()
    assert not retried.failed and retried.attempts == 0 and retried.error == ""


def test_events_page_counts_memberships_waiting_and_rules_page_says_no_events_wait(marketer_client):
    # given two events applied by the engine, whose contact's saved-segment memberships still wait
    with mock.patch("automation.tasks.events_process_enqueue"):
        events_ingest([event("m-1", category="kurtki"), event("m-2", category="buty")])
    process_all()
    # when the event processing page and the rules page open
    events_page = marketer_client.get("/automation/events/")
    rules_page = marketer_client.get("/automation/rules/")
    # then the events page counts the membership as pending (events/status is not 0 yet), and the
    # rules page does not claim events are waiting
    assert events_page.context["status"] == {"pending": 1, "waiting": 0, "failed": 0, "memberships_waiting": 1}
    assert "Segment memberships waiting" in events_page.content.decode()
    assert "waiting to be processed" not in rules_page.content.decode()
