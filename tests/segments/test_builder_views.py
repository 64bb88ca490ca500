"""The builder's server side: structural edits, live preview, saving with errors on their rows."""

from __future__ import annotations

import pytest

from segments.models import Segment
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import make_segment

pytestmark = pytest.mark.django_db

TREE = {
    "r.kind": "group", "r.join": "any",
    "r-0.kind": "group", "r-0.join": "all",
    "r-0-0.kind": "leaf", "r-0-0.type": "tag_score", "r-0-0.tag": "kurtki", "r-0-0.op": "gte", "r-0-0.value": "3",
    "r-0-1.kind": "leaf", "r-0-1.type": "consent", "r-0-1.channel": "email", "r-0-1.value": "true",
    "r-1.kind": "leaf", "r-1.type": "score", "r-1.op": "gte", "r-1.value": "100", "r-1.negate": "on",
}


def test_new_segment_page_renders_the_tree(marketer_client):
    response = marketer_client.get("/segments/new/")
    assert response.status_code == 200
    assert b'name="r.join"' in response.content
    assert b'name="r-0.type"' in response.content


def test_template_opens_the_builder_filled_in(marketer_client):
    response = marketer_client.get("/segments/new/?preset=rfm-at-risk")
    assert response.status_code == 200
    content = response.content.decode()
    assert 'value="At risk"' in content
    assert 'name="r-1.within_days" value="90"' in content


def test_preview_counts_and_explains(marketer_client):
    # given one contact matching the first branch, one the second
    kurtki = ContactFactory(email="k@example.com")
    give_tag(kurtki, "kurtki", 4)
    from tests.segments.factories import consent

    consent(kurtki, "email", True)
    ContactFactory(email="low@example.com", score=5)
    ContactFactory(email="high@example.com", score=500)
    # when
    response = marketer_client.post("/segments/builder/preview/", TREE, headers={"HX-Request": "true"})
    # then: kurtki ≥ 3 with consent, or NOT score ≥ 100 → k and low
    content = response.content.decode()
    assert '<span class="num">2</span>' in content
    assert "low@example.com" in content and "high@example.com" not in content
    assert "do not have a contact score of at least 100" in content


def test_preview_puts_errors_on_their_rows(marketer_client):
    data = {**TREE, "r-0-0.value": "lots"}
    content = marketer_client.post("/segments/builder/preview/", data).content.decode()
    assert 'id="errors-r-0-0" class="node-errors" hx-swap-oob="true"><p class="field-error">Value: must be a number' in content
    assert 'data-testid="live-count"' not in content


@pytest.mark.parametrize(
    ("op", "check"),
    [
        ("add_condition:r-0", 'name="r-0-2.type"'),
        ("add_group:r", 'name="r-2.join"'),
        ("remove:r-0", 'name="r-0.type"'),  # the score leaf moved up to r-0
        ("set_type:r-1", 'name="r-1.value" value="100"'),
        ("negate:r-0", 'name="r-0.negate" checked'),
    ],
)
def test_structural_edits_render_the_editor_and_count(marketer_client, op, check):
    response = marketer_client.post("/segments/builder/editor/", {**TREE, "op": op})
    content = response.content.decode()
    assert response.status_code == 200
    assert check in content
    assert 'id="preview" hx-swap-oob="innerHTML"' in content


def test_change_of_type_resets_the_inputs(marketer_client):
    data = {**TREE, "r-0-0.type": "event_count", "op": "set_type:r-0-0"}
    content = marketer_client.post("/segments/builder/editor/", data).content.decode()
    assert 'name="r-0-0.event_type"' in content
    assert 'name="r-0-0.within_days" value="30"' in content
    assert 'name="r-0-0.tag"' not in content


def test_save_with_errors_rerenders_with_the_row_error(marketer_client):
    data = {**TREE, "name": "", "r-1.value": "many"}
    response = marketer_client.post("/segments/new/", data)
    content = response.content.decode()
    assert response.status_code == 200
    assert "A segment needs a name." in content or "This field is required." in content
    assert 'id="errors-r-1" class="node-errors"><p class="field-error">Value: must be a number' in content
    assert not Segment.objects.exists()


def test_save_creates_the_segment_and_redirects(marketer_client, marketer):
    give_tag(ContactFactory(), "kurtki", 4)
    response = marketer_client.post("/segments/new/", {**TREE, "name": "Mixed", "for_sending": "on"})
    segment = Segment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/segments/{segment.pk}/"
    assert segment.definition == {
        "any": [
            {"all": [{"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3},
                     {"type": "consent", "channel": "email", "value": True}]},
            {"not": {"type": "score", "op": "gte", "value": 100}},
        ]
    }
    assert segment.for_sending is True
    assert segment.created_by == marketer


def test_edit_rejects_a_cycle_on_the_row(marketer_client):
    inner = make_segment({"type": "score", "op": "gte", "value": 1}, name="inner")
    outer = make_segment({"type": "segment", "segment_id": inner.pk}, name="outer")
    data = {"name": "inner", "r.kind": "group", "r.join": "all", "r-0.kind": "leaf", "r-0.type": "segment",
            "r-0.segment_id": str(outer.pk)}
    content = marketer_client.post(f"/segments/{inner.pk}/edit/", data).content.decode()
    assert "cycle" in content
    assert Segment.objects.get(pk=inner.pk).definition == {"type": "score", "op": "gte", "value": 1}


def test_tag_options_suggest_tags(marketer_client):
    give_tag(ContactFactory(), "Kurtki zimowe", 1)
    give_tag(ContactFactory(), "Sukienki", 1)
    content = marketer_client.get("/segments/builder/tags/", {"r-0.tag": "kurt"}).content.decode()
    assert '<option value="Kurtki zimowe">' in content
    assert "Sukienki" not in content


def test_sales_cannot_preview(sales_client):
    assert sales_client.post("/segments/builder/preview/", TREE).status_code == 403
