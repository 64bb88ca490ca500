"""List, detail, CSV export, overlap, templates, delete and the contact card's panel."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact
from segments.models import Segment
from segments.services import segment_overlap, segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.segments.exports import segment_export_csv
from tests.segments.factories import consent, make_segment

pytestmark = pytest.mark.django_db

KURTKI_3 = {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}


@pytest.fixture
def kurtki_segment():
    for index, score in enumerate((1, 3, 5)):
        give_tag(ContactFactory(email=f"k{index}@example.com"), "kurtki", score)
    segment = make_segment(KURTKI_3, name="Kurtki fans")
    segment_refresh(segment.pk)
    return segment


def test_list_shows_count_refresh_and_trend(sales_client, kurtki_segment, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        response = sales_client.get("/segments/")
    content = response.content.decode()
    assert "Kurtki fans" in content
    assert 'data-testid="segment-count">2</td>' in content
    assert f"/contacts/?segment={kurtki_segment.pk}" in content


def test_list_stays_constant_in_queries(sales_client, django_assert_max_num_queries):
    for index in range(15):
        segment_refresh(make_segment(KURTKI_3, name=f"s{index}").pk)
    with django_assert_max_num_queries(8):
        assert sales_client.get("/segments/").status_code == 200


def test_detail_lists_members_and_history(sales_client, kurtki_segment):
    # given one full refresh so far: a single size, no line to draw yet
    first = sales_client.get(f"/segments/{kurtki_segment.pk}/").content.decode()
    # when a second refresh records another size
    segment_refresh(kurtki_segment.pk)
    content = sales_client.get(f"/segments/{kurtki_segment.pk}/").content.decode()
    # then the members and the definition are listed, and the size history is drawn from two points
    assert "k1@example.com" in content and "k2@example.com" in content and "k0@example.com" not in content
    assert "Contacts who have the tag “kurtki” with a score of at least 3." in content
    assert 'id="segment-size"' not in first and "the line appears from the second one" in first
    assert 'id="segment-size"' in content


@pytest.mark.parametrize("contacts_estimate", [0, 10**9], ids=["walking the email index", "sorting the memberships"])
def test_detail_pages_members_by_email_whichever_plan(sales_client, monkeypatch, contacts_estimate):
    # given 60 members created in an order unlike their emails', and contacts outside the segment
    for number in range(75):
        contact = ContactFactory(email=f"m{(number * 37) % 75:02}@example.com")
        if number % 5:
            give_tag(contact, "kurtki", 3)
    segment = make_segment(KURTKI_3, name="Kurtki fans")
    segment_refresh(segment.pk)
    # (the plan follows the members against the contacts the planner counts: few, or a great many)
    monkeypatch.setattr("segments.views.table_rows_estimate", lambda table: contacts_estimate)
    # when both pages of members are read
    with CaptureQueriesContext(connection) as queries:
        pages = [sales_client.get(f"/segments/{segment.pk}/", {"page": page}).context["page_obj"] for page in (1, 2)]
    # then they hold every member once, in email order, 50 and then 10
    expected = list(Contact.objects.filter(contact_tags__tag__name="kurtki").order_by("email").values_list("email", flat=True))
    assert len(expected) == 60
    assert [[contact.email for contact in page] for page in pages] == [expected[:50], expected[50:]]
    from_memberships = [query["sql"] for query in queries.captured_queries if "= ANY((ARRAY(SELECT" in query["sql"]]
    assert len(from_memberships) == (2 if contacts_estimate else 0)


def test_refresh_now_starts_a_job(marketer_client, kurtki_segment):
    response = marketer_client.post(f"/segments/{kurtki_segment.pk}/refresh/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "job" in response.content.decode()
    from core.models import Job

    assert Job.objects.filter(kind="segment_refresh", params__segment_id=kurtki_segment.pk).exists()


def test_csv_export_escapes_formulas(marketer_client):
    # the export is a job (tests/segments/test_export_job.py); its file guards formulas
    contact = ContactFactory(email="evil@example.com", first_name="=HYPERLINK(\"x\")")
    give_tag(contact, "kurtki", 9)
    segment = make_segment(KURTKI_3)
    segment_refresh(segment.pk)
    body = segment_export_csv(marketer_client, segment).decode("utf-8-sig")
    assert "evil@example.com" in body
    assert "'=HYPERLINK" in body


def test_overlap_counts_regions_in_one_query(django_assert_num_queries):
    # given three overlapping memberships
    a, b, c = (ContactFactory() for _ in range(3))
    give_tag(a, "x", 1)
    give_tag(b, "x", 1)
    give_tag(b, "y", 1)
    give_tag(c, "y", 1)
    sx = make_segment({"type": "has_tag", "tag": "x"}, name="x")
    sy = make_segment({"type": "has_tag", "tag": "y"}, name="y")
    segment_refresh(sx.pk)
    segment_refresh(sy.pk)
    # when
    with django_assert_num_queries(1):
        result = segment_overlap([sx.pk, sy.pk])
    # then
    assert result["regions"] == {(sx.pk,): 1, (sy.pk,): 1, (sx.pk, sy.pk): 1}
    assert result["sizes"] == {sx.pk: 2, sy.pk: 2}


def test_overlap_page(sales_client, kurtki_segment):
    other = make_segment({"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 5}, name="Top")
    segment_refresh(other.pk)
    content = sales_client.get(f"/segments/overlap/?s={kurtki_segment.pk}&s={other.pk}").content.decode()
    assert "Kurtki fans ∩ Top" in content


def test_templates_page_lists_presets(marketer_client):
    content = marketer_client.get("/segments/templates/").content.decode()
    for name in ("No activity for a year", "Subscribers who never click", "Champions", "Hibernating"):
        assert name in content


def test_delete_is_blocked_while_nested_elsewhere(marketer_client, kurtki_segment):
    make_segment({"type": "segment", "segment_id": kurtki_segment.pk}, name="Outer")
    marketer_client.post(f"/segments/{kurtki_segment.pk}/delete/")
    assert Segment.objects.filter(pk=kurtki_segment.pk).exists()


def test_delete(marketer_client, kurtki_segment):
    response = marketer_client.post(f"/segments/{kurtki_segment.pk}/delete/")
    assert response.status_code == 302
    assert not Segment.objects.filter(pk=kurtki_segment.pk).exists()


def test_card_panel_explains_membership(sales_client, kurtki_segment):
    # given a contact with kurtki 5 (a member) and the for-sending variant it is not in
    contact = ContactFactory(email="why@example.com")
    give_tag(contact, "kurtki", 5)
    consent(contact, "email", False)
    sending = make_segment(KURTKI_3, name="Kurtki mailing", for_sending=True)
    # when
    content = sales_client.get(f"/segments/card/{contact.pk}/?segment={sending.pk}").content.decode()
    # then
    assert "not a member" in content
    assert "✓</span>Have the tag “kurtki” with a score of at least 3" in content
    assert "✗</span>Have given email consent" in content


def test_card_panel_without_choice_lists_memberships(sales_client, kurtki_segment):
    member = Segment.objects.get(pk=kurtki_segment.pk).members.first().contact
    content = sales_client.get(f"/segments/card/{member.pk}/").content.decode()
    assert "Kurtki fans" in content
