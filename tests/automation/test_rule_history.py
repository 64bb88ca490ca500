"""The change history of rules and segmentation matrices: who created, changed, switched or deleted
them (a person in the browser, an API key, the system), what changed, and what each version said."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from automation.history import MATRIX, RULE, object_history, recent_changes
from automation.models import Rule, RuleEvent, SegmentationMatrix
from tests.automation.factories import JACKETS_FORM, make_rule

pytestmark = pytest.mark.django_db

JACKETS = JACKETS_FORM


def test_editor_changes_are_recorded_with_who_and_what(marketer_client, marketer):
    # given a rule created in the editor
    marketer_client.post(reverse("automation:rule_new"), JACKETS)
    rule = Rule.objects.get()
    # when the marketer changes its condition and points cap, then switches it off
    marketer_client.post(reverse("automation:rule_edit", args=[rule.pk]), {
        **JACKETS, "cond-0-value": "buty", "act-1-type": "add_score", "act-1-points": "5",
        "max_points_per_contact": "50"})
    marketer_client.post(reverse("automation:rule_toggle", args=[rule.pk]))
    # then the history says so, newest first, in the marketer's name
    history = object_history(RULE, rule.pk)
    name = marketer.get_full_name()
    assert [(entry["headline"], entry["who"]) for entry in history] == [
        ("Switched off", name), ("Changed", name), ("Created", name)]
    assert history[1]["changes"] == ["conditions changed", "actions changed", "points cap no cap → 50 points"]
    assert history[1]["summary"].startswith("When a product view with category = buty happens")
    assert history[2]["summary"] == "When a product view with category = kurtki happens, add tag KURTKI +1."
    # and the rule's page shows it
    page = marketer_client.get(reverse("automation:rule_edit", args=[rule.pk])).content.decode()
    assert "Switched off" in page and "Points cap no cap → 50 points" not in page
    assert "Conditions changed, actions changed, points cap no cap → 50 points" in page


def test_saving_an_unchanged_rule_records_nothing(marketer_client):
    marketer_client.post(reverse("automation:rule_new"), JACKETS)
    rule = Rule.objects.get()
    # when the editor is saved without a change
    marketer_client.post(reverse("automation:rule_edit", args=[rule.pk]), JACKETS)
    # then there is only the creation
    assert [entry["headline"] for entry in object_history(RULE, rule.pk)] == ["Created"]


def test_api_changes_name_the_key_and_a_deleted_rule_stays_in_the_history(admin_api, marketer_client):
    # given a rule
    rule = make_rule("Purchases", event_type="purchase", actions=[{"type": "add_score", "points": 25}])
    # when an API key renames it, then deletes it
    assert admin_api.patch(f"/api/v1/rules/{rule.pk}", json={"name": "Big purchases"}).status_code == 200
    assert admin_api.delete(f"/api/v1/rules/{rule.pk}").status_code == 204
    # then the change history lists both in the key's name, the deleted rule without a link
    entries, has_next = recent_changes()
    assert not has_next
    assert [(entry["headline"], entry["name"], entry["who"], entry["url"]) for entry in entries[:2]] == [
        ("Deleted", "Big purchases", "API key “test admin”", None),
        ("Changed", "Big purchases", "API key “test admin”", None),
    ]
    assert entries[1]["changes"] == ["renamed from “Purchases”"]
    page = marketer_client.get(reverse("automation:changes")).content.decode()
    assert "Big purchases</strong> <span class=\"text-xs muted\">(deleted)</span>" in page
    assert "When a purchase happens, add 25 points." in page


def test_matrix_changes_are_recorded(marketer_client, marketer):
    # given a matrix made in the editor
    data = {"name": "Categories", "event_type": "product_view", "property": "category", "match": "eq",
            "active": "on", "row-0-value": "kurtki", "row-0-tag": "KURTKI", "row-0-score": "1"}
    assert marketer_client.post(reverse("automation:matrix_new"), data).status_code == 302
    matrix = SegmentationMatrix.objects.get()
    # when a row is added and it is renamed
    marketer_client.post(reverse("automation:matrix_edit", args=[matrix.pk]), {
        **data, "name": "Shop categories", "row-1-value": "buty", "row-1-tag": "BUTY", "row-1-score": "2"})
    # then
    history = object_history(MATRIX, matrix.pk)
    assert [(entry["headline"], entry["changes"]) for entry in history] == [
        ("Changed", ["renamed from “Categories”", "rows changed (1 → 2)"]), ("Created", [])]
    assert history[0]["summary"] == "On a product view, category equals: kurtki → KURTKI +1, buty → BUTY +2."
    assert history[0]["who"] == marketer.get_full_name()
    page = marketer_client.get(reverse("automation:matrix_edit", args=[matrix.pk])).content.decode()
    assert 'data-testid="history"' in page and "Rows changed (1 → 2)" not in page and "Renamed from" in page


def test_changes_page_filters_by_kind_and_pages_in_sql(marketer_client, django_assert_max_num_queries):
    # given 55 rule changes and one matrix
    rules = [make_rule(f"rule {index}") for index in range(5)]
    for round_ in range(10):
        for rule in rules:
            Rule.objects.filter(pk=rule.pk).update(description=f"round {round_}")
    SegmentationMatrix.objects.create(name="m", event_type="product_view", property="category", rows=[])
    # when the pages are read, then each has at most 50 entries in a fixed number of queries
    with django_assert_max_num_queries(12):
        first = marketer_client.get(reverse("automation:changes"), {"kind": "rule"})
    assert first.content.decode().count("<tr>") == 1 + 50
    entries, has_next = recent_changes(kind="rule", page=2)
    # 5 rules × (created + switched on after the factory back-dates activation + 10 edits) = 60
    assert (len(entries), has_next) == (RuleEvent.objects.count() - 50, False)
    assert {entry["kind"] for entry in recent_changes(kind="matrix")[0]} == {"Matrix"}
    assert recent_changes(kind="", page=1)[1] is True
    # and a bad page or kind falls back to the first page of everything
    assert marketer_client.get(reverse("automation:changes"), {"page": "x", "kind": "nope"}).status_code == 200


def test_existing_rules_get_a_first_entry_when_history_starts():
    # given a rule from before the history existed (its events gone)
    rule = make_rule("Old rule")
    RuleEvent.objects.all().delete()
    # when the migration records what exists
    migration = importlib.import_module("automation.migrations.0009_audit_rules_matrices")
    migration.record_existing(apps, None)
    # then its history starts with it as it is
    history = object_history(RULE, rule.pk)
    assert [(entry["headline"], entry["who"], entry["name"]) for entry in history] == [
        ("History starts", "system", "Old rule")]
