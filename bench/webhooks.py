"""Webhook figures: ``webhook_fanout_per_s`` (20,000 ``segment.entered`` outbox messages → a 2xx
receiver on loopback, through the fan-out and the sender of a real worker) and
``hot_lead_alert_latency_s`` (an event that makes a lead hot → the ``lead.temperature_changed``
call at the receiver, p95 over 50 leads, while an ingestion run keeps web and worker busy).

The receiver is a threaded HTTP/1.1 server in this process that answers 204 and records what
arrived and when. Loopback is allowed for the run (``MH_WEBHOOK_ALLOWED_NETS=127.0.0.0/8``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "bench" / "results"
FANOUT_MESSAGES = 20_000
HOT_LEADS = 50
LOOPBACK = "127.0.0.0/8"


class Receiver:
    """A loopback receiver: 204 to every POST; ``arrivals`` holds (monotonic time, body)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                arrived = time.monotonic()
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                payload["_webhook_id"] = self.headers.get("webhook-id")
                with receiver.lock:
                    receiver.arrivals.append((arrived, payload))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self, kind: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, body in self.arrivals if kind is None or body.get("type") == kind)

    def stop(self) -> None:
        self.server.shutdown()


def _worker(database_name: str, queue: str, log_name: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": queue,
                "DJANGO_SETTINGS_MODULE": "marketing_hub.settings", "MH_WEBHOOK_ALLOWED_NETS": LOOPBACK})
    env.pop("CELERY_BROKER_URL", None)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / log_name, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "marketing_hub", "worker", "--pool=prefork", "--concurrency=2",
         "--loglevel=WARNING", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _webhook(url: str, events: list[str]) -> Any:
    from django.conf import settings

    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from webhooks.services import validate_webhook, webhook_save

    settings.MH_WEBHOOK_ALLOWED_NETS = [LOOPBACK]
    return webhook_save(None, validate_webhook({"url": url, "events": events, "description": "bench"}))


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
    # local import: bench.run.main() sets Django up (the bench database) before this runs
    from marketing_hub.celery import app

    app.send_task("webhooks.tasks.webhooks_pump_task", queue=queue)


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
    worker = _worker(database_name, queue, "webhooks-worker-fanout.log")
    try:
        time.sleep(5)  # the worker's start (imports, broker) is not the figure
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO core_outboxmessage (type, contact_id, segment_id, data) "
                "SELECT 'segment.entered', id, coalesce((SELECT min(id) FROM segments_segment), 0), '{}'::jsonb "
                "FROM contacts_contact ORDER BY id LIMIT %s",
                [messages],
            )
        started = time.monotonic()
        _enqueue_pump(queue)
        deadline = started + 600
        while receiver.count() < messages and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            time.sleep(0.05)
        received = receiver.count()
        last = max((arrived for arrived, _ in receiver.arrivals), default=time.monotonic())
        seconds = last - started
        ids = {body.get("_webhook_id") for _, body in receiver.arrivals}
        return {"name": "webhook_fanout_per_s", "value": round(received / seconds) if seconds > 0 else None,
                "unit": "messages/s", "messages": messages, "received": received, "distinct_webhook_ids": len(ids),
                "seconds": round(seconds, 2),
                "description": f"{messages:,} segment.entered outbox rows → fan-out → signed POSTs to a 2xx loopback "
                               "receiver, one worker (prefork, 2 processes)"}
    finally:
        _stop(worker)
        receiver.stop()
        _cleanup([webhook.pk])


def measure_hot_lead_latency(database_name: str, emails: list[str], ingest_key: str, admin_key: str,
                             background_events: int = 30_000, leads: int = HOT_LEADS) -> dict:
    """50 cold contacts each get an event whose rule adds enough points to make them hot, one every
    0.3 s, while the ingestion client posts ``background_events`` other events; latency = the
    event's POST returned → its lead.temperature_changed (to hot) reached the receiver."""
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
    env = dict(os.environ)
    env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": queue,
                "DJANGO_SETTINGS_MODULE": "marketing_hub.settings"})
    env.pop("CELERY_BROKER_URL", None)
    connections.close_all()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "marketing_hub.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=open(LOG_DIR / "webhooks-web-hot.log", "wb"), stderr=subprocess.STDOUT,
    )
    worker = _worker(database_name, queue, "webhooks-worker-hot.log")
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
        background = make_batches(emails, background_events, run_id)
        stop = threading.Event()

        def ingest() -> None:
            for batch in background:
                if stop.is_set():
                    return
                client.request("POST", "/api/v1/events", batch)

        feeder = threading.Thread(target=ingest)
        feeder.start()
        sent: dict[str, float] = {}
        hot_client = Client(port, ingest_key)
        for number, email in enumerate(cold):
            event = {"event_id": f"bench-hot-{run_id}-{number}", "email": email, "type": "custom",
                     "occurred_at": time_now().isoformat(), "properties": {"name": "bench-make-hot"}}
            status, body = hot_client.request("POST", "/api/v1/events", {"events": [event]})
            if status != 202:
                raise RuntimeError(f"POST /api/v1/events answered {status}: {body}")
            sent[email] = time.monotonic()
            time.sleep(0.3)
        deadline = time.monotonic() + 300
        arrived: dict[str, float] = {}
        while time.monotonic() < deadline and len(arrived) < len(sent):
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
        latencies = sorted(arrived[email] - sent[email] for email in arrived)
        if not latencies:
            raise RuntimeError("no lead.temperature_changed call arrived")
        p95 = latencies[min(len(latencies) - 1, int(round(0.95 * len(latencies))) - 1)]
        return {"name": "hot_lead_alert_latency_s", "value": round(p95, 2), "unit": "s (p95)", "leads": len(sent),
                "arrived": len(arrived), "median_s": round(statistics.median(latencies), 2),
                "max_s": round(latencies[-1], 2), "ingestion_running_throughout": ingest_running,
                "background_events": background_events,
                "description": "event making a cold lead hot (POST returned) → lead.temperature_changed at a loopback "
                               "receiver, while an ingestion client posts batches of 1,000 events"}
    finally:
        _stop(web, worker, beat)
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
