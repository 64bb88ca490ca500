"""The intake reads a request body as json.loads does, and a batch's message sizes as sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking.intake import MAX_MESSAGE_BYTES, TooLarge, body_load, messages_validate

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
MESSAGES = st.lists(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5) | JSON_VALUES, max_size=6)
SEPARATORS = st.sampled_from([None, (",", ":"), (" , ", " : "), (",\n", ":\t")])


def _written(value: object, separators: tuple[str, str] | None, ascii_only: bool, indent: int | None) -> str:
    return json.dumps(value, separators=separators, ensure_ascii=ascii_only, indent=indent)


@given(MESSAGES, st.dictionaries(st.sampled_from(["sentAt", "writeKey", "context", "x"]), JSON_VALUES, max_size=3),
       SEPARATORS, st.booleans(), st.sampled_from([None, 2]))
def test_a_batch_reads_as_json_loads_reads_it_with_each_message_size_as_written(messages, others, separators,
                                                                               ascii_only, indent):
    parts = [_written(message, separators, ascii_only, indent) for message in messages]
    fields = [f'{json.dumps(key)}: {_written(value, separators, ascii_only, indent)}' for key, value in others.items()]
    text = " {\n " + ", ".join([*fields, '"batch" :\n[ ' + " ,\n".join(parts) + " ]"]) + " } \n"
    raw = text.encode()
    body, sizes = body_load(raw)
    assert body == json.loads(raw)
    assert sizes == [len(part.encode()) for part in parts]


@given(JSON_VALUES)
def test_any_other_json_reads_as_json_loads_reads_it(value):
    raw = json.dumps(value).encode()
    body, sizes = body_load(raw)
    assert body == json.loads(raw)
    if not (isinstance(value, dict) and isinstance(value.get("batch"), list)):
        assert sizes is None


@given(st.binary(max_size=60) | st.text(alphabet='{}[]",: 0123abtrue\\', max_size=40).map(str.encode))
def test_a_body_json_loads_refuses_is_refused_alike(raw):
    try:
        expected = json.loads(raw)
    except ValueError:
        with pytest.raises(ValueError):
            body_load(raw)
    else:
        assert body_load(raw)[0] == expected


@pytest.mark.parametrize("raw", [
    b'{"batch": [], "batch": 3}',  # the last value wins, as in json.loads: no sizes for a batch that is not a list
    '\ufeff{"batch": [{}]}'.encode(),  # a byte order mark: json.loads reads it, sizes unknown
    '{"batch": [{}]}'.encode("utf-16"),
])
def test_bodies_whose_sizes_are_not_known_still_read(raw):
    body, sizes = body_load(raw)
    assert body == json.loads(raw)
    assert sizes is None


def test_the_size_limit_counts_the_message_as_sent():
    padding = " " * (MAX_MESSAGE_BYTES - 40)
    message = '{"type": "track", "userId": "a@example.com", "event": "x",' + padding + '"messageId": "m1"}'
    body, sizes = body_load(f'{{"batch": [{message}]}}'.encode())
    assert sizes == [len(message)] and sizes[0] > MAX_MESSAGE_BYTES
    with pytest.raises(TooLarge, match="message 0"):
        messages_validate(body["batch"], source_id=1, browser=False, received_at=None, sizes=sizes)
    # without the sizes (another caller), the message's JSON is measured: small
    assert len(messages_validate(body["batch"], source_id=1, browser=False, received_at=_now())) == 1


def _now():
    from django.utils import timezone

    return timezone.now()
