"""The same event_id sent at the same moment from two threads takes effect once."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection

from automation.models import EventReceipt
from contacts.models import Event
from tests.automation.factories import event, make_rule, process_all, tags_of


@pytest.mark.django_db(transaction=True)
def test_same_event_id_from_two_threads_counts_once(ingest_api):
    # given a rule, and the same batch of 50 events (new contact included) ready in two threads
    make_rule()
    batch = {"events": [event(f"conc-{i}", email=f"c{i % 7}@example.com", category="kurtki") for i in range(50)]}
    barrier = threading.Barrier(2)
    responses = []

    def send():
        try:
            barrier.wait()
            responses.append(ingest_api.post("/api/v1/events", json=batch).json())
        finally:
            connection.close()

    # when both send at once
    with mock.patch("automation.tasks.events_process_enqueue"):
        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        process_all()
    # then one accepted everything and the other saw only duplicates (or they split the work)
    assert sum(response["accepted"] for response in responses) == 50
    assert sum(response["duplicates"] for response in responses) == 50
    assert Event.objects.count() == EventReceipt.objects.count() == 50
    assert sum(tags_of(f"c{i}@example.com").get("kurtki", 0) for i in range(7)) == 50
