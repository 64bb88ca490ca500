"""Concurrent users: ``concurrent_users_p95_ms``, ``…_ingesting`` and ``…_saturated`` (no think time).

The web server starts exactly as ``make run`` starts it (``marketing_hub.run``: gunicorn with
2 × cores + 1 workers, the same timeouts and access log, plus the Celery worker and beat), with
``DEBUG=0``, on a free loopback port and the bench database. 20 simulated users log in through the
login form (each keeps its own session cookie and one keep-alive connection) and loop over the
pages staff use all day: the contact list (filters, sorts, pages), contact cards of varied
contacts, hot leads and the dashboard. Like a browser, each page is followed by the fragments it
loads itself (``hx-trigger="load"``: the card's panels, the notification bell) with
``HX-Request``; then the user reads it for a think time drawn uniformly from ``THINK_TIME_S``
before the next page. Every request's status and latency is recorded.

Three phases of ``DURATION_S`` each: quiet, then while a background client posts batches of 1,000
events to ``/api/v1/events`` at a steady rate and the worker processes them, then quiet again with
no think time (the server's capacity, not a target). Bounded in time and
count; loopback only; everything it started is stopped at the end.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import Client, _drain, _settle, _wait_http, free_port, make_batches, processes_stop

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "bench" / "results"
USERS = 20
DURATION_S = 30.0
WARMUP_S = 5.0
SINGLE_USER_S = 10.0  # one user alone first: the views' own times, for comparison
# Seconds a person spends on a page before opening the next (reading a card, scanning a list):
# 1-3 s is a brisk user (studies of web browsing put the median stay on a page well above 10 s), so
# 20 such users offer about 8 page views a second — a team much larger than 20 people at a normal
# pace. Without think time 20 users are a closed loop that queues by construction: its latency is
# users ÷ throughput whatever the pages cost (the ``saturated`` figure below measures just that).
THINK_TIME_S = (1.0, 3.0)
# One batch of 1,000 events per second: a steady stream well below the measured ingestion rate, so
# the worker keeps up and the web server shares the machine with it for the whole phase.
INGEST_BATCH = 1000
INGEST_INTERVAL_S = 1.0
DRAIN_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0  # gunicorn's --timeout in `make run`
# What a member of staff opens, by share of page views.
PAGE_MIX = (("list", 0.40), ("card", 0.30), ("hot", 0.15), ("dashboard", 0.15))
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class _LoadFragments(HTMLParser):
    """The URLs a page fetches by itself once htmx has loaded it (``hx-get`` + trigger ``load``)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url, trigger = values.get("hx-get"), values.get("hx-trigger") or ""
        if url and any(part.strip().split(" ")[0] == "load" for part in trigger.split(",")):
            self.urls.append(url)


def load_fragments(html: str) -> list[str]:
    parser = _LoadFragments()
    parser.feed(html)
    return parser.urls


@dataclass
class Sample:
    kind: str  # list, card, hot, dashboard, or fragment:<first path segment(s)>
    path: str
    status: int  # 0: the request raised
    ms: float
    started: float
    error: str | None = None


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0
    ingest: dict[str, Any] | None = None
    web_cpu_seconds: float | None = None


class User:
    """One member of staff in a browser: a session cookie and a keep-alive connection."""

    def __init__(self, base: str, username: str, password: str, seed: int, urls: dict[str, list[str]]) -> None:
        self.client = httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S, follow_redirects=False,
                                   headers={"User-Agent": "marketing-hub-bench-load"})
        self.username = username
        self.password = password
        self.random = random.Random(seed)
        self.urls = urls

    def login(self) -> None:
        page = self.client.get("/login/")
        match = CSRF_INPUT.search(page.text)
        if page.status_code != 200 or match is None:
            raise RuntimeError(f"GET /login/ answered {page.status_code} without a CSRF token")
        response = self.client.post("/login/", data={"username": self.username, "password": self.password,
                                                     "csrfmiddlewaretoken": match.group(1)},
                                     headers={"Referer": f"{self.client.base_url}login/"})
        if response.status_code != 302 or "/login/" in response.headers.get("location", ""):
            raise RuntimeError(f"login of {self.username} answered {response.status_code}")

    def _get(self, kind: str, path: str, out: list[Sample] | None, *, fragment: bool = False) -> str:
        headers = {"HX-Request": "true"} if fragment else None
        started = time.perf_counter()
        try:
            response = self.client.get(path, headers=headers)
            ms = (time.perf_counter() - started) * 1000
            status, text, error = response.status_code, response.text, None
            if 300 <= status < 400 and "/login/" in response.headers.get("location", ""):
                error = "redirected to the login page"  # the session was lost: not a page
            elif not 200 <= status < 400:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            ms = (time.perf_counter() - started) * 1000
            status, text, error = 0, "", f"{type(exc).__name__}: {exc}"
        if out is not None:
            out.append(Sample(kind, path, status, ms, started, error))
        return text

    def think_time(self) -> float:
        return self.random.uniform(*THINK_TIME_S)

    def visit(self, out: list[Sample] | None) -> None:
        """One page view: a page of the mix, then the fragments it loads."""
        kind = self.random.choices([k for k, _ in PAGE_MIX], weights=[w for _, w in PAGE_MIX])[0]
        path = self.random.choice(self.urls[kind])
        html = self._get(kind, path, out)
        for url in load_fragments(html):
            self._get("fragment:" + "/".join(url.strip("/").split("/")[:2]), url, out, fragment=True)

    def close(self) -> None:
        self.client.close()


