"""The benchmark's segment definitions and the best hand-written SQL for each (the yardstick).

Each case: a name, the segment definition in the API contract's language (counted through the
app's own compiler) and one SQL statement returning the same count. The SQL was shaped with
EXPLAIN ANALYZE on the generated data; it may use only indexes the app's migrations create, so
the comparison is fair. ``bench.run`` checks that both sides agree on the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class SegmentCase:
    name: str
    description: str
    definition: dict[str, Any]
    sql: str


# Today where the shop is, as the app's age conditions read it (the connection's current_date is UTC's:
# between midnight in Warsaw and midnight UTC it is yesterday).
_TODAY = f"(now() AT TIME ZONE '{settings.TIME_ZONE}')::date"


def _tag(key: str) -> str:
    return f"(SELECT id FROM contacts_tag WHERE key = '{key}')"


SEGMENT_CASES: list[SegmentCase] = [
    SegmentCase(
        name="segment_count_tag_score",
        description="one tag score: kurtki ≥ 3",
        definition={"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3},
        sql=f"SELECT count(*) FROM contacts_contacttag WHERE tag_id = {_tag('kurtki')} AND score >= 3",
    ),
    SegmentCase(
        name="segment_count_two_tags",
        description="two tags AND: sukienki ≥ 2 AND buty ≥ 1",
        definition={"all": [
            {"type": "tag_score", "tag": "sukienki", "op": "gte", "value": 2},
            {"type": "tag_score", "tag": "buty", "op": "gte", "value": 1},
        ]},
        sql=f"""
            SELECT count(*) FROM contacts_contacttag a
            JOIN contacts_contacttag b ON b.contact_id = a.contact_id AND b.tag_id = {_tag('buty')} AND b.score >= 1
            WHERE a.tag_id = {_tag('sukienki')} AND a.score >= 2
        """,
    ),
    SegmentCase(
        name="segment_count_nested_not",
        description="((kurtki ≥ 3 AND sukienki ≥ 1) OR score ≥ 100) AND email consent AND NOT inactive 365 days",
        definition={"all": [
            {"any": [
                {"all": [
                    {"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3},
                    {"type": "tag_score", "tag": "sukienki", "op": "gte", "value": 1},
                ]},
                {"type": "score", "op": "gte", "value": 100},
            ]},
            {"type": "consent", "channel": "email", "value": True},
            {"not": {"type": "inactive_days", "value": 365}},
        ]},
        sql=f"""
            SELECT count(*) FROM contacts_contact c
            JOIN contacts_consent k ON k.contact_id = c.id AND k.channel = 'email' AND k.granted
            WHERE c.last_activity_at >= now() - interval '365 days'
              AND (c.score >= 100 OR c.id IN (
                    SELECT a.contact_id FROM contacts_contacttag a
                    JOIN contacts_contacttag b ON b.contact_id = a.contact_id
                         AND b.tag_id = {_tag('sukienki')} AND b.score >= 1
                    WHERE a.tag_id = {_tag('kurtki')} AND a.score >= 3))
        """,
    ),
    SegmentCase(
        name="segment_count_event_window",
        description="≥ 3 product views of kurtki in the last 30 days",
        definition={"type": "event_count", "event_type": "product_view",
                    "where": [{"property": "category", "op": "eq", "value": "kurtki"}],
                    "within_days": 30, "op": "gte", "value": 3},
        sql="""
            SELECT count(*) FROM (
                SELECT contact_id FROM automation_event
                WHERE type = 'product_view' AND lower(properties ->> 'category') = 'kurtki'
                  AND occurred_at >= now() - interval '30 days'
                GROUP BY contact_id HAVING count(*) >= 3) x
        """,
    ),
    SegmentCase(
        name="segment_count_negative_group",
        description="negative group: inactive 180 days AND email consent",
        definition={"all": [
            {"type": "inactive_days", "value": 180},
            {"type": "consent", "channel": "email", "value": True},
        ]},
        sql="""
            SELECT count(*) FROM contacts_contact c
            JOIN contacts_consent k ON k.contact_id = c.id AND k.channel = 'email' AND k.granted
            WHERE c.last_activity_at IS NULL OR c.last_activity_at < now() - interval '180 days'
        """,
    ),
    SegmentCase(
        name="segment_count_rfm_demography",
        description="purchases ≥ 1000 PLN in 365 days AND age 25–40 AND country PL",
        definition={"all": [
            {"type": "purchase_total", "within_days": 365, "op": "gte", "value": 1000},
            {"type": "age", "op": "between", "value": [25, 40]},
            {"type": "attribute", "name": "country", "op": "eq", "value": "PL"},
        ]},
        sql=f"""
            SELECT count(*) FROM contacts_contact c
            WHERE c.country = 'PL'
              AND c.birth_date > ({_TODAY} - interval '41 years')::date
              AND c.birth_date <= ({_TODAY} - interval '25 years')::date
              AND c.id IN (SELECT contact_id FROM automation_event
                           WHERE type = 'purchase' AND occurred_at >= now() - interval '365 days'
                           GROUP BY contact_id HAVING sum(value) >= 1000)
        """,
    ),
]
