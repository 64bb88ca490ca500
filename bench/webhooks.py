"""Webhook figures: ``webhook_fanout_per_s`` (20,000 ``segment.entered`` outbox messages → a 2xx
receiver on loopback, through the fan-out and the sender of a real worker) and
``hot_lead_alert_latency_s`` (an event that makes a lead hot → the ``lead.temperature_changed``
call at the receiver, p95 over 50 leads, while an ingestion client posts events at a steady
pace the rules engine keeps up with; the result carries the engine's queue length as sampled
during the run, and the latency split into its legs).

The receiver is a small asyncio HTTP/1.1 server in this process that answers 204 and records what
arrived and when (wall clock); ``CountingReceiver`` only counts, in a process of its own. Loopback is allowed for the run (``MH_WEBHOOK_ALLOWED_NETS=127.0.0.0/8``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.ingest import processes_stop

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "bench" / "results"
FANOUT_MESSAGES = 20_000
HOT_LEADS = 50
LOOPBACK = "127.0.0.0/8"
BENCH_WEBHOOK = "bench"  # the description of the webhooks the bench makes


class _Http204Protocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, just enough for the sender: requests with Content-Length, 204 back;
    ``received(head, body)`` sees each request."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, length = self.buffer[:end], 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            self.received(head, body)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def received(self, head: bytes, body: bytes) -> None:
        raise NotImplementedError


class _ReceiverProtocol(_Http204Protocol):
    """Records every call's arrival time and body (with its ``webhook-id`` header)."""

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self.receiver = receiver

    def received(self, head: bytes, body: bytes) -> None:
        arrived = time.time()
        webhook_id = None
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "webhook-id":
                webhook_id = value.strip()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        payload["_webhook_id"] = webhook_id
        with self.receiver.lock:
            self.receiver.arrivals.append((arrived, payload))
            self.receiver.received += 1


class Receiver:
    """A loopback receiver: 204 to every POST; ``arrivals`` holds (wall-clock time, body): wall
    clock, so arrivals compare with the database's timestamps of the same messages.

    A minimal asyncio HTTP/1.1 server on its own thread rather than http.server: it shares the
    two cores with the system it measures, and costs ~0.17 ms of CPU per call against a threaded
    http.server's ~0.30 ms (measured side by side with the same 16-thread client). Its listen
    backlog is 128 (http.server's default of 5 had the kernel reset some of the sender's new
    connections, which were then retried 5 s later)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        self.received = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _ReceiverProtocol(self), "127.0.0.1", 0, backlog=128))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count(self, kind: str | None = None) -> int:
        with self.lock:
            if kind is None:
                return self.received
            return sum(1 for _, body in self.arrivals if body.get("type") == kind)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _CountingProtocol(_Http204Protocol):
    """Counts the calls only (no body parsed)."""

    def __init__(self, counter: Any) -> None:
        super().__init__()
        self.counter = counter

    def received(self, head: bytes, body: bytes) -> None:
        with self.counter.get_lock():
            self.counter.value += 1


def _counting_server(counter: Any, port: Any, ready: Any) -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(lambda: _CountingProtocol(counter), "127.0.0.1", 0, backlog=128))
    port.value = server.sockets[0].getsockname()[1]
    ready.set()
    loop.run_forever()


class CountingReceiver:
    """A loopback receiver in a process of its own that answers 204 and only counts the calls: for
    figures about the sender's side (ingestion with webhooks), where a receiver sharing the bench
    client's interpreter (and its lock) would slow the client down, which no real receiver does."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        port = context.Value("i", 0)
        ready = context.Event()
        self.process = context.Process(target=_counting_server, args=(self.counter, port, ready), daemon=True)
        self.process.start()
        if not ready.wait(30):
            self.process.kill()
            raise RuntimeError("the counting receiver did not start")
        self.port = port.value

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count(self) -> int:
        return self.counter.value

    def stop(self) -> None:
        self.process.kill()
        self.process.join(10)


def _worker_env(database_name: str, queue: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": queue,
                "MH_WEBHOOK_QUEUE": f"{queue}-webhooks", "DJANGO_SETTINGS_MODULE": "marketing_hub.settings",
                "MH_WEBHOOK_ALLOWED_NETS": LOOPBACK})
    env.pop("CELERY_BROKER_URL", None)
    return env


