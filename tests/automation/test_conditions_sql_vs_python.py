"""Rule conditions compiled to SQL agree with the plain-Python evaluator (hypothesis)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.conditions import ConditionError, compile_conditions, condition_matches, validate_conditions

# Latin letters incl. Polish (the database's lower() and Python's str.lower() agree on them),
# digits and punctuation that matters for URLs and decimals.
ALPHABET = "abcKURTkizżŁłÓóĘęŚś0123456789 ./-_%'\"\\"
texts = st.text(alphabet=ALPHABET, max_size=8)
numeric_texts = st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?", fullmatch=True)
numbers = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-1000, max_value=1000, places=2).map(float),
)
scalars = st.one_of(texts, numeric_texts, numbers, st.booleans())
property_values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=2), st.dictionaries(texts, scalars, max_size=1))
KEYS = ["category", "value", "url"]


@st.composite
def conditions(draw):
    op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"]))
    if op in ("gt", "gte", "lt", "lte"):
        value = draw(numbers)
    elif op == "in":
        value = draw(st.lists(scalars, min_size=1, max_size=3))
    elif op == "contains":
        value = draw(texts.filter(bool))
    else:
        value = draw(scalars)
    return {"property": draw(st.sampled_from(KEYS)), "op": op, "value": value}


@pytest.mark.django_db
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    condition_list=st.lists(conditions(), min_size=1, max_size=3),
    rows=st.lists(st.dictionaries(st.sampled_from(KEYS), property_values, max_size=3), min_size=1, max_size=6),
)
def test_sql_and_python_agree(condition_list, rows):
    # given valid conditions and some events' properties
    try:
        cleaned = validate_conditions(condition_list)
    except ConditionError:
        return  # (the strategies only build valid conditions; kept for safety)
    sql, params = compile_conditions(cleaned, properties_sql="p.properties")
    # when both evaluate them
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.ord, {sql} FROM unnest(%s::jsonb[]) WITH ORDINALITY AS p(properties, ord) ORDER BY p.ord",
            [*params, [json.dumps(row) for row in rows]],
        )
        in_sql = [matched for _ord, matched in cursor.fetchall()]
    in_python = [all(condition_matches(condition, json.loads(json.dumps(row))) for condition in cleaned) for row in rows]
    # then
    assert in_sql == in_python


@pytest.mark.parametrize(
    ("condition", "properties", "expected"),
    [
        ({"property": "category", "op": "eq", "value": "Kurtki"}, {"category": "KURTKI"}, True),
        ({"property": "category", "op": "ne", "value": "kurtki"}, {}, False),  # missing fails, ne too
        ({"property": "value", "op": "gt", "value": 1000}, {"value": "1299.90"}, True),
        ({"property": "value", "op": "lte", "value": 1000}, {"value": 1000}, True),
        ({"property": "value", "op": "gt", "value": 1000}, {"value": "a lot"}, False),
        ({"property": "url", "op": "contains", "value": "/DIAMENTY"}, {"url": "https://x.pl/diamenty/ring"}, True),
        ({"property": "category", "op": "in", "value": ["buty", "kurtki"]}, {"category": "Buty"}, True),
        ({"property": "category", "op": "eq", "value": "5"}, {"category": 5}, False),
        ({"property": "flag", "op": "eq", "value": True}, {"flag": True}, True),
    ],
)
def test_documented_semantics(condition, properties, expected):
    assert condition_matches(condition, properties) is expected


def test_validation_names_the_field():
    with pytest.raises(ConditionError) as error:
        validate_conditions([{"property": "value", "op": "gt", "value": "x"}, {"property": "", "op": "eq", "value": 1}])
    assert [field for field, _message in error.value.errors] == ["where.0.value", "where.1.property"]
