"""A tag name that matches no tag is valid but matches nobody: the segment builder and the loyalty
editor say so, with the closest existing names ("did you mean")."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts.tag_names import tag_suggestions, unknown_tag_names, unknown_tag_warnings
from tests.factories import ContactFactory, TagFactory, give_tag
from tests.loyalty.factories import make_program

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags():
    for name in ("PURCHASE", "kurtki", "kurtki-zimowe", "buty"):
        TagFactory(name=name, key=name.lower())


def test_unknown_names_are_found_case_insensitively(tags):
    assert unknown_tag_names(["purchase", "PURCHSE", "Kurtki", " ", "purchse"]) == ["PURCHSE"]


def test_suggestions_are_the_closest_existing_names(tags):
    assert tag_suggestions("PURCHSE") == ["PURCHASE"]
    assert tag_suggestions("kurtk")[0] == "kurtki"
    assert tag_suggestions("zzzzzz") == []


def test_warning_sentence(tags):
    assert unknown_tag_warnings(["PURCHSE", "buty", "qqqqq"]) == [
        "No tag is named “PURCHSE”, so it matches no contact: did you mean “PURCHASE”?",
        "No tag is named “qqqqq”, so it matches no contact.",
    ]


def test_segment_builder_preview_warns_about_an_unknown_tag(marketer_client, tags):
    tree = {"r.kind": "group", "r.join": "all",
            "r-0.kind": "leaf", "r-0.type": "tag_score", "r-0.tag": "PURCHSE", "r-0.op": "gte", "r-0.value": "1",
            "r-1.kind": "leaf", "r-1.type": "tag_score", "r-1.tag": "kurtki", "r-1.op": "gte", "r-1.value": "1"}
    response = marketer_client.post(reverse("segments:builder_preview"), tree, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('data-testid="unknown-tag-warning"') == 1
    assert "No tag is named “PURCHSE”, so it matches no contact: did you mean “PURCHASE”?" in body


def test_segment_builder_preview_is_quiet_for_known_tags(marketer_client, tags):
    tree = {"r.kind": "group", "r.join": "all",
            "r-0.kind": "leaf", "r-0.type": "tag_score", "r-0.tag": "Purchase", "r-0.op": "gte", "r-0.value": "1"}
    response = marketer_client.post(reverse("segments:builder_preview"), tree, headers={"HX-Request": "true"})
    assert 'data-testid="unknown-tag-warning"' not in response.content.decode()


def _editor_data(program, tag: str) -> dict:
    tiers = list(program.tiers.order_by("min"))
    data = {
        "program_id": str(program.pk), "name": program.name, "description": "",
        "metric_type": "tag_score", "metric_tag": tag, "metric_within_days": "",
        "downgrade_policy": "immediate", "grace_days": "0",
        "tiers-TOTAL_FORMS": str(len(tiers)), "tiers-INITIAL_FORMS": str(len(tiers)),
        "tiers-MIN_NUM_FORMS": "1", "tiers-MAX_NUM_FORMS": "1000",
    }
    for index, tier in enumerate(tiers):
        data.update({f"tiers-{index}-id": str(tier.pk), f"tiers-{index}-name": tier.name,
                     f"tiers-{index}-min": str(tier.min), f"tiers-{index}-discount_percent": ""})
    return data


def test_loyalty_preview_and_save_warn_about_an_unknown_metric_tag(admin_client):
    give_tag(ContactFactory(), "PURCHASE", 3)
    program = make_program()
    # the live preview warns
    preview = admin_client.post(reverse("loyalty:preview"), _editor_data(program, "PURCHSE"),
                                headers={"HX-Request": "true"})
    assert "No tag is named “PURCHSE”, so it matches no contact: did you mean “PURCHASE”?" in preview.content.decode()
    # and saving anyway (the tag may come later) keeps the warning on the next page
    saved = admin_client.post(reverse("loyalty:program_edit", kwargs={"program_id": program.pk}),
                              _editor_data(program, "PURCHSE"), follow=True)
    assert saved.status_code == 200
    assert "did you mean “PURCHASE”?" in saved.content.decode()
    # a known tag gives no warning
    quiet = admin_client.post(reverse("loyalty:preview"), _editor_data(program, "purchase"),
                              headers={"HX-Request": "true"})
    assert 'data-testid="preview-tag-warning"' not in quiet.content.decode()
