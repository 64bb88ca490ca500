"""Arbitrary JSON to the events and rules endpoints never produces a 500 and never stores half."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.models import EventReceipt, Rule

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.text(max_size=130), st.integers()),
        "email": st.one_of(st.emails(), st.text(max_size=30)),
        "type": st.sampled_from(["page_view", "purchase", "nope", ""]),
        "occurred_at": st.one_of(st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(lambda d: d.isoformat()),
                                 st.text(max_size=20)),
        "properties": json_values,
    },
)


@pytest.mark.django_db
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"events": st.lists(event_like, max_size=4)})))
def test_events_never_500(ingest_api, body):
    with mock.patch("automation.tasks.events_process_enqueue"):
        before = EventReceipt.objects.count()
        response = ingest_api.client.post("/api/v1/events", data=json.dumps(body), content_type="application/json",
                                          headers=ingest_api.headers)
    assert response.status_code in (202, 400), response.content
    if response.status_code == 400:
        assert response.json()["errors"] and EventReceipt.objects.count() == before


rule_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=10), json_values),
        "trigger": st.one_of(json_values, st.fixed_dictionaries({
            "event_type": st.sampled_from(["purchase", "x"]),
            "where": st.lists(st.fixed_dictionaries({}, optional={
                "property": st.text(max_size=6), "op": st.sampled_from(["eq", "gt", "in", "contains", "zz"]),
                "value": json_values}), max_size=2)})),
        "actions": st.one_of(json_values, st.lists(st.fixed_dictionaries({}, optional={
            "type": st.sampled_from(["add_tag", "remove_tag", "add_score", "set_stage", "x"]),
            "tag": st.text(max_size=8), "score": json_values, "points": json_values,
            "funnel": st.text(max_size=4), "stage": st.text(max_size=4)}), max_size=2)),
        "once_per_contact": json_values,
        "max_points_per_contact": json_values,
    },
)


@pytest.mark.django_db
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=rule_like)
def test_rules_never_500(admin_api, body):
    before = Rule.objects.count()
    response = admin_api.client.post("/api/v1/rules", data=json.dumps(body), content_type="application/json",
                                     headers=admin_api.headers)
    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        assert Rule.objects.count() == before


# The control characters every string input refuses (core.validators); tab and newlines pass.
REFUSED_CONTROL = "".join(chr(code) for code in range(32) if chr(code) not in "\t\n\r")
property_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**15), max_value=10**15)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=REFUSED_CONTROL), max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=REFUSED_CONTROL), max_size=6),
        children, max_size=3),
    max_leaves=6,
)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    event_id=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs")), min_size=1, max_size=40),
    properties=st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=REFUSED_CONTROL),
                                       max_size=8).filter(lambda key: key != "value"),
                               property_values, max_size=4),
    value=st.none() | st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False, allow_infinity=False),
)
def test_accepted_events_are_stored_exactly_as_sent(ingest_api, event_id, properties, value):
    # given any valid event (quotes, backslashes, unicode in ids and properties; an exact order value)
    from decimal import Decimal

    from contacts.models import Event
    from tests.automation.factories import event as make_event

    body = make_event(event_id, type="purchase")
    body["properties"] = {**properties, **({"value": str(value)} if value is not None else {})}
    # when it is posted (the batch travels to the database as one JSON document)
    with mock.patch("automation.tasks.events_process_enqueue"):
        response = ingest_api.client.post("/api/v1/events", data=json.dumps({"events": [body]}),
                                          content_type="application/json", headers=ingest_api.headers)
    # then what is stored is exactly what was sent
    assert response.status_code == 202, response.content
    stored = Event.objects.get(event_id=event_id)
    assert stored.properties == body["properties"]
    assert stored.value == (Decimal(str(value)).quantize(Decimal("0.01")) if value is not None else None)
    Event.objects.filter(event_id=event_id).delete()
    EventReceipt.objects.filter(event_id=event_id).delete()
