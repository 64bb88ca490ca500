"""The contact list sorted by one tag's score (``?sort=tag:<name>``) and filtered by it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.filters import ContactFilterSet
from contacts.models import Contact
from tests.factories import ContactFactory, give_tag

pytestmark = pytest.mark.django_db
LIST = reverse("contacts:list")


def emails(response) -> list[str]:
    return [contact.email for contact in response.context["contacts"]]


@pytest.fixture
def jackets():
    # given kurtki scores 7, 3, 3 and 1, a contact without kurtki but a high lead score
    low = ContactFactory(email="low@example.com", score=900)
    give_tag(low, "kurtki", 1)
    top = ContactFactory(email="top@example.com", score=1)
    give_tag(top, "kurtki", 7)
    tie_b = ContactFactory(email="tie-b@example.com", score=5)
    tie_a = ContactFactory(email="tie-a@example.com", score=5)
    give_tag(tie_b, "Kurtki", 3)
    give_tag(tie_a, "kurtki", 3)
    other = ContactFactory(email="other@example.com", score=1000)
    give_tag(other, "buty", 50)
    return {"low": low, "top": top, "tie_a": tie_a, "tie_b": tie_b, "other": other}


def test_sort_by_a_tags_score_lists_its_holders_highest_first(marketer_client, jackets):
    # when a marketer sorts by the kurtki score (any case)
    response = marketer_client.get(LIST, {"sort": "tag:KURTKI"})
    # then only contacts with kurtki are listed, highest kurtki score first, ties by id
    ties = sorted([jackets["tie_a"], jackets["tie_b"]], key=lambda contact: contact.pk)
    assert emails(response) == ["top@example.com", *(c.email for c in ties), "low@example.com"]
    # and the page says what the order is and shows the tag's score column
    body = response.content.decode()
    assert "Contacts with the tag “KURTKI”, highest “KURTKI” score first." in body
    assert [int(cell) for cell in _sort_scores(body)] == [7, 3, 3, 1]
    assert response.context["count"] == 4


def _sort_scores(body: str) -> list[str]:
    marker = 'data-testid="sort-tag-score">'
    return [chunk.split("<", 1)[0] for chunk in body.split(marker)[1:]]


def test_tag_score_filter_combines_with_the_sort(marketer_client, jackets):
    # when filtering kurtki ≥ 3 and sorting by it
    response = marketer_client.get(LIST, {"tag": "kurtki", "tag_min": 3, "sort": "tag:kurtki"})
    # then the contact at 1 is gone and the order holds
    assert emails(response)[0] == "top@example.com"
    assert set(emails(response)) == {"top@example.com", "tie-a@example.com", "tie-b@example.com"}
    # and the Sort select offers the filtered tag's score
    options = dict(response.context["filter"].sort_options())
    assert options["tag:kurtki"] == "“kurtki” score, highest first"


def test_unknown_sort_tag_lists_nobody_and_suggests_a_name(marketer_client, jackets):
    response = marketer_client.get(LIST, {"sort": "tag:kurtk"})
    assert emails(response) == []
    body = response.content.decode()
    assert "No tag is named “kurtk”" in body
    assert "did you mean" in body and "sort=tag:kurtki" in body


def test_bad_sort_value_falls_back_to_score(marketer_client, jackets):
    response = marketer_client.get(LIST, {"sort": "tag:   "})
    assert response.status_code == 200
    assert emails(response)[0] == "other@example.com"  # lead score 1000, the default order
    assert response.context["filter"].sort_value == "-score"


def test_tag_sort_pages_in_sql_and_joins_the_tag_once(marketer_client):
    # given 60 contacts with kurtki 1..60
    for score in range(1, 61):
        give_tag(ContactFactory(email=f"c{score:02d}@example.com"), "kurtki", score)
    # when the second page is requested
    with CaptureQueriesContext(connection) as queries:
        response = marketer_client.get(LIST, {"sort": "tag:kurtki", "page": 2})
    # then it holds the next 10, still in order, fetched with LIMIT/OFFSET in SQL on one join
    assert emails(response) == [f"c{score:02d}@example.com" for score in range(10, 0, -1)]
    page_sql = next(q["sql"] for q in queries.captured_queries
                    if "OFFSET 50" in q["sql"] and "contacts_contacttag" in q["sql"])
    assert "LIMIT 51" in page_sql
    assert page_sql.count("INNER JOIN \"contacts_contacttag\"") == 1


def test_bulk_all_matching_uses_the_tag_sorted_selection(jackets):
    # the "all matching" bulk queryset keeps the sort's restriction to holders of the tag
    queryset = ContactFilterSet({"sort": "tag:kurtki"}, queryset=Contact.objects.all()).qs
    assert set(queryset.values_list("email", flat=True)) == {
        "low@example.com", "top@example.com", "tie-a@example.com", "tie-b@example.com"}
    sql, params = queryset.ids_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS s", params)
        assert cursor.fetchone()[0] == 4