def _workers(database_name: str, queue: str, log_name: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The workers of `make run`: the worker (2 processes) and webhook delivery's own worker."""
    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from bench.ingest import webhook_worker, worker_command

    env = _worker_env(database_name, queue)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / log_name, "wb")
    worker = subprocess.Popen(worker_command(queue), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return worker, webhook_worker(env, open(LOG_DIR / log_name.replace("worker", "webhooks"), "wb"))


def _webhook(url: str, events: list[str]) -> Any:
    from django.conf import settings

    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from webhooks.models import Webhook
    from webhooks.services import validate_webhook, webhook_save

    settings.MH_WEBHOOK_ALLOWED_NETS = [LOOPBACK]
    # An interrupted bench leaves its webhooks behind, pointing at a receiver that is gone: their
    # retries would keep delivery from ever settling, so they go before a new one is made.
    Webhook.objects.filter(description=BENCH_WEBHOOK).exclude(url=url).delete()
    return webhook_save(None, validate_webhook({"url": url, "events": events, "description": BENCH_WEBHOOK}))


def _cleanup(webhook_ids: list[int]) -> None:
    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from core.outbox import OutboxMessage
    from webhooks.models import Webhook

    Webhook.objects.filter(pk__in=webhook_ids).delete()
    OutboxMessage.objects.filter(dispatched_at__isnull=True).update(dispatched_at=time_now())


def time_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _enqueue_pump(queue: str) -> None:
    """Kick the pump on webhook delivery's queue (of the workers started for ``queue``)."""
    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from marketing_hub.celery import app

    app.send_task("webhooks.tasks.webhooks_pump_task", queue=f"{queue}-webhooks")


def measure_fanout(database_name: str, messages: int = FANOUT_MESSAGES) -> dict:
    """Outbox → receiver: ``messages`` segment.entered rows written set-based (as a segment
    refresh writes them), then one real worker fans out and sends; messages/s from the kick to
    the last call received."""
    from django.db import connection, connections

    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from core.outbox import OutboxMessage

    # what earlier changes left in the outbox is not part of this figure
    OutboxMessage.objects.filter(dispatched_at__isnull=True).update(dispatched_at=time_now())
    receiver = Receiver()
    webhook = _webhook(receiver.url, ["segment.entered"])
    queue = f"bench-wh-{uuid.uuid4().hex[:8]}"
    connections.close_all()
    worker, webhooks = _workers(database_name, queue, "webhooks-worker-fanout.log")
    try:
        time.sleep(5)  # the worker's start (imports, broker) is not the figure
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO core_outboxmessage (type, contact_id, segment_id, data) "
                "SELECT 'segment.entered', id, coalesce((SELECT min(id) FROM segments_segment), 0), '{}'::jsonb "
                "FROM contacts_contact ORDER BY id LIMIT %s",
                [messages],
            )
        started = time.time()
        _enqueue_pump(queue)
        deadline = started + 600
        while receiver.count() < messages and time.time() < deadline:
            if webhooks.poll() is not None:
                raise RuntimeError(f"the webhooks worker exited with {webhooks.returncode}")
            time.sleep(0.05)
        received = receiver.count()
        last = max((arrived for arrived, _ in receiver.arrivals), default=time.time())
        seconds = last - started
        ids = {body.get("_webhook_id") for _, body in receiver.arrivals}
        # the last round's outcomes are written after its calls arrived: give them a moment
        settle = time.time() + 30
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FILTER (WHERE attempts > 1), count(*) FILTER (WHERE status <> 'succeeded') "
                               "FROM webhooks_delivery WHERE webhook_id = %s", [webhook.pk])
                retried, unfinished = cursor.fetchone()
            if not unfinished or time.time() > settle:
                break
            time.sleep(0.2)
        return {"name": "webhook_fanout_per_s", "value": round(received / seconds) if seconds > 0 else None,
                "unit": "messages/s", "messages": messages, "received": received, "distinct_webhook_ids": len(ids),
                "deliveries_retried": retried, "deliveries_not_succeeded": unfinished,
                "seconds": round(seconds, 2), "load_average": list(os.getloadavg()),
                "description": f"{messages:,} segment.entered outbox rows → fan-out → signed POSTs to a 2xx loopback "
                               "receiver, webhook delivery's own worker (one process)"}
    finally:
        processes_stop(worker, webhooks)
        receiver.stop()
        _cleanup([webhook.pk])