def _run_phase(users: list[User], phase: Phase, seconds: float, record: bool, web_pid: int | None = None,
               think: bool = True) -> None:
    """Every user loops over ``visit`` (and a think time, with ``think``) until ``seconds`` have
    passed (a request under way finishes)."""
    cpu_before = _tree_cpu_seconds(web_pid) if web_pid else None
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    per_user: list[list[Sample]] = [[] for _ in users]
    pages = [0] * len(users)

    def loop(index: int) -> None:
        if think:  # users do not all click at the same instant
            time.sleep(min(users[index].think_time() / 2, max(0.0, deadline - time.perf_counter())))
        while time.perf_counter() < deadline:
            users[index].visit(per_user[index] if record else None)
            pages[index] += 1
            if think:
                time.sleep(min(users[index].think_time(), max(0.0, deadline - time.perf_counter())))

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(users))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * REQUEST_TIMEOUT_S)
    if record:
        with lock:
            for samples in per_user:
                phase.samples += samples
        phase.pages = sum(pages)
        phase.seconds = time.perf_counter() - started
        cpu_after = _tree_cpu_seconds(web_pid) if web_pid else None
        if cpu_before is not None and cpu_after is not None:
            phase.web_cpu_seconds = cpu_after - cpu_before


class Ingestion:
    """A steady stream of event batches from a background thread while a phase runs."""

    def __init__(self, client: Client, emails: list[str], seconds: float) -> None:
        count = int(seconds / INGEST_INTERVAL_S) + 2
        self.batches = make_batches(emails, count * INGEST_BATCH, f"load-{uuid.uuid4().hex[:10]}", INGEST_BATCH)
        self.client = client
        self.stop = threading.Event()
        self.accepted = 0
        self.errors = 0
        self.post_ms: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.perf_counter()
        for batch in self.batches:
            if self.stop.is_set():
                return
            started = time.perf_counter()
            try:
                status, _ = self.client.request("POST", "/api/v1/events", batch)
            except OSError:
                status = 0
            self.post_ms.append((time.perf_counter() - started) * 1000)
            if status == 202:
                self.accepted += len(batch["events"])
            else:
                self.errors += 1
            next_at += INGEST_INTERVAL_S
            self.stop.wait(max(0.0, next_at - time.perf_counter()))

    def start(self) -> float:
        self.thread.start()
        return time.perf_counter()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(REQUEST_TIMEOUT_S * 3)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share + 0.999999) - 1)]


def _summary(samples: list[Sample]) -> dict[str, Any]:
    ms = [s.ms for s in samples]
    return {"requests": len(samples), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(_percentile(ms, 0.95), 1), "p99_ms": round(_percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1)}


