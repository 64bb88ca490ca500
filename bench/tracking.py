"""The Segment-compatible intake under the ingestion workload.

``track_batch_events_per_s``: the events of ``ingest_events_per_s`` (``bench.ingest.make_batches``,
same mix, same contacts) sent as Segment ``/v1/batch`` messages, as analytics.js and the server
libraries send them: 70% by known people (``userId`` = their email), 30% by anonymous visitors
(``anonymousId``; a pool of visitors, each standing for one of the contacts), half of whom identify
along the way — an ``identify`` with their email after their last event, which merges their
anonymous profile into the contact. The rate counts the events only, first POST → pending 0.

``identity_merge_ms``: the latency of the identify that merges a visitor with 50 events (scored
by the rules) into an existing contact, through the web server; p95 over ``MERGE_VISITORS``.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

ANONYMOUS_SHARE = 0.3
IDENTIFYING_SHARE = 0.5
VISITORS_PER_1000_EVENTS = 40
MERGE_VISITORS = 30
MERGE_EVENTS = 50

_TRACK_NAMES = {"product_view": "Product Viewed", "add_to_cart": "Product Added", "purchase": "Order Completed",
                "email_open": "Email Opened"}


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def _message(event: dict) -> dict:
    """One event of the /api/v1/events workload as the Segment message that maps to it."""
    properties = dict(event["properties"])
    if event["type"] == "page_view":
        message: dict[str, Any] = {"type": "page", "properties": properties}
    else:
        if event["type"] == "purchase":
            properties["revenue"] = properties.pop("value")
        message = {"type": "track", "event": _TRACK_NAMES[event["type"]], "properties": properties}
    message["messageId"] = event["event_id"]
    message["timestamp"] = event["occurred_at"]
    return message


def segment_batches(event_batches: list[dict], run_id: str) -> list[dict]:
    """``/v1/batch`` bodies carrying the same events as ``event_batches`` (``{"events": [...]}``)."""
    rnd = random.Random(run_id)
    total = sum(len(batch["events"]) for batch in event_batches)
    visitors = max(1, total * VISITORS_PER_1000_EVENTS // 1000)
    # a visitor stands for one contact (the email of its first event): its identify names that email
    visitor_email: dict[int, str] = {}
    last_event_of: dict[int, tuple[int, int]] = {}
    plan: list[list[tuple[dict, int | None]]] = []
    for batch_number, batch in enumerate(event_batches):
        planned = []
        for position, event in enumerate(batch["events"]):
            visitor = None
            if rnd.random() < ANONYMOUS_SHARE:
                visitor = rnd.randrange(visitors)
                visitor_email.setdefault(visitor, event["email"])
                last_event_of[visitor] = (batch_number, position)
            planned.append((event, visitor))
        plan.append(planned)
    identifying = {visitor for visitor in visitor_email if rnd.random() < IDENTIFYING_SHARE}
    sent_at = datetime.now(UTC).isoformat()
    bodies = []
    for batch_number, planned in enumerate(plan):
        messages = []
        for position, (event, visitor) in enumerate(planned):
            message = _message(event)
            if visitor is None:
                message["userId"] = event["email"]
                messages.append(message)
                continue
            message["anonymousId"] = f"bench-{run_id}-visitor-{visitor}"
            messages.append(message)
            if visitor in identifying and last_event_of[visitor] == (batch_number, position):
                messages.append({"type": "identify", "messageId": f"{event['event_id']}-identify",
                                 "anonymousId": message["anonymousId"], "userId": f"bench-user-{visitor}",
                                 "traits": {"email": visitor_email[visitor]}, "timestamp": event["occurred_at"]})
        bodies.append({"batch": messages, "sentAt": sent_at})
    return bodies


def merge_visitors(emails: list[str], run_id: str) -> tuple[list[dict], list[dict]]:
    """For ``identity_merge_ms``: the ``/v1/batch`` bodies of ``MERGE_VISITORS`` anonymous visitors
    with ``MERGE_EVENTS`` events each (product views of a few categories and page views), and the
    identify that merges each into one of ``emails``."""
    rnd = random.Random(run_id)
    now = datetime.now(UTC)
    categories = ["sukienki", "kurtki", "buty", "torebki"]
    batches, identifies = [], []
    for visitor in range(MERGE_VISITORS):
        anonymous_id = f"bench-{run_id}-merge-{visitor}"
        messages = []
        for number in range(MERGE_EVENTS):
            at = (now - timedelta(seconds=MERGE_EVENTS - number)).isoformat()
            if number % 5 == 4:
                messages.append({"type": "page", "messageId": f"{anonymous_id}-{number}", "anonymousId": anonymous_id,
                                 "properties": {"url": f"/kategoria/{rnd.choice(categories)}"}, "timestamp": at})
            else:
                messages.append({"type": "track", "event": "Product Viewed", "messageId": f"{anonymous_id}-{number}",
                                 "anonymousId": anonymous_id, "timestamp": at,
                                 "properties": {"category": rnd.choice(categories), "price": 199}})
        batches.append({"batch": messages})
        identifies.append({"type": "identify", "messageId": f"{anonymous_id}-identify", "anonymousId": anonymous_id,
                           "traits": {"email": emails[visitor % len(emails)]}})
    return batches, identifies


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def summary_ms(latencies: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(p95(latencies), 1),
            "max_ms": round(max(latencies), 1), "samples": len(latencies),
            "all_ms": [round(value, 1) for value in latencies]}


def timed_post(connection: Any, path: str, body: dict, headers: dict) -> tuple[int, float]:
    """POST ``body`` on an open ``http.client`` connection; (status, milliseconds)."""
    data = json.dumps(body).encode()
    started = time.perf_counter()
    connection.request("POST", path, body=data, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def merge_latency(port: int, write_key: str, admin_key: str, emails: list[str], run_id: str) -> dict:
    """``identity_merge_ms``: ``MERGE_VISITORS`` visitors send ``MERGE_EVENTS`` events each; once
    the rules have scored them, each identifies as an existing contact, one at a time, through the
    web server. Measured per visitor: the identify's answer (``request_*``), and — the figure —
    identify sent → its anonymous profile merged into the contact by the worker."""
    from django.db import connection as db

    # local import: the bench harness (Django set up on the bench database) is loaded by bench.run first
    from bench.ingest import Client, _drain
    from contacts.models import anonymous_email

    client = Client(port, write_key)
    batches, identifies = merge_visitors(emails, run_id)
    for body in batches:
        status, answer = client.request("POST", "/v1/batch", body)
        if status != 200:
            raise RuntimeError(f"POST /v1/batch answered {status}: {answer}")
    _drain(client, admin_key, 300)
    http = client._conn()
    headers = {"Authorization": basic_auth(write_key), "Content-Type": "application/json"}
    merged_ms, request_ms = [], []
    for body in identifies:
        profile = anonymous_email("anonymous", body["anonymousId"])
        started = time.perf_counter()
        status, ms = timed_post(http, "/v1/identify", body, headers)
        if status != 200:
            raise RuntimeError(f"POST /v1/identify answered {status}")
        request_ms.append(ms)
        deadline = time.monotonic() + 60
        with db.cursor() as cursor:
            while True:
                cursor.execute("SELECT EXISTS (SELECT 1 FROM contacts_contact WHERE email = %s)", [profile])
                if not cursor.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the profile of {body['anonymousId']} was not merged within 60 s")
                time.sleep(0.005)
        merged_ms.append((time.perf_counter() - started) * 1000)
    figures = summary_ms(merged_ms)
    figures.update({f"request_{key}": value for key, value in summary_ms(request_ms).items() if key != "samples"})
    return figures
