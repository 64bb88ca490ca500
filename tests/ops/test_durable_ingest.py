"""An event answered 202 survives a PostgreSQL crash-restart, and is applied exactly once.

A stream of events goes through the API (gunicorn) to a throwaway cluster while a prefork worker
applies a rule; in each of 5 rounds one backend of the web processes is SIGKILLed, which makes
the postmaster kill every backend and recover from the WAL. With ``synchronous_commit=off`` the
last acknowledged batches before the crash were gone (2 of 5 rounds lost 250 events each).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from marketing_hub import embedded_db
from tests.automation.factories import make_rule
from tests.ops.conftest import (
    app_environment,
    celery_worker,
    copy_test_database,
    free_port,
    gunicorn,
    http,
    wait_http,
)

ROUNDS = 5
EVENTS_PER_ROUND = 20_000
EVENTS_PER_REQUEST = 500
CONTACTS = 200
CLIENT_THREADS = 3
POINTS = 5


def _chunks(round_number: int) -> list[list[dict]]:
    occurred = (timezone.now() - timedelta(minutes=1)).isoformat()
    events = [
        {"event_id": f"r{round_number}-{i}", "email": f"c{i % CONTACTS}@example.com", "type": "purchase",
         "occurred_at": occurred, "properties": {"category": "kurtki", "value": 10}}
        for i in range(EVENTS_PER_ROUND)
    ]
    return [events[start:start + EVENTS_PER_REQUEST] for start in range(0, EVENTS_PER_ROUND, EVENTS_PER_REQUEST)]


def _kill_an_ingest_backend(cluster) -> int | None:
    """SIGKILL one PostgreSQL backend of the web processes (preferably one inside a request)."""
    with cluster.connect() as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'mh-ingest' "
            "ORDER BY state = 'active' DESC, backend_start LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    os.kill(row[0], signal.SIGKILL)
    return row[0]


def _stream_round(url: str, headers: dict, cluster, round_number: int) -> tuple[set[str], int | None]:
    """Send one round's events from a few client threads; SIGKILL a backend part-way. Returns
    the event ids answered 202 and the pid killed."""
    chunks = _chunks(round_number)
    kill_after = random.randint(len(chunks) // 5, len(chunks) // 2)
    acknowledged: set[str] = set()
    answered = 0
    killed: list[int | None] = []
    lock = threading.Lock()
    queue = list(reversed(chunks))

    def client() -> None:
        nonlocal answered
        while True:
            with lock:
                if not queue:
                    return
                chunk = queue.pop()
            status, _body, _headers = http("POST", f"{url}/api/v1/events", {"events": chunk}, headers, timeout=60)
            with lock:
                if status == 202:
                    acknowledged.update(event["event_id"] for event in chunk)
                    answered += 1
                # Right after an acknowledgement: the moment an asynchronous commit is not yet
                # flushed. A client that did not get 202 would resend; this one does not.
                if answered >= kill_after and not killed:
                    killed.append(_kill_an_ingest_backend(cluster))

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return acknowledged, (killed[0] if killed else None)


def _drain(env: dict[str, str]) -> None:
    """Apply what is still pending (the beat's sweeper would re-enqueue it in production)."""
    code = (
        "import django; django.setup()\n"
        "from automation.engine import events_process_pending, events_status\n"
        "while events_status()['waiting']:\n"
        "    events_process_pending(time_budget=30)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_acknowledged_events_survive_postgres_crash_restarts_and_apply_once(cluster):
    from core.models import ApiKey

    # given a rule worth a tag and points, an ingest key, and the app on a cluster of its own
    # running with the embedded server's durability setting
    make_rule(event_type="purchase", actions=[{"type": "add_tag", "tag": "PURCHASE"}, {"type": "add_score", "points": POINTS}])
    _, raw_key = ApiKey.issue(name="fault test", scope=ApiKey.SCOPE_INGEST)
    cluster.configure({"synchronous_commit": embedded_db.SERVER_SETTINGS["synchronous_commit"]})
    copy_test_database(cluster)
    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = app_environment(cluster.database_url("mh-ingest"), cluster.broker_url(), MH_CELERY_QUEUE=queue,
                          INGEST_RATE_LIMIT_PER_MINUTE="0")
    port = free_port()
    web = gunicorn(port, env).start()
    worker = celery_worker(app_environment(cluster.database_url("mh-worker"), cluster.broker_url()), queue).start()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {raw_key}"}
    results = []
    try:
        started = time.monotonic()
        wait_http(f"{url}/healthz", process=web)
        worker.wait_for_log("ready.")
        # when 5 rounds of 20,000 events stream in, each with one backend SIGKILLed part-way
        for round_number in range(ROUNDS):
            acknowledged, killed_pid = _stream_round(url, headers, cluster, round_number)
            stored = {row[0] for row in cluster.query(
                "SELECT event_id FROM automation_eventreceipt WHERE event_id LIKE %s", [f"r{round_number}-%"])}
            results.append((round_number, killed_pid, len(acknowledged), len(acknowledged & stored), len(stored)))
        # the worker applies what the stream left; the drain stands in for the beat's sweeper,
        # which re-enqueues processing when a crash took the task messages in flight with it
        _drain(app_environment(cluster.database_url("mh-drain"), cluster.broker_url()))
        elapsed = time.monotonic() - started
    finally:
        web.stop()
        worker.stop()
    print(f"\n{ROUNDS} rounds in {elapsed:.0f} s; round, killed backend, answered 202, of those stored, stored:",
          *results, sep="\n  ")

    # then each round really crashed the server (every backend restarted) …
    assert all(killed_pid for _round, killed_pid, *_ in results), results
    assert cluster.log().count("terminated by signal 9: Killed") >= ROUNDS
    # … every event answered 202 is stored …
    assert [acked - kept for _round, _pid, acked, kept, _stored in results] == [0] * ROUNDS, results
    assert sum(acked for _round, _pid, acked, *_ in results) > 0
    # … and every stored event was applied exactly once
    [(receipts, pending, applications, ledger, points, tag_score)] = cluster.query(
        """
        SELECT (SELECT count(*) FROM automation_eventreceipt),
               (SELECT count(*) FROM automation_pendingevent),
               (SELECT count(*) FROM automation_ruleapplication),
               (SELECT count(*) FROM leads_scorechange),
               (SELECT coalesce(sum(score), 0) FROM contacts_contact),
               (SELECT coalesce(sum(ct.score), 0) FROM contacts_contacttag ct
                JOIN contacts_tag t ON t.id = ct.tag_id WHERE t.name = 'PURCHASE')
        """
    )
    assert pending == 0
    assert receipts == sum(stored for *_, stored in results)
    assert applications == ledger == tag_score == receipts
    assert points == POINTS * receipts