def _group(samples: list[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.kind].append(s)
    return groups


def _route(path: str) -> str:
    """A path with its ids replaced, so the slowest pages group by view and filter set."""
    base, _, query = path.partition("?")
    base = re.sub(r"/\d+/", "/<id>/", base)
    keys = sorted({pair.split("=")[0] for pair in query.split("&") if pair and not pair.startswith("page=")})
    return base + ("?" + "&".join(keys) if keys else "")


def report(phase: Phase, name: str, load_avg: tuple[float, float], single: Phase | None = None,
           think: bool = True) -> dict[str, Any]:
    samples = phase.samples
    if not samples:
        return {"name": name, "value": None, "reason": "no request finished"}
    errors = [s for s in samples if s.error]
    statuses: dict[str, int] = defaultdict(int)
    for s in samples:
        statuses[str(s.status)] += 1
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    by_route: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_kind[s.kind].append(s)
        by_route[_route(s.path)].append(s)
    overall = _summary(samples)
    # what dominates the tail: routes by their share of the requests above the overall p95
    tail = [s for s in samples if s.ms >= overall["p95_ms"]]
    tail_by_route: dict[str, int] = defaultdict(int)
    for s in tail:
        tail_by_route[_route(s.path)] += 1
    routes = sorted(((route, _summary(group)) for route, group in by_route.items()), key=lambda item: -item[1]["p95_ms"])
    result: dict[str, Any] = {
        "name": name, "value": overall["p95_ms"], "unit": "ms", **overall,
        "users": USERS, "think_time_s": list(THINK_TIME_S) if think else None, "seconds": round(phase.seconds, 1),
        "requests_per_s": round(len(samples) / phase.seconds, 1), "pages_per_s": round(phase.pages / phase.seconds, 1),
        "errors": len(errors), "statuses": dict(sorted(statuses.items())),
        "by_kind": {kind: _summary(group) for kind, group in sorted(by_kind.items())},
        "slowest_routes": [{"route": route, **summary} for route, summary in routes[:8]],
        "tail_routes": dict(sorted(tail_by_route.items(), key=lambda item: -item[1])[:8]),
        "slowest": [{"path": s.path, "ms": round(s.ms, 1), "status": s.status}
                    for s in sorted(samples, key=lambda s: -s.ms)[:8]],
        "load_average": {"start_1m": load_avg[0], "end_1m": load_avg[1]},
        # CPU the gunicorn processes used per request (the database's share is not in it): with
        # 2 × cores + 1 workers and no think time, throughput ≈ cores ÷ (web + database CPU per
        # request), and Little's law makes the mean latency ≈ users ÷ throughput - think time
        "web_cpu_ms_per_request": None if phase.web_cpu_seconds is None
        else round(phase.web_cpu_seconds * 1000 / len(samples), 1),
        "target": "p95 < 500 ms, 0 errors" if think else "none: capacity (pages/s) under a closed loop",
    }
    if single is not None and single.samples:
        # one user alone, same mix: each view's own time, without waiting for a free worker
        result["single_user"] = {"requests": len(single.samples), **{
            kind: _summary(group) for kind, group in sorted(_group(single.samples).items())}}
    if errors:
        result["error_examples"] = sorted({f"{s.path}: {s.error}" for s in errors})[:10]
    if phase.ingest is not None:
        result["ingestion"] = phase.ingest
    return result


def _tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds (user + system) used so far by ``root`` and its children, from /proc (Linux);
    None elsewhere. Read before and after a phase: the web server's own CPU per request."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        used: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            used[int(entry.name)] = int(fields[11]) + int(fields[12])
    except (OSError, ValueError):
        return None
    tree = {root}
    for _ in range(3):  # gunicorn: master → workers
        tree |= {pid for pid, parent in parents.items() if parent in tree}
    return sum(used.get(pid, 0) for pid in tree) / ticks


def measure(database_name: str, *, users: list[dict], urls: dict[str, list[str]], emails: list[str],
            ingest_key: str, admin_key: str, say: Callable[[str], None]) -> list[dict]:
    """Start web, worker and beat as ``make run`` does; measure the quiet and the ingesting phase."""
    # local import: main() chooses the bench database and sets Django up before this runs
    from marketing_hub.run import children

    port = free_port()
    queue = f"bench-load-{uuid.uuid4().hex[:8]}"
    run_dir = LOG_DIR / "celerybeat-load"  # beat's schedule (ignored by git, as the other benches' are)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": queue,
                "MH_WEBHOOK_QUEUE": f"{queue}-webhooks", "DJANGO_SETTINGS_MODULE": "marketing_hub.settings"})
    env.pop("CELERY_BROKER_URL", None)  # the default broker, as `make run`
    # children() names the webhook worker's queue (and node) from the environment, as `make run` sets it
    previous_queue = os.environ.get("MH_WEBHOOK_QUEUE")
    os.environ["MH_WEBHOOK_QUEUE"] = env["MH_WEBHOOK_QUEUE"]
    try:
        commands = {child.name: child.args for child in children(str(port), run_dir)}
    finally:
        if previous_queue is None:
            os.environ.pop("MH_WEBHOOK_QUEUE", None)
        else:
            os.environ["MH_WEBHOOK_QUEUE"] = previous_queue
    # A node name and a beat pid file of their own: other workers and beats may run on this machine.
    commands["worker"] += ["-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    commands["beat"] += ["--pidfile="]
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        for name, args in commands.items():
            log = open(LOG_DIR / f"load-{name}.log", "wb")
            logs.append(log)
            processes.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        web, worker = processes[0], processes[1]
        _wait_http(port, web)
        say(f"load: web as `make run` serves it ({' '.join(commands['web'][2:])}), worker and beat up")
        api = Client(port, ingest_key)
        # warm the worker (imports, first task) and start from a settled system
        status, body = api.request("POST", "/api/v1/events", make_batches(emails, INGEST_BATCH, "load-warm-" + queue)[0])
        if status != 202:
            raise RuntimeError(f"POST /api/v1/events answered {status}: {body}")
        _drain(api, admin_key, DRAIN_TIMEOUT_S, worker)
        _settle(DRAIN_TIMEOUT_S, worker)

        people = [User(f"http://127.0.0.1:{port}", spec["username"], spec["password"], seed, urls)
                  for seed, spec in enumerate(users[i % len(users)] for i in range(USERS))]
        for person in people:
            person.login()
        say(f"load: {USERS} users logged in ({', '.join(sorted({p.username for p in people}))}); warming up {WARMUP_S:.0f} s")
        _run_phase(people, Phase("warmup"), WARMUP_S, record=False)
        single = Phase("single user")
        _run_phase(people[:1], single, SINGLE_USER_S, record=True, think=False)

        out = []
        quiet = Phase("quiet")
        before = os.getloadavg()[0]
        _run_phase(people, quiet, DURATION_S, record=True, web_pid=web.pid)
        out.append(report(quiet, "concurrent_users_p95_ms", (before, os.getloadavg()[0]), single))
        say(_line(out[-1]))

        ingesting = Phase("ingesting")
        ingestion = Ingestion(api, emails, DURATION_S)
        before = os.getloadavg()[0]
        started = ingestion.start()
        _run_phase(people, ingesting, DURATION_S, record=True, web_pid=web.pid)
        ingestion.finish()
        posted_s = time.perf_counter() - started
        after = os.getloadavg()[0]
        _, status_body = api.request("GET", "/api/v1/events/status", key=admin_key)
        drained_s: float | None
        try:
            _drain(api, admin_key, DRAIN_TIMEOUT_S, worker)
            drained_s = round(time.perf_counter() - started, 1)
        except RuntimeError:
            drained_s = None
        ingesting.ingest = {
            "events_accepted": ingestion.accepted, "batch_errors": ingestion.errors,
            "events_per_s": round(ingestion.accepted / posted_s), "batch_post_p95_ms":
                round(_percentile(ingestion.post_ms, 0.95), 1) if ingestion.post_ms else None,
            "pending_at_end": status_body.get("pending"), "drained_after_s": drained_s,
        }
        out.append(report(ingesting, "concurrent_users_p95_ms_ingesting", (before, after)))
        say(_line(out[-1]) + f"; ingestion {ingesting.ingest}")

        # The same users clicking without pause: not a team at work but the server's capacity
        # (pages/s) and what the queue does to latency when offered more than that.
        saturated = Phase("saturated")
        before = os.getloadavg()[0]
        _run_phase(people, saturated, DURATION_S, record=True, web_pid=web.pid, think=False)
        out.append(report(saturated, "concurrent_users_p95_ms_saturated", (before, os.getloadavg()[0]), think=False))
        say(_line(out[-1]))
        for person in people:
            person.close()
        return out
    finally:
        processes_stop(*processes)
        for log in logs:
            log.close()


def _line(result: dict) -> str:
    if result.get("value") is None:
        return f"{result['name']}: not measured ({result.get('reason')})"
    return (f"{result['name']}: p95 {result['p95_ms']} ms (p50 {result['p50_ms']}, p99 {result['p99_ms']}), "
            f"{result['requests_per_s']} requests/s, {result['pages_per_s']} pages/s, {result['errors']} errors, "
            f"load average {result['load_average']['start_1m']:.1f}→{result['load_average']['end_1m']:.1f}, "
            f"web CPU {result['web_cpu_ms_per_request']} ms/request")
