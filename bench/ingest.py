"""End-to-end ingestion: a real web server (gunicorn) and the Celery workers of `make run` (the
worker, and webhook delivery's own worker on its queue) on the bench database; a client POSTs
batches of 1,000 events from a few threads and waits until ``GET /api/v1/events/status`` reads 0.
events/s = events / (first POST → pending 0).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from marketing_hub.run import WEBHOOK_WORKER_NICE, web_command

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "bench" / "results"
# Client threads posting batches at once (closed loop: each posts its next batch when the last is answered).
CLIENT_THREADS = 3


@dataclass
class IngestResult:
    broker: str
    events: int
    seconds: float
    post_seconds: float
    events_per_s: float
    errors: int
    settled_seconds: float | None = None
    webhooks_settled_seconds: float | None = None
    cpu_seconds: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return {
            "broker": self.broker,
            "events": self.events,
            "seconds": round(self.seconds, 2),
            "post_seconds": round(self.post_seconds, 2),
            "events_per_s": round(self.events_per_s),
            "http_errors": self.errors,
            # first POST → the segments' dirty queue empty as well (memberships follow events/status)
            "memberships_settled_seconds": None if self.settled_seconds is None else round(self.settled_seconds, 2),
            # first POST → the outbox fanned out and no webhook call waiting (delivery is not left
            # behind for the next run to pay for)
            "webhooks_settled_seconds": (None if self.webhooks_settled_seconds is None
                                         else round(self.webhooks_settled_seconds, 2)),
            # first POST → pending 0: CPU seconds of the web server, the worker, webhook delivery
            # and the database's backends (where a variant's extra time goes)
            "cpu_seconds": self.cpu_seconds,
        }


def _process_cpu() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command line, CPU seconds used so far), from /proc (Linux; empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[int, tuple[int, str, float]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[1]), command, (int(fields[11]) + int(fields[12])) / ticks)
    return out


class CpuMeter:
    """CPU seconds by role between two readings: the process trees of ``roles`` (name → root pid)
    and, as ``database``, the PostgreSQL backends serving ``database_name`` when the server runs
    on this machine. Backends that ended between the readings are not counted (the app's
    connections are persistent, so few do)."""

    def __init__(self, roles: dict[str, int], database_name: str) -> None:
        self.roles = roles
        self.database_name = database_name
        self.start = self._read()

    def _read(self) -> dict[int, tuple[str, float]]:
        processes = _process_cpu()
        role_of: dict[int, str] = {}
        for role, root in self.roles.items():
            tree = {root}
            for _ in range(3):  # gunicorn and Celery prefork: master → workers
                tree |= {pid for pid, (parent, _, _) in processes.items() if parent in tree}
            role_of.update(dict.fromkeys(tree, role))
        marker = f" {self.database_name} "
        for pid, (_, command, _) in processes.items():
            if pid not in role_of and command.startswith("postgres:") and marker in f"{command} ":
                role_of[pid] = "database"
        return {pid: (role, processes[pid][2]) for pid, role in role_of.items()}

    def used(self) -> dict[str, float]:
        now = self._read()
        totals: dict[str, float] = dict.fromkeys([*self.roles, "database"], 0.0)
        for pid, (role, seconds) in now.items():
            before = self.start.get(pid)
            totals[role] += seconds - (before[1] if before is not None and before[0] == role else 0.0)
        return {role: round(value, 1) for role, value in totals.items()}


def webhook_worker(env: dict[str, str], log: Any) -> subprocess.Popen:
    """Webhook delivery's worker as `make run` starts it: one process on ``env["MH_WEBHOOK_QUEUE"]``,
    at the same lower CPU priority (``marketing_hub.run``)."""
    queue = env["MH_WEBHOOK_QUEUE"]
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "marketing_hub", "worker", "--pool=prefork", "--concurrency=1",
         "--loglevel=WARNING", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(WEBHOOK_WORKER_NICE),
    )


def worker_command(queue: str) -> list[str]:
    """The rules engine's worker as this part runs it: prefork, two processes (two engine
    partitions), on ``queue`` under a node name of its own (other workers may run on this machine)."""
    return [sys.executable, "-m", "celery", "-A", "marketing_hub", "worker", "--pool=prefork", "--concurrency=2",
            "--loglevel=WARNING", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]


def processes_stop(*processes: subprocess.Popen) -> None:
    """Stop the servers and workers a part started: SIGTERM to all, then up to 20 s each to exit
    before SIGKILL."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_url() -> str | None:
    """The machine's Redis, when it answers."""
    url = os.environ.get("MH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return conn

    def request(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
        key = key or self.key
        # the tracking intake (/v1/…) takes a source's write key as the HTTP Basic user, as Segment's libraries send it
        authorization = ("Basic " + base64.b64encode(f"{key}:".encode()).decode()) if path.startswith("/v1/") else f"Bearer {key}"
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                if response.status == 429:
                    time.sleep(float(response.getheader("Retry-After") or 1))
                    continue
                return response.status, (json.loads(raw) if raw else {})
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.5)
        return 429, {}


def make_batches(emails: list[str], total: int, run_id: str, batch: int = 1000) -> list[dict]:
    """Deterministic events for existing contacts: views, page views (some /diamenty), cart,
    purchases with values, email opens — the mix the rules react to."""
    rnd = random.Random(total)
    categories = ["sukienki", "kurtki", "buty", "torebki", "biżuteria srebrna", "diamenty", "bluzki", "swetry"]
    now = datetime.now(UTC)
    batches, items = [], []
    for i in range(total):
        kind = rnd.random()
        category = categories[min(len(categories) - 1, int(rnd.expovariate(0.5)))]
        if kind < 0.35:
            event = {"type": "product_view", "properties": {"category": category, "product_id": f"P{rnd.randint(1000, 16999)}",
                                                            "price": round(rnd.uniform(79, 999), 2), "currency": "PLN"}}
        elif kind < 0.65:
            url = "/diamenty" if rnd.random() < 0.05 else f"/kategoria/{category}"
            event = {"type": "page_view", "properties": {"url": url}}
        elif kind < 0.75:
            event = {"type": "add_to_cart", "properties": {"category": category, "price": round(rnd.uniform(79, 999), 2)}}
        elif kind < 0.80:
            event = {"type": "purchase", "properties": {"value": round(rnd.uniform(99, 2500), 2), "currency": "PLN",
                                                        "category": category}}
        else:
            event = {"type": "email_open", "properties": {"campaign": "Newsletter tygodniowy"}}
        event["event_id"] = f"bench-{run_id}-{i}"
        event["email"] = emails[rnd.randrange(len(emails))]
        event["occurred_at"] = (now - timedelta(seconds=rnd.randint(0, 3600))).isoformat()
        items.append(event)
        if len(items) == batch:
            batches.append({"events": items})
            items = []
    if items:
        batches.append({"events": items})
    return batches


def _wait_http(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the web server did not answer /healthz in time")


def _drain(client: Client, admin_key: str, timeout: float, worker: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        if worker is not None and worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
        status, body = client.request("GET", "/api/v1/events/status", key=admin_key)
        if status == 200 and body.get("pending") == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"events/status did not reach 0 within {timeout:.0f}s (last: {body})")


def _dirty_queue_length() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM automation_segmentdirtycontact")
        return cursor.fetchone()[0]


def _webhooks_idle() -> bool:
    """Nothing waits to be fanned out, and no call to an active webhook waits to be sent."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM core_outboxmessage WHERE dispatched_at IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM webhooks_delivery d JOIN webhooks_webhook w ON w.id = d.webhook_id "
            "                WHERE d.status = 'pending' AND w.active)"
        )
        return cursor.fetchone()[0]


def _memberships_idle() -> bool:
    return _dirty_queue_length() == 0


def _settle(timeout: float, worker: subprocess.Popen, idle: Callable[[], bool] = _memberships_idle) -> float | None:
    """Wait until ``idle()`` (by default: the worker has drained the segments' dirty queue);
    seconds waited, None on timeout."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
        if idle():
            return time.perf_counter() - started
        time.sleep(0.1)
    return None


@dataclass
class Intake:
    """Where the events go: ``/api/v1/events`` (``make_batches``), or another endpoint with bodies
    carrying the same events (``make(emails, total, run_id)``). ``after(port)``, when given, runs
    once the runs are done, against the same servers; its result lands in ``after_result``."""

    path: str = "/api/v1/events"
    make: Callable[[list[str], int, str], list[dict]] = make_batches
    after: Callable[[int], dict] | None = None
    after_result: dict | None = None
    key: str | None = None  # posted with this key instead of run_ingest's ingest_key


def run_ingest(
    *, broker: str, broker_url: str | None, database_name: str, ingest_key: str, admin_key: str,
    emails: list[str], total: int, runs: int = 1, threads: int = CLIENT_THREADS, timeout: float = 900,
    intake: Intake | None = None, before_run: Callable[[int], str] | None = None,
    intakes: dict[str, Intake] | None = None,
) -> list[IngestResult]:
    """Start web + worker for one broker, warm up with one batch, then measure ``total`` events
    ``runs`` times, each from a settled system (new event ids each run). ``before_run(number)``
    prepares each run and names its variant (``IngestResult.broker``), so variants can alternate
    on the same servers; a variant named in ``intakes`` posts through that intake (the others
    through ``intake``)."""
    intake = intake or Intake()
    intakes = intakes or {}
    port = free_port()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": queue,
                "MH_WEBHOOK_QUEUE": f"{queue}-webhooks", "DJANGO_SETTINGS_MODULE": "marketing_hub.settings"})
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    else:
        env.pop("CELERY_BROKER_URL", None)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    web_log = open(LOG_DIR / f"ingest-web-{broker}.log", "wb")
    worker_log = open(LOG_DIR / f"ingest-worker-{broker}.log", "wb")
    webhooks_log = open(LOG_DIR / f"ingest-webhooks-{broker}.log", "wb")
    # the web server exactly as `make run` starts it (gunicorn, 2 × cores + 1 workers unless WEB_CONCURRENCY)
    web = subprocess.Popen(web_command(str(port)), cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT)
    worker = subprocess.Popen(worker_command(queue), cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT)
    webhooks = webhook_worker(env, webhooks_log)
    try:
        _wait_http(port, web)
        client = Client(port, ingest_key)
        run_id = uuid.uuid4().hex[:10]
        # warm-up: imports, connections, partitions, the worker's first task (through every intake)
        for warm_intake in [intake, *intakes.values()]:
            warm = warm_intake.make(emails, 1000, run_id + "w")
            status, body = client.request("POST", warm_intake.path, warm[0], key=warm_intake.key)
            if status not in (200, 202):
                raise RuntimeError(f"POST {warm_intake.path} answered {status}: {body}")
        # a worker that cannot reach its broker never drains: give up early, the log says why
        _drain(client, admin_key, 90, worker)
        # Start from a quiet system: memberships queued by earlier runs (whose workers were stopped
        # right after events/status read 0) are re-evaluated by this worker first, not during the
        # measurement.
        if _settle(600, worker) is None:
            raise RuntimeError("the segments' dirty queue did not drain within 600s before the run")
        if _settle(120, webhooks, _webhooks_idle) is None:
            raise RuntimeError("webhook delivery did not catch up within 120s before the run")

        results = []
        for number in range(runs):
            variant = before_run(number) if before_run is not None else broker
            run_intake = intakes.get(variant, intake)
            meter = CpuMeter({"web": web.pid, "worker": worker.pid, "webhooks": webhooks.pid}, database_name)
            results.append(_measure_once(client, admin_key, worker, webhooks,
                                         run_intake.make(emails, total, f"{run_id}-{number}"), broker=variant,
                                         total=total, threads=threads, timeout=timeout, path=run_intake.path,
                                         key=run_intake.key, meter=meter))
        for each in [intake, *intakes.values()]:
            if each.after is not None:
                each.after_result = each.after(port)
        return results
    finally:
        processes_stop(web, worker, webhooks)
        web_log.close()
        worker_log.close()
        webhooks_log.close()


def _measure_once(client: Client, admin_key: str, worker: subprocess.Popen, webhooks: subprocess.Popen,
                  batches: list[dict], *, broker: str, total: int, threads: int, timeout: float,
                  path: str = "/api/v1/events", key: str | None = None, meter: CpuMeter | None = None) -> IngestResult:
    """POST ``batches`` from ``threads`` clients; time until events/status reads 0, then until the
    segments' dirty queue is empty as well, then until webhook delivery has caught up (which also
    leaves the next run a settled system)."""
    errors = 0
    lock = threading.Lock()
    cursor = iter(range(len(batches)))

    def post_loop() -> None:
        nonlocal errors
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            code, _ = client.request("POST", path, batches[index], key=key)
            if code not in (200, 202):
                with lock:
                    errors += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=post_loop) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    posted = time.perf_counter() - started
    _drain(client, admin_key, timeout, worker)
    elapsed = time.perf_counter() - started
    cpu = meter.used() if meter is not None else None
    settle = _settle(timeout, worker)
    after = time.perf_counter() - started
    delivered = _settle(min(timeout, 120), webhooks, _webhooks_idle)
    return IngestResult(broker=broker, events=total, seconds=elapsed, post_seconds=posted,
                        events_per_s=total / elapsed, errors=errors,
                        settled_seconds=None if settle is None else elapsed + settle,
                        webhooks_settled_seconds=None if delivered is None else after + delivered, cpu_seconds=cpu)
