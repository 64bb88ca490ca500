"""Segment counts run under a statement timeout everywhere a client waits for them: a definition
too expensive to count answers 400 saying so (never a 500, never an unbounded query)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection

from segments.models import Segment
from segments.services import SegmentTooExpensive, segment_count_bounded, statement_timeout

pytestmark = pytest.mark.django_db

DEFINITION = {"all": [{"type": "has_tag", "tag": "kurtki"}]}


def _slow_count(*args, **kwargs) -> int:
    """A count that takes a second of database time, as a 199-leaf definition at scale does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")
    return 0


@pytest.fixture
def slow(settings):
    settings.SEGMENT_PREVIEW_TIMEOUT_MS = 50
    with mock.patch("segments.services.segment_count", side_effect=_slow_count):
        yield


def test_api_preview_of_a_too_expensive_definition_is_400(admin_api, slow):
    # when the preview's count exceeds the time limit
    response = admin_api.post("/api/v1/segments/preview", json={"definition": DEFINITION})
    # then a clear 400 on the definition
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "definition"
    assert error["message"].startswith("this definition is too expensive: counting it took longer than 0.05 s")


def test_api_create_of_a_too_expensive_definition_saves_it_uncounted(admin_api, slow):
    # when saving needs a count that exceeds the limit
    response = admin_api.post("/api/v1/segments", json={"name": "Heavy", "definition": DEFINITION})
    # then it is saved without a count (the worker's refresh counts it), and the schema holds null
    assert response.status_code == 201
    assert response.json()["count"] is None
    assert Segment.objects.get().count is None


def test_the_limit_ends_with_the_block():
    # given an outer transaction with the server's default limit
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        [before] = cursor.fetchone()
        # when a bounded count runs inside it
        segment_count_bounded(DEFINITION, timeout_ms=5000)
        # then the outer transaction's limit is back
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == (before,)


def test_a_cancelled_statement_becomes_segment_too_expensive():
    # when a statement outlives the limit
    with pytest.raises(SegmentTooExpensive) as raised, statement_timeout(20), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")
    # then the error says how long the limit was, and the connection is usable
    assert raised.value.timeout_ms == 20
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_builder_save_of_a_too_expensive_definition_saves_it_uncounted(marketer_client, slow):
    # when the builder saves a definition whose count exceeds the limit
    response = marketer_client.post("/segments/new/", {
        "name": "Heavy", "r.kind": "group", "r.join": "all",
        "r-0.kind": "leaf", "r-0.type": "has_tag", "r-0.tag": "kurtki",
    }, follow=True)
    # then it is saved, and the page says the worker is counting it
    segment = Segment.objects.get()
    assert segment.count is None
    assert "too expensive to count live, so the worker is counting it" in response.content.decode()
