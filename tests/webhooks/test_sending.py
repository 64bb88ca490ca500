"""The sender under load: calls to one endpoint run concurrently but never more than
``CONCURRENCY`` at once, a 410 stops the calls to that endpoint within the round, and claimed
deliveries a round did not start go back to the queue untouched."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import ContactFactory
from tests.webhooks.conftest import make_webhook, pump_until
from webhooks.delivery import CONCURRENCY, Round
from webhooks.fanout import outbox_fanout
from webhooks.models import Delivery
from webhooks.tasks import webhooks_pump

pytestmark = pytest.mark.django_db


class SlowReceiver:
    """A threaded loopback receiver that holds every call ``delay`` seconds, answers ``status``
    and remembers the most calls it had in flight at once."""

    def __init__(self, *, delay: float, status: int = 204) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.calls += 1
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(delay)
                with receiver.lock:
                    receiver.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def slow_receiver() -> Iterator[type[SlowReceiver]]:
    started: list[SlowReceiver] = []

    def start(**options) -> SlowReceiver:
        receiver = SlowReceiver(**options)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


def _messages(count: int) -> None:
    contact = ContactFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_outboxmessage (type, contact_id, data) "
            "SELECT 'consent.changed', %s, jsonb_build_object('channel', 'c' || n, 'granted', true, 'source', 'test') "
            "FROM generate_series(1, %s) n",
            [contact.pk, count],
        )


def test_calls_to_one_endpoint_run_concurrently_and_never_beyond_the_bound(slow_receiver):
    # given a receiver that takes 50 ms per call, and five times the bound's worth of messages
    receiver = slow_receiver(delay=0.05)
    make_webhook(receiver.url, events=["consent.changed"])
    messages = CONCURRENCY * 5
    _messages(messages)
    # when the pump runs
    pump_until(lambda: Delivery.objects.filter(status="succeeded").count() == messages)
    # then calls overlapped, but never more than the bound were in flight at once
    assert 1 < receiver.most_in_flight <= CONCURRENCY
    assert receiver.calls == messages


def test_a_410_stops_the_calls_to_that_endpoint_within_the_round(slow_receiver, short_retries):
    # given a receiver that answers 410 Gone, and many messages for it
    receiver = slow_receiver(delay=0.01, status=410)
    webhook = make_webhook(receiver.url, events=["consent.changed"])
    messages = CONCURRENCY * 10
    _messages(messages)
    # when the pump runs
    webhooks_pump(time_budget=10)
    # then only the calls already under way when the first 410 came were made, and nothing waits
    webhook.refresh_from_db()
    assert webhook.active is False
    assert receiver.calls <= CONCURRENCY
    assert Delivery.objects.filter(status="failed").count() == messages


def test_deliveries_a_round_did_not_start_go_back_untouched(slow_receiver, settings):
    # given a receiver that takes 0.5 s per call, four times the bound's worth of deliveries due,
    # and a lease so short that a round may start calls only in its first 0.3 s
    receiver = slow_receiver(delay=0.5)
    make_webhook(receiver.url, events=["consent.changed"])
    messages = CONCURRENCY * 4
    _messages(messages)
    outbox_fanout()
    settings.MH_WEBHOOK_LEASE_SECONDS = 0.9
    # when one round claims them all and sends
    batch = Round(timezone.now())
    assert len(batch.claimed) == messages
    batch.start()
    batch.wait()
    sent = batch.record()
    # then what it sent is recorded, and the rest is pending again, due now, with no attempt counted
    assert 0 < sent < messages
    assert receiver.calls == sent
    assert Delivery.objects.filter(status="succeeded", attempts=1).count() == sent
    unsent = Delivery.objects.filter(status="pending")
    assert unsent.count() == messages - sent
    assert unsent.filter(attempts=0, next_attempt_at__lte=timezone.now()).count() == messages - sent