# The background ingestion's pace: steady batches of 1,000 at this rate, a load the rules engine
# keeps up with on this box (its queue, sampled from /api/v1/events/status, is in the result), so
# the figure is "while ingestion runs" and not "behind a backlog of tens of seconds".
# MH_BENCH_HOT_BACKGROUND_PER_S overrides it; 0 posts as fast as the server takes them.
BACKGROUND_EVENTS_PER_S = float(os.environ.get("MH_BENCH_HOT_BACKGROUND_PER_S", "500"))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))]


def _legs(webhook_id: int, sent: dict[str, float], arrived: dict[str, float]) -> dict:
    """Where the time went, per lead (wall clock): POST returned → the rules engine's transaction
    that made it hot (its outbox row's created_at is that transaction's start) → the fan-out wrote
    the delivery → the sender claimed it → the receiver had it. Medians and p95 of each leg."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.email, min(o.created_at), min(d.created_at), min(d.last_attempt_at)
            FROM webhooks_delivery d
            JOIN contacts_contact c ON c.id = d.contact_id
            JOIN core_outboxmessage o ON 'msg_' || o.id = d.message_id
            WHERE d.webhook_id = %s AND d.type = 'lead.temperature_changed' AND c.email = ANY(%s)
              AND d.body::jsonb #>> '{data,to}' = 'hot'
            GROUP BY c.email
            """,
            [webhook_id, list(arrived)],
        )
        rows = cursor.fetchall()
    legs: dict[str, list[float]] = {"accepted_to_engine": [], "engine_to_fanout": [], "fanout_to_claim": [],
                                    "claim_to_receiver": []}
    for email, engine_at, fanned_at, claimed_at in rows:
        points = [sent[email], engine_at.timestamp(), fanned_at.timestamp(), claimed_at.timestamp(), arrived[email]]
        for name, before, after in zip(legs, points, points[1:], strict=False):
            legs[name].append(after - before)
    return {name: {"median_s": round(statistics.median(values), 3), "p95_s": round(_percentile(values, 0.95), 3)}
            for name, values in legs.items() if values}


