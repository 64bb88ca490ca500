"""The shapes the compiler picks for speed keep the exact semantics: category matches without the
``jsonb_typeof`` guard, counts driven by events or tags, the serial plan for subqueries under
OR / NOT, and the one-statement full refresh."""

from __future__ import annotations

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact
from segments.compiler import compile_definition
from segments.services import segment_count, segment_refresh, serial_plan, subqueries_under_or_not
from tests.factories import ContactFactory, give_tag
from tests.segments.factories import add_event, make_segment

pytestmark = pytest.mark.django_db


def selected(definition: dict) -> set[str]:
    return set(Contact.objects.filter(compile_definition(definition)).values_list("email", flat=True))


def views_of(value) -> dict:
    return {"type": "event_count", "event_type": "product_view", "op": "gte", "value": 1,
            "where": [{"property": "category", "op": "eq", "value": value}]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", {"string-true@example.com"}), ("kurtki", {"kurtki@example.com"}), ("5", {"string-5@example.com"})],
)
def test_category_equality_matches_strings_only(value, expected):
    # given categories that render alike through ->> : a boolean and a number beside strings
    for email, category in (("string-true@example.com", "true"), ("bool-true@example.com", True),
                            ("kurtki@example.com", "Kurtki"), ("number-5@example.com", 5),
                            ("string-5@example.com", "5")):
        add_event(ContactFactory(email=email), "product_view", days_ago=1, category=category)
    # when / then: both the member query and the count select exactly the string matches
    assert selected(views_of(value)) == expected
    assert segment_count(views_of(value)) == len(expected)


def test_counts_driven_by_events_and_tags_count_each_contact_once():
    # given three contacts with several matching events each, two of them tagged
    contacts = [ContactFactory(email=f"c{index}@example.com") for index in range(3)]
    for contact in contacts:
        for _ in range(3):
            add_event(contact, "purchase", days_ago=2, value=50)
    give_tag(contacts[0], "vip", 2)
    give_tag(contacts[1], "vip", 2)
    twice = {"type": "event_count", "event_type": "purchase", "op": "gte", "value": 2, "within_days": 30}
    spent = {"type": "purchase_total", "op": "gte", "value": 100, "within_days": 30}
    vip = {"type": "has_tag", "tag": "vip"}
    # when / then
    assert segment_count(twice) == 3
    assert segment_count({"all": [spent, twice]}) == 3
    assert segment_count({"all": [twice, vip]}) == 2
    assert segment_count({"all": [spent, {"not": vip}]}) == 1


def test_and_of_tags_under_or_is_one_intersection():
    # given contacts with one, the other or both tags
    both = ContactFactory(email="both@example.com")
    give_tag(both, "kurtki", 3)
    give_tag(both, "buty", 1)
    give_tag(ContactFactory(email="kurtki@example.com"), "kurtki", 3)
    give_tag(ContactFactory(email="buty@example.com"), "buty", 1)
    ContactFactory(email="rich@example.com", score=150)
    definition = {"any": [{"all": [{"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3},
                                   {"type": "has_tag", "tag": "buty"}]},
                          {"type": "score", "op": "gte", "value": 100}]}
    # when
    sql = str(Contact.objects.filter(compile_definition(definition)).query)
    # then one subquery holds both tag conditions, the column test comes first, members are right
    assert sql.count(" IN (SELECT") == 2  # the driver's IN and the nested second tag's IN
    assert sql.index('"score" >= 100') < sql.index(" IN (SELECT")
    assert selected(definition) == {"both@example.com", "rich@example.com"}
    assert selected({"not": definition}) == {"kurtki@example.com", "buty@example.com"}


def test_serial_plan_is_only_for_subqueries_under_or_or_not():
    from segments.compiler import Compiler

    compiler = Compiler()
    tag = {"type": "has_tag", "tag": "kurtki"}
    assert not subqueries_under_or_not({"all": [tag, {"type": "score", "op": "gte", "value": 1}]}, compiler)
    assert not subqueries_under_or_not({"any": [tag]}, compiler)
    assert not subqueries_under_or_not({"not": {"type": "inactive_days", "value": 30}}, compiler)
    assert subqueries_under_or_not({"not": tag}, compiler)
    assert subqueries_under_or_not({"any": [tag, {"type": "score", "op": "gte", "value": 1}]}, compiler)


def current_parallel_workers() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather')")
        return cursor.fetchone()[0]


def test_serial_count_inside_a_transaction_restores_the_setting():
    give_tag(ContactFactory(), "kurtki", 3)
    with transaction.atomic():
        # given the caller's own setting
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 1")
        # when a count with a subquery under NOT runs
        count = segment_count({"not": {"type": "has_tag", "tag": "kurtki"}})
        # then it counted and the caller's setting is back
        assert count == 0
        assert current_parallel_workers() == "1"


def test_serial_plan_lets_errors_through_and_keeps_the_transaction_usable():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 1")
        # when a statement fails inside the serial block
        with pytest.raises(DataError), serial_plan(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
        # then the original error surfaced, the savepoint undid the SET LOCAL, the work goes on
        assert current_parallel_workers() == "1"


def test_full_refresh_evaluates_the_definition_once():
    # given
    give_tag(ContactFactory(email="a@example.com"), "kurtki", 3)
    segment = make_segment({"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3})
    # when
    with CaptureQueriesContext(connection) as queries:
        count = segment_refresh(segment.pk)
    # then one statement read the tags (and wrote the members)
    assert count == 1
    evaluations = [query["sql"] for query in queries.captured_queries if "contacts_contacttag" in query["sql"]]
    assert len(evaluations) == 1
    assert "INSERT INTO segments_segmentmember" in evaluations[0]