def measure_hot_lead_latency(database_name: str, emails: list[str], ingest_key: str, admin_key: str,
                             background_per_s: float = BACKGROUND_EVENTS_PER_S, leads: int = HOT_LEADS) -> dict:
    """50 cold contacts each get an event whose rule adds enough points to make them hot, one every
    0.3 s, while an ingestion client posts other events at ``background_per_s`` (batches of 1,000,
    from before the first hot event until the last call arrived); latency = the event's POST
    returned → its lead.temperature_changed (to hot) reached the receiver."""
    from django.db import connection, connections

    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from automation.models import Rule
    from automation.rules import rule_save, validate_rule
    from bench.ingest import Client, _drain, _wait_http, free_port, make_batches
    from leads.models import TemperatureSettings

    thresholds = TemperatureSettings.current()
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM contacts_contact WHERE score >= 0 AND score < %s ORDER BY md5(id::text) LIMIT %s",
                       [thresholds.warm, leads])
        cold = [row[0] for row in cursor.fetchall()]
    rule = rule_save(Rule(), validate_rule({
        "name": "bench: make hot", "trigger": {"event_type": "custom", "where": [
            {"property": "name", "op": "eq", "value": "bench-make-hot"}]},
        "actions": [{"type": "add_score", "points": thresholds.hot}],
    }))
    receiver = Receiver()
    webhook = _webhook(receiver.url, ["lead.temperature_changed"])
    queue = f"bench-hot-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = _worker_env(database_name, queue)
    connections.close_all()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "marketing_hub.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=open(LOG_DIR / "webhooks-web-hot.log", "wb"), stderr=subprocess.STDOUT,
    )
    worker, webhooks = _workers(database_name, queue, "webhooks-worker-hot.log")
    # beat is part of the system (its 2 s sweep is the pump's safety net)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "marketing_hub", "beat", "--loglevel=WARNING",
         "-s", str(LOG_DIR / f"celerybeat-{queue}"), "--pidfile="],
        cwd=ROOT, env=env, stdout=open(LOG_DIR / "webhooks-beat-hot.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(port, web)
        client = Client(port, ingest_key)
        run_id = uuid.uuid4().hex[:8]
        warm = make_batches(emails, 1000, run_id + "w")
        client.request("POST", "/api/v1/events", warm[0])
        _drain(client, admin_key, 120, worker)
        background = make_batches(emails, 60_000, run_id)
        stop = threading.Event()
        posted = [0]

        def ingest() -> None:
            began = time.monotonic()
            for number, batch in enumerate(background):
                if stop.is_set():
                    return
                pause = (began + number * len(batch["events"]) / background_per_s - time.monotonic()
                         if background_per_s > 0 else 0)
                if pause > 0:
                    stop.wait(pause)
                client.request("POST", "/api/v1/events", batch)
                posted[0] += len(batch["events"])

        queue_lengths: list[int] = []

        def sample_queue() -> None:
            sampler = Client(port, admin_key)
            while not stop.wait(0.5):
                status, body = sampler.request("GET", "/api/v1/events/status")
                if status == 200:
                    queue_lengths.append(int(body.get("pending", 0)))

        feeder = threading.Thread(target=ingest)
        sampler = threading.Thread(target=sample_queue)
        feeder.start()
        sampler.start()
        time.sleep(5)  # the hot events arrive into a running ingestion, not an idle system
        sent: dict[str, float] = {}
        hot_client = Client(port, ingest_key)
        for number, email in enumerate(cold):
            event = {"event_id": f"bench-hot-{run_id}-{number}", "email": email, "type": "custom",
                     "occurred_at": time_now().isoformat(), "properties": {"name": "bench-make-hot"}}
            status, body = hot_client.request("POST", "/api/v1/events", {"events": [event]})
            if status != 202:
                raise RuntimeError(f"POST /api/v1/events answered {status}: {body}")
            sent[email] = time.time()
            time.sleep(0.3)
        deadline = time.time() + 300
        arrived: dict[str, float] = {}
        while time.time() < deadline and len(arrived) < len(sent):
            with receiver.lock:
                for at, body in receiver.arrivals:
                    data = body.get("data") or {}
                    email = (data.get("contact") or {}).get("email")
                    if data.get("to") == "hot" and email in sent and email not in arrived:
                        arrived[email] = at
            time.sleep(0.1)
        ingest_running = feeder.is_alive()
        stop.set()
        feeder.join()
        sampler.join()
        latencies = sorted(arrived[email] - sent[email] for email in arrived)
        if not latencies:
            raise RuntimeError("no lead.temperature_changed call arrived")
        return {"name": "hot_lead_alert_latency_s", "value": round(_percentile(latencies, 0.95), 2), "unit": "s (p95)",
                "leads": len(sent), "arrived": len(arrived), "median_s": round(statistics.median(latencies), 2),
                "max_s": round(latencies[-1], 2), "ingestion_running_throughout": ingest_running,
                "background_events_per_s": background_per_s, "background_events_posted": posted[0],
                "engine_queue_pending": {"median": statistics.median(queue_lengths) if queue_lengths else None,
                                         "max": max(queue_lengths, default=None), "samples": len(queue_lengths)},
                "legs": _legs(webhook.pk, sent, arrived),
                "load_average": list(os.getloadavg()),
                "description": "event making a cold lead hot (POST returned) → lead.temperature_changed at a loopback "
                               "receiver, while an ingestion client posts batches of 1,000 events at "
                               + (f"{background_per_s:,.0f} events/s" if background_per_s > 0 else "full speed")}
    finally:
        processes_stop(web, worker, webhooks, beat)
        receiver.stop()
        Rule.objects.filter(pk=rule.pk).update(active=False)
        _cleanup([webhook.pk])


def measure(database_name: str, emails: list[str], ingest_key: str, admin_key: str) -> list[dict]:
    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from bench.run import missing, say

    out = []
    for name, run in (("webhook_fanout_per_s", lambda: measure_fanout(database_name)),
                      ("hot_lead_alert_latency_s",
                       lambda: measure_hot_lead_latency(database_name, emails, ingest_key, admin_key))):
        try:
            say(f"{name} …")
            result = run()
            say(f"{name}: {result['value']} {result['unit']}")
            out.append(result)
        except Exception as exc:  # a figure that cannot be measured is null with a reason
            import traceback

            traceback.print_exc()
            out.append(missing(name, f"{type(exc).__name__}: {exc}"))
    return out
