"""The sustained ingestion part of the benchmark (``--only sustained``): ingestion kept up for minutes
rather than a burst, and how long an event takes to show on a contact while it runs.

The servers are those of the ingest part (``bench/ingest.py``: gunicorn as ``make run`` starts it,
the rules engine's worker, webhook delivery's worker) plus **beat**, whose schedule (segment
refreshes, the dashboard snapshot, the memberships drain's safety net) belongs to a system that runs
for minutes. For ``seconds``, ``CLIENT_THREADS`` clients post batches of 1,000 events
(``BATCH_EVENTS``) to ``/api/v1/events`` in a closed loop (each posts its next batch when the last
is answered): the ingest part's event mix for its 20,000 active contacts, except that every tenth
event is for a new contact (an email not yet in the database). Then the part waits until ``events/status`` reads 0.
A closed loop offers what the servers accept, more than the worker applies, so its latencies measure
the backlog it builds. With a ``rate`` (events/s) the load is an open loop instead: batch n is due
``n × batch ÷ rate`` seconds after the start and the clients post each when it is due (as soon as
one is free when they fall behind; how late each batch went out is recorded), so the latency is
that of a shop sending at that rate.
``events_per_s`` = events accepted ÷ (first POST sent → ``events/status`` 0 after the last answer):
the contract says everything is current at 0, saved-segment memberships included.

Event-to-effect latency. Before each run, probe contacts are prepared through the API (a few
purchases each, so that their PURCHASE tag score sits one purchase below the loyalty programme's
second tier) and a probe saved segment exists (made by the part, removed at the end) whose members
are probe contacts in that tier with that tag score. During the run, every ``PROBE_INTERVAL_S`` one
probe event — a purchase over 1,000 PLN for a probe contact not used before — is posted on its own,
among the load. From its 202, a poller reads every outstanding probe's four effects in one
statement (one snapshot) from the tables the contact card and its panels read: the PURCHASE tag
score (``contacts_contacttag``), the lead score (``contacts_contact.score``), the loyalty tier
(``loyalty_contacttier``) and the probe segment's membership (``segments_segmentmember``), each
compared with what the active rules make of that purchase. A probe's latency is its 202 → the end
of the first poll (every ``POLL_INTERVAL_S``) that saw all four: at most one poll late, never early.
A probe whose effects are not all seen within ``PROBE_GRACE_S`` after ``events/status`` read 0 is
counted as not completed and ranks above every completed one in the percentiles (a percentile that
lands on it is null); a probe whose POST failed is counted as such.

While the load runs, a logged-in admin in this process (``bench.pages``: the Django test client, as
the views part) requests a contact list URL or a contact card with its panels every
``PAGE_INTERVAL_S``, alternately; p95 per page.

Each run starts from a settled system and ends by removing what it made: the probe contacts and
the contacts the load created (the other parts count every contact, so they cannot stay), with
everything the areas keep about them, as the purge of anonymous profiles removes it. The events
the load sent to existing contacts stay, as the ingest part's do.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.urls import reverse

from automation.models import Rule
from bench import pages
from bench.ingest import (
    CLIENT_THREADS,
    LOG_DIR,
    ROOT,
    Client,
    _drain,
    _settle,
    _wait_http,
    _webhooks_idle,
    free_port,
    make_batches,
    processes_stop,
    webhook_worker,
    worker_command,
)
from contacts.merging import contacts_purge
from contacts.models import Contact, Tag, tag_key
from core.conditions import condition_matches
from core.models import ApiKey
from demo.datagen import PROGRAM_NAME
from demo.users import ensure_demo_users
from loyalty.models import Program, Tier
from marketing_hub.run import web_command
from segments.contact_parts import on_contacts_erasing
from segments.models import Segment
from segments.services import segment_refresh, segment_save

FIGURES = ("sustained_events_per_s", "event_to_effect_p95_s", "sustained_contact_list_p95_ms",
           "sustained_contact_card_p95_ms")
WINDOW_S = 10.0  # the time series' window
PROBE_INTERVAL_S = 0.5
POLL_INTERVAL_S = 0.1  # the latency's resolution
STATUS_INTERVAL_S = 0.5  # events/status sampled for the time series
PAGE_INTERVAL_S = 0.5  # a page (list, or card with its panels) requested this often while the load runs
PROBE_GRACE_S = 15.0  # after events/status read 0, the probes still unseen are given this long
DRAIN_TIMEOUT_S = 900.0
BATCH_EVENTS = 1000  # as the ingest part posts them (the tests post smaller ones, to drain in seconds)
NEW_CONTACT_EVERY = 10  # every tenth event of a batch is for a new contact
POOL_EVENTS = 50_000  # the load's batches are these events with fresh ids (and new contacts' emails)
PROBE_VALUE = 1500  # a big order (the starter rules: over 1,000 PLN → PURCHASE +1, +50 points)
PREPARE_VALUE = 100
EMAIL_PREFIX = "bench-sustained-"  # every contact the part creates; removed after each run
PROBE_PREFIX = EMAIL_PREFIX + "probe-"
NEW_PREFIX = EMAIL_PREFIX + "new-"
EMAIL_DOMAIN = "example.com"
SEGMENT_NAME = "bench sustained: probes"
ACTIVE_CONTACTS = 20_000
VACUUM_TABLES = ["contacts_contact", "contacts_contacttag", "contacts_tagscorechange", "leads_scorechange",
                 "leads_contactstage", "leads_stagetransition", "automation_ruleapplication", "automation_event",
                 "automation_eventreceipt", "loyalty_contacttier", "loyalty_tierchange", "segments_segmentmember"]
EFFECTS = ("tag_score", "lead_score", "tier", "segment")


# --- What a probe must change ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProbePlan:
    """What the probes rely on: the tag and tier to reach, how many preparing purchases get a
    contact one purchase below that tier, and what the probe's purchase adds."""

    tag_id: int
    program_id: int
    program_name: str
    start_tier: Tier
    target_tier: Tier
    prepare_purchases: int
    probe_points: int
    probe_tag_delta: int

    def segment_definition(self) -> dict:
        return {"all": [
            {"type": "attribute", "name": "email", "op": "contains", "value": PROBE_PREFIX},
            {"type": "tier", "program": self.program_name, "tier": self.target_tier.name},
            {"type": "tag_score", "tag": "PURCHASE", "op": "gte", "value": _number(self.target_tier.min)},
        ]}


def _number(value: Decimal) -> int | float:
    return int(value) if value == int(value) else float(value)


def purchase_effect(value: float) -> tuple[int, int]:
    """(points, PURCHASE tag score) the active rules give a purchase of ``value`` (rules that fire
    once per contact left out: a probe contact has bought before)."""
    properties = {"value": value, "currency": "PLN", "category": "diamenty"}
    points = tag_delta = 0
    purchase = tag_key("PURCHASE")
    for rule in Rule.objects.filter(active=True, event_type="purchase", once_per_contact=False):
        if not all(condition_matches(condition, properties) for condition in rule.conditions):
            continue
        for action in rule.actions:
            if action.get("type") == "add_score":
                points += int(action.get("points", 0))
            elif action.get("type") == "add_tag" and tag_key(str(action.get("tag", ""))) == purchase:
                tag_delta += int(action.get("score", 1))
    return points, tag_delta


def probe_plan() -> ProbePlan:
    """The bench data's loyalty programme counts the PURCHASE tag score; the probes climb from its
    first tier to its second with one purchase."""
    program = Program.objects.get(name=PROGRAM_NAME)
    if program.metric.get("type") != "tag_score" or tag_key(program.metric.get("tag", "")) != tag_key("PURCHASE"):
        raise RuntimeError(f"the programme {PROGRAM_NAME!r} does not count the PURCHASE tag score: {program.metric}")
    tiers = list(program.tiers.active().order_by("min"))
    if len(tiers) < 2:
        raise RuntimeError(f"the programme {PROGRAM_NAME!r} has fewer than two tiers")
    start, target = tiers[0], tiers[1]
    probe_points, probe_delta = purchase_effect(PROBE_VALUE)
    _, prepare_delta = purchase_effect(PREPARE_VALUE)
    if probe_points <= 0 or probe_delta <= 0 or prepare_delta <= 0:
        raise RuntimeError("no active rule gives a purchase points and PURCHASE tag score")
    prepare = max(0, math.ceil((target.min - probe_delta) / prepare_delta))
    if not (start.min <= prepare * prepare_delta < target.min <= prepare * prepare_delta + probe_delta):
        raise RuntimeError(f"no number of purchases puts a contact one purchase below {target.name!r}")
    return ProbePlan(tag_id=Tag.objects.get(key=tag_key("PURCHASE")).pk, program_id=program.pk,
                     program_name=program.name, start_tier=start, target_tier=target, prepare_purchases=prepare,
                     probe_points=probe_points, probe_tag_delta=probe_delta)


@dataclass
class Probe:
    contact_id: int
    email: str
    base_score: int
    base_tag: int
    sent_at: float | None = None  # monotonic, when the 202 arrived
    post_status: int | None = None
    seen: dict[str, float] = field(default_factory=dict)  # effect → monotonic, the end of the poll that saw it
    done_at: float | None = None  # the end of the first poll that saw all four

    @property
    def latency(self) -> float | None:
        return None if self.done_at is None or self.sent_at is None else self.done_at - self.sent_at


def probe_effects_sql() -> str:
    return """
        SELECT c.id, c.score, coalesce(ct.score, 0), lt.tier_id,
               EXISTS (SELECT 1 FROM segments_segmentmember m WHERE m.segment_id = %(segment)s AND m.contact_id = c.id)
        FROM contacts_contact c
        LEFT JOIN contacts_contacttag ct ON ct.contact_id = c.id AND ct.tag_id = %(tag)s
        LEFT JOIN loyalty_contacttier lt ON lt.program_id = %(program)s AND lt.contact_id = c.id
        WHERE c.id = ANY(%(ids)s)
    """


def probe_effects(plan: ProbePlan, segment_id: int, ids: list[int]) -> dict[int, tuple[int, int, int | None, bool]]:
    """contact id → (lead score, PURCHASE tag score, tier id, member of the probe segment), one snapshot."""
    with connection.cursor() as cursor:
        cursor.execute(probe_effects_sql(), {"segment": segment_id, "tag": plan.tag_id, "program": plan.program_id,
                                             "ids": ids})
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in cursor.fetchall()}


def effects_visible(plan: ProbePlan, probe: Probe, state: tuple[int, int, int | None, bool]) -> dict[str, bool]:
    score, tag_score, tier_id, member = state
    return {"tag_score": tag_score >= probe.base_tag + plan.probe_tag_delta,
            "lead_score": score >= probe.base_score + plan.probe_points,
            "tier": tier_id == plan.target_tier.pk,
            "segment": member}


# --- Statistics (pure) ----------------------------------------------------------------------------
def percentile_or_none(latencies: list[float | None], share: float) -> float | None:
    """Nearest rank over every probe, a probe that never completed ranking above all that did (and
    the percentile null when it lands on one)."""
    if not latencies:
        return None
    ordered = sorted(latencies, key=lambda value: math.inf if value is None else value)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def latency_summary(probes: list[Probe], first_send: float) -> dict[str, Any]:
    sent = [probe for probe in probes if probe.post_status is not None]
    accepted = [probe for probe in sent if probe.post_status == 202]
    latencies = [probe.latency for probe in accepted]
    per_effect = {}
    for effect in EFFECTS:
        values = [None if probe.sent_at is None or effect not in probe.seen else probe.seen[effect] - probe.sent_at
                  for probe in accepted]
        per_effect[effect] = {"p50_s": _round(percentile_or_none(values, 0.5)),
                              "p95_s": _round(percentile_or_none(values, 0.95))}
    completed = [value for value in latencies if value is not None]
    return {
        "p50_s": _round(percentile_or_none(latencies, 0.5)), "p95_s": _round(percentile_or_none(latencies, 0.95)),
        "p99_s": _round(percentile_or_none(latencies, 0.99)), "max_s": _round(max(completed, default=None)),
        "probes_sent": len(sent), "probes_accepted": len(accepted), "probes_completed": len(completed),
        "probes_not_completed": len(accepted) - len(completed), "probes_send_failed": len(sent) - len(accepted),
        "per_effect": per_effect,
        # [202 at (s after the first POST), latency s or null] for every probe sent
        "probes": [[_round(probe.sent_at - first_send) if probe.sent_at is not None else None,
                    _round(probe.latency)] for probe in sent],
    }


def time_series(sends: list[tuple[float, float, int]], samples: list[tuple[float, int, int, int, int]],
                first_send: float, end: float, window: float = WINDOW_S) -> list[dict[str, Any]]:
    """Per window from the first POST: events accepted (by the time their 202 arrived), events
    processed (the growth of accepted-so-far minus ``waiting + failed`` at the status samples),
    ``pending`` at the window's last sample and its maximum, memberships waiting at the last sample.
    ``sends``: (sent, answered, accepted); ``samples``: (at, accepted so far, pending, waiting +
    failed, memberships waiting)."""
    count = max(1, math.ceil((end - first_send) / window))
    out = []
    processed_before = 0
    for number in range(count):
        start, stop = first_send + number * window, first_send + (number + 1) * window
        last = number == count - 1  # the last window also takes what was answered at its very end
        accepted = sum(events for _, answered, events in sends if start <= answered and (answered < stop or last))
        inside = [sample for sample in samples if start <= sample[0] < stop]
        upto = [sample for sample in samples if sample[0] < stop]
        processed_now = max((sample[1] - sample[3] for sample in upto[-1:]), default=processed_before)
        out.append({"t_s": round(number * window, 1), "accepted": accepted,
                    "processed": max(0, processed_now - processed_before),
                    "pending_end": inside[-1][2] if inside else None,
                    "pending_max": max((sample[2] for sample in inside), default=None),
                    "memberships_waiting_end": inside[-1][4] if inside else None})
        processed_before = max(processed_before, processed_now)
    return out


def page_summary(timings: list[pages.Timing]) -> dict[str, Any]:
    if not timings:
        return {"p95_ms": None, "n": 0, "errors": 0}
    errors = sum(1 for timing in timings for status in timing.statuses if status != 200)
    return {**pages.summary([timing.ms for timing in timings]), "errors": errors}


def median_or_none(values: list[float | None]) -> float | None:
    """The median of the runs' values; null when a middle run has none (a run whose percentile
    landed on a probe that never completed ranks above every number)."""
    if not values:
        return None
    ordered = sorted(values, key=lambda value: math.inf if value is None else value)
    middle = ordered[(len(ordered) - 1) // 2: len(ordered) // 2 + 1]
    if any(value is None for value in middle):
        return None
    return statistics.median([value for value in middle if value is not None])


# --- Servers --------------------------------------------------------------------------------------
class Servers:
    """Web, the rules engine's worker, webhook delivery's worker (as the ingest part starts them)
    and beat, on the bench database and queues of their own."""

    def __init__(self, database_name: str) -> None:
        self.port = free_port()
        self.queue = f"bench-sustained-{uuid.uuid4().hex[:8]}"
        self.beat_dir = tempfile.mkdtemp(prefix="bench-sustained-beat-")
        env = dict(os.environ)
        env.update({"MH_DATABASE_NAME": database_name, "DEBUG": "0", "MH_CELERY_QUEUE": self.queue,
                    "MH_WEBHOOK_QUEUE": f"{self.queue}-webhooks", "DJANGO_SETTINGS_MODULE": "marketing_hub.settings"})
        env.pop("CELERY_BROKER_URL", None)  # the default broker (the database), as the ingest part's first figure
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.logs = {name: open(LOG_DIR / f"sustained-{name}.log", "wb") for name in ("web", "worker", "webhooks", "beat")}
        self.web = subprocess.Popen(web_command(str(self.port)), cwd=ROOT, env=env, stdout=self.logs["web"],
                                    stderr=subprocess.STDOUT)
        self.worker = subprocess.Popen(worker_command(self.queue), cwd=ROOT, env=env, stdout=self.logs["worker"],
                                       stderr=subprocess.STDOUT)
        self.webhooks = webhook_worker(env, self.logs["webhooks"])
        # beat's schedule in a directory of its own; no pid file (other beats may run on this machine)
        self.beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "marketing_hub", "beat", "--loglevel=WARNING",
             "-s", os.path.join(self.beat_dir, "celerybeat-schedule"), "--pidfile="],
            cwd=ROOT, env=env, stdout=self.logs["beat"], stderr=subprocess.STDOUT)

    def check(self) -> None:
        for name, process in (("web server", self.web), ("worker", self.worker), ("beat", self.beat)):
            if process.poll() is not None:
                raise RuntimeError(f"the {name} exited with {process.returncode} (bench/results/sustained-*.log)")

    def stop(self) -> None:
        processes_stop(self.web, self.worker, self.webhooks, self.beat)
        for log in self.logs.values():
            log.close()
        shutil.rmtree(self.beat_dir, ignore_errors=True)


def _settle_all(client: Client, admin_key: str, servers: Servers) -> None:
    """events/status 0, the memberships queue empty, webhook delivery caught up."""
    _drain(client, admin_key, DRAIN_TIMEOUT_S, servers.worker)
    if _settle(DRAIN_TIMEOUT_S, servers.worker) is None:
        raise RuntimeError("the segments' dirty queue did not drain")
    if _settle(120, servers.webhooks, _webhooks_idle) is None:
        raise RuntimeError("webhook delivery did not catch up within 120 s")


# --- Probe contacts and the bench's contacts ------------------------------------------------------
def prepare_probes(client: Client, admin_key: str, servers: Servers, plan: ProbePlan, segment_id: int,
                   run_tag: str, count: int) -> list[Probe]:
    """``count`` new contacts, each given ``plan.prepare_purchases`` purchases through the API and
    processed by the worker: in the first tier, one purchase below the second, not in the probe
    segment."""
    now = datetime.now(UTC)
    emails = [f"{PROBE_PREFIX}{run_tag}-{number}@{EMAIL_DOMAIN}" for number in range(count)]
    events = [{"event_id": f"{PROBE_PREFIX}{run_tag}-{number}-prepare-{k}", "email": email, "type": "purchase",
               "occurred_at": (now - timedelta(minutes=plan.prepare_purchases - k)).isoformat(),
               "properties": {"value": PREPARE_VALUE, "currency": "PLN", "category": "sukienki"}}
              for number, email in enumerate(emails) for k in range(plan.prepare_purchases)]
    for start in range(0, len(events), 1000):
        status, body = client.request("POST", "/api/v1/events", {"events": events[start:start + 1000]})
        if status != 202:
            raise RuntimeError(f"POST /api/v1/events (probe contacts) answered {status}: {body}")
    _settle_all(client, admin_key, servers)
    ids = dict(Contact.objects.filter(email__in=emails).values_list("email", "pk"))
    if len(ids) != count:
        raise RuntimeError(f"{len(ids)} of {count} probe contacts exist after their purchases")
    states = probe_effects(plan, segment_id, list(ids.values()))
    probes = []
    for email in emails:
        score, tag_score, tier_id, member = states[ids[email]]
        if tier_id != plan.start_tier.pk or member or tag_score + plan.probe_tag_delta < plan.target_tier.min:
            raise RuntimeError(f"probe contact {email} is not one purchase below {plan.target_tier.name!r}: score "
                               f"{score}, PURCHASE {tag_score}, tier {tier_id}, in the probe segment: {member}")
        probes.append(Probe(contact_id=ids[email], email=email, base_score=score, base_tag=tag_score))
    return probes


def bench_contact_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM contacts_contact WHERE email LIKE %s", [EMAIL_PREFIX + "%"])
        return [row[0] for row in cursor.fetchall()]


def contacts_remove(contact_ids: list[int]) -> int:
    """Delete these contacts set-based with everything the areas keep about them (the areas'
    ``contacts_purging`` receivers, as for purged anonymous profiles), the saved segments' cached
    counts corrected first (as for an erasure). No suppression row: the emails are the bench's own."""
    if not contact_ids:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        on_contacts_erasing(sender=Contact, contact_ids=contact_ids)
        return contacts_purge(cursor, contact_ids)


def _vacuum(say: Callable[[str], None]) -> None:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(VACUUM_TABLES)}")
    say(f"sustained: vacuumed after the run ({time.perf_counter() - started:.1f}s, not counted)")


# --- One run --------------------------------------------------------------------------------------
@dataclass
class Load:
    """What the run's threads record (appended under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sends: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, answered, accepted)
    late: list[float] = field(default_factory=list)  # with a rate: each batch's send after it was due (s)
    accepted: int = 0
    new_contact_events: int = 0
    http_errors: int = 0
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    list_timings: list[pages.Timing] = field(default_factory=list)
    card_timings: list[pages.Timing] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # a thread that died, and why

    def record(self, sent: float, answered: float, accepted: int, new_contacts: int = 0) -> None:
        with self.lock:
            self.sends.append((sent, answered, accepted))
            self.accepted += accepted
            self.new_contact_events += new_contacts


def _thread(load: Load, name: str, target: Callable[[], None], *, database: bool = False) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception as exc:  # recorded: the run then fails with it, never measures less in silence
            with load.lock:
                load.failures.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            if database:
                connection.close()

    thread = threading.Thread(target=run, name=f"sustained-{name}", daemon=True)
    thread.start()
    return thread


def run_once(*, servers: Servers, ingest_key: str, admin_key: str, plan: ProbePlan, segment_id: int,
             emails: list[str], seconds: float, page_urls: dict[str, list[str]], say: Callable[[str], None],
             batch: int = BATCH_EVENTS, rate: float | None = None) -> dict[str, Any]:
    run_tag = uuid.uuid4().hex[:8]
    client = Client(servers.port, ingest_key)
    admin = Client(servers.port, admin_key)
    probes = prepare_probes(client, admin_key, servers, plan, segment_id, run_tag,
                            math.ceil(seconds / PROBE_INTERVAL_S) + 1)
    pool = make_batches(emails, POOL_EVENTS, run_tag, batch=batch)
    load = Load()
    stop_load = threading.Event()
    stop_watch = threading.Event()
    batch_numbers = iter(range(10**9))
    load_before = os.getloadavg()[0]
    schedule: dict[str, float] = {}  # "start": when batch 0 is due (open loop)

    def post_loop() -> None:
        while not stop_load.is_set():
            with load.lock:
                number = next(batch_numbers)
            if rate:
                due = schedule["start"] + number * batch / rate
                if stop_load.wait(max(0.0, due - time.monotonic())):
                    return
                with load.lock:
                    load.late.append(max(0.0, time.monotonic() - due))
            events = []
            new = 0
            for index, event in enumerate(pool[number % len(pool)]["events"]):
                event = {**event, "event_id": f"{EMAIL_PREFIX}{run_tag}-{number}-{index}"}
                if index % NEW_CONTACT_EVERY == 0:
                    event["email"] = f"{NEW_PREFIX}{run_tag}-{number}-{index}@{EMAIL_DOMAIN}"
                    new += 1
                events.append(event)
            sent = time.monotonic()
            status, body = client.request("POST", "/api/v1/events", {"events": events})
            answered = time.monotonic()
            if status == 202:
                load.record(sent, answered, int(body.get("accepted", 0)), new)
            else:
                with load.lock:
                    load.http_errors += 1

    def probe_loop() -> None:
        prober = Client(servers.port, ingest_key)
        began = time.monotonic()
        for number, probe in enumerate(probes):
            if stop_load.wait(max(0.0, began + number * PROBE_INTERVAL_S - time.monotonic())):
                return
            event = {"event_id": f"{PROBE_PREFIX}{run_tag}-{number}", "email": probe.email, "type": "purchase",
                     "occurred_at": datetime.now(UTC).isoformat(),
                     "properties": {"value": PROBE_VALUE, "currency": "PLN", "category": "diamenty"}}
            sent = time.monotonic()
            status, body = prober.request("POST", "/api/v1/events", {"events": [event]})
            answered = time.monotonic()
            if status == 202:
                load.record(sent, answered, int(body.get("accepted", 0)))
                probe.sent_at = answered
            probe.post_status = status

    def poll_loop() -> None:
        while not stop_watch.wait(POLL_INTERVAL_S):
            outstanding = [probe for probe in probes if probe.sent_at is not None and probe.done_at is None]
            if not outstanding:
                continue
            states = probe_effects(plan, segment_id, [probe.contact_id for probe in outstanding])
            seen_at = time.monotonic()
            for probe in outstanding:
                visible = effects_visible(plan, probe, states[probe.contact_id])
                for effect, shown in visible.items():
                    if shown:
                        probe.seen.setdefault(effect, seen_at)
                if all(visible.values()):
                    probe.done_at = seen_at

    def status_loop() -> None:
        while not stop_watch.wait(STATUS_INTERVAL_S):
            with load.lock:
                accepted = load.accepted
            status, body = admin.request("GET", "/api/v1/events/status")
            if status == 200:
                with load.lock:
                    load.samples.append((time.monotonic(), accepted, int(body["pending"]),
                                         int(body["waiting"]) + int(body["failed"]), int(body["memberships_waiting"])))

    def page_loop() -> None:
        browser = pages.client_for("admin")
        lists = [pages.Probe(url) for url in page_urls["list"]]
        cards = [pages.Probe(url, panels=True) for url in page_urls["card"]]
        began = time.monotonic()
        for number in range(10**9):
            if stop_load.wait(max(0.0, began + number * PAGE_INTERVAL_S - time.monotonic())):
                return
            if number % 2 == 0:
                timing = pages.fetch(browser, lists[(number // 2) % len(lists)])
                with load.lock:
                    load.list_timings.append(timing)
            else:
                timing = pages.fetch(browser, cards[(number // 2) % len(cards)])
                with load.lock:
                    load.card_timings.append(timing)

    offered = f"offering {rate:,.0f} events/s" if rate else "closed loop"
    say(f"sustained: {len(probes)} probe contacts ready; {CLIENT_THREADS} clients posting for {seconds:.0f} s ({offered}) …")
    schedule["start"] = time.monotonic()
    watchers = [_thread(load, "poller", poll_loop, database=True), _thread(load, "status", status_loop)]
    senders = [_thread(load, f"client-{number}", post_loop) for number in range(CLIENT_THREADS)]
    senders.append(_thread(load, "probes", probe_loop))
    senders.append(_thread(load, "pages", page_loop, database=True))
    try:
        deadline = time.monotonic() + seconds
        while not stop_load.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            servers.check()
            if time.monotonic() >= deadline or load.failures:
                break
        stop_load.set()
        for thread in senders:
            thread.join()
        if not load.sends:
            raise RuntimeError("no batch was accepted" + (f" ({'; '.join(load.failures)})" if load.failures else ""))
        first_send = min(sent for sent, _, _ in load.sends)
        last_answer = max(answered for _, answered, _ in load.sends)
        load_after = os.getloadavg()[0]
        _drain(admin, admin_key, DRAIN_TIMEOUT_S, servers.worker)
        drained = time.monotonic()
        while time.monotonic() < drained + PROBE_GRACE_S and any(
                probe.sent_at is not None and probe.done_at is None for probe in probes):
            time.sleep(POLL_INTERVAL_S)
    finally:
        stop_load.set()
        stop_watch.set()
        for thread in watchers:
            thread.join()
    if load.failures:
        raise RuntimeError("; ".join(load.failures))
    elapsed = drained - first_send
    latency = latency_summary(probes, first_send)
    events_per_s = load.accepted / elapsed
    say(f"sustained: {load.accepted:,} events in {elapsed:.1f} s ({events_per_s:,.0f} events/s; POSTs for "
        f"{last_answer - first_send:.1f} s, then {drained - last_answer:.1f} s until events/status read 0); probes "
        f"{latency['probes_completed']}/{latency['probes_sent']} completed, p50 {latency['p50_s']} s, "
        f"p95 {latency['p95_s']} s, p99 {latency['p99_s']} s")
    return {
        "events_per_s": round(events_per_s), "events_sent": load.accepted, "probe_events": latency["probes_accepted"],
        "new_contact_events": load.new_contact_events, "batches": len(load.sends) - latency["probes_accepted"],
        "http_errors": load.http_errors, "elapsed_s": round(elapsed, 3), "send_seconds": round(last_answer - first_send, 3),
        "drain_after_last_send_s": round(drained - last_answer, 3),
        "accepted_per_s_while_sending": round(load.accepted / (last_answer - first_send)) if last_answer > first_send else None,
        "offered_events_per_s": rate,
        "late_sends": ({"batches": len(load.late), "over_1s": sum(1 for late in load.late if late > 1.0),
                        "p95_s": _round(percentile_or_none(list(load.late), 0.95))}
                       if rate and load.late else None),
        "latency": latency,
        "series": time_series(load.sends, load.samples, first_send, drained),
        "pending_samples": [[round(at - first_send, 1), pending, memberships]
                            for at, _, pending, _, memberships in load.samples],
        "pages": {"contact_list": page_summary(load.list_timings), "contact_card": page_summary(load.card_timings)},
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }


# --- The part -------------------------------------------------------------------------------------
def measure(database_name: str, *, seconds: float, runs: int, say: Callable[[str], None],
            batch: int = BATCH_EVENTS, rate: float | None = None) -> list[dict[str, Any]]:
    """``runs`` runs of ``seconds`` on the same servers, each from a settled system; the figures
    are the medians of the runs, every run beside them."""
    plan = probe_plan()
    ensure_demo_users()
    # the ingest part's 20,000 active contacts, spread over the table by a hash of the id
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM contacts_contact WHERE NOT is_anonymous AND email NOT LIKE %s "
                       "ORDER BY md5(id::text) LIMIT %s", [EMAIL_PREFIX + "%", ACTIVE_CONTACTS])
        emails = [row[0] for row in cursor.fetchall()]
    page_urls = {"list": pages.contact_list_urls(),
                 "card": [reverse("contacts:card", kwargs={"contact_id": pk}) for pk in pages.card_contact_ids()]}
    contacts_remove(bench_contact_ids())  # left by an interrupted run
    Segment.objects.filter(name=SEGMENT_NAME).delete()
    ingest, ingest_key = ApiKey.issue(name="bench sustained ingest", scope=ApiKey.SCOPE_INGEST)
    admin, admin_key = ApiKey.issue(name="bench sustained admin", scope=ApiKey.SCOPE_ADMIN)
    servers: Servers | None = None
    results: list[dict[str, Any]] = []
    try:
        segment = segment_save(name=SEGMENT_NAME, definition=plan.segment_definition(), refresh=False,
                               description="Probe contacts of the sustained ingestion benchmark (removed when it ends).")
        segment_refresh(segment.pk)  # materialised (empty) before the worker ever sees it
        started = time.perf_counter()
        servers = Servers(database_name)
        _wait_http(servers.port, servers.web)
        say(f"sustained: web, worker, webhook delivery and beat started ({time.perf_counter() - started:.0f} s)")
        client = Client(servers.port, ingest_key)
        warm = make_batches(emails, 1000, f"sustained-warm-{uuid.uuid4().hex[:8]}")[0]
        status, body = client.request("POST", "/api/v1/events", warm)
        if status != 202:
            raise RuntimeError(f"POST /api/v1/events answered {status}: {body}")
        browser = pages.client_for("admin")  # the first requests of each page pay for imports
        pages.fetch(browser, pages.Probe(page_urls["list"][0]))
        pages.fetch(browser, pages.Probe(page_urls["card"][0], panels=True))
        _settle_all(Client(servers.port, admin_key), admin_key, servers)
        say(f"sustained: warmed up and settled ({time.perf_counter() - started:.0f} s)")
        for number in range(runs):
            say(f"sustained run {number + 1} of {runs}")
            result: dict[str, Any] | None = None
            try:
                result = run_once(servers=servers, ingest_key=ingest_key, admin_key=admin_key, plan=plan,
                                  segment_id=segment.pk, emails=emails, seconds=seconds, page_urls=page_urls, say=say,
                                  batch=batch, rate=rate)
            finally:
                # the run's contacts go once the worker has applied everything (the next run starts settled)
                _settle_all(Client(servers.port, admin_key), admin_key, servers)
                removed = contacts_remove(bench_contact_ids())
                say(f"sustained: {removed:,} contacts of the run removed (probe contacts and new contacts)")
                _vacuum(say)
            results.append({**result, "contacts_removed": removed})
    finally:
        if servers is not None:
            servers.stop()
        contacts_remove(bench_contact_ids())
        Segment.objects.filter(name=SEGMENT_NAME).delete()
        ApiKey.objects.filter(pk__in=[ingest.pk, admin.pk]).delete()
    return figures(results, seconds=seconds, batch=batch, rate=rate)


def figures(results: list[dict[str, Any]], *, seconds: float, batch: int = BATCH_EVENTS,
            rate: float | None = None) -> list[dict[str, Any]]:
    rates = [result["events_per_s"] for result in results]
    p95s = [result["latency"]["p95_s"] for result in results]
    setup = {"seconds": seconds, "clients": CLIENT_THREADS, "batch_events": batch, "offered_events_per_s": rate,
             "new_contact_share": 1 / NEW_CONTACT_EVERY, "probe_interval_s": PROBE_INTERVAL_S,
             "poll_interval_s": POLL_INTERVAL_S, "window_s": WINDOW_S}
    clients = (f"{CLIENT_THREADS} clients offering {rate:,.0f} events/s (open loop)" if rate
               else f"{CLIENT_THREADS} closed-loop clients")
    out: list[dict[str, Any]] = [{
        "name": "sustained_events_per_s", "value": round(statistics.median(rates)), "unit": "events/s",
        "measures": f"events accepted ÷ (first POST → events/status 0 after the last answer), batches of {batch:,} from "
                    f"{clients} for {seconds:.0f} s, every tenth event for a new contact, "
                    "with the worker, webhook delivery and beat running; median of the runs",
        **setup, "runs": results,
    }]
    out.append({
        "name": "event_to_effect_p95_s", "value": _round(median_or_none(p95s)), "unit": "s (p95)",
        "p50_s": _round(median_or_none([result["latency"]["p50_s"] for result in results])),
        "p99_s": _round(median_or_none([result["latency"]["p99_s"] for result in results])),
        "probes_sent": sum(result["latency"]["probes_sent"] for result in results),
        "probes_not_completed": sum(result["latency"]["probes_not_completed"] for result in results),
        "probes_send_failed": sum(result["latency"]["probes_send_failed"] for result in results),
        "measures": "a probe purchase's 202 → its PURCHASE tag score, lead score, loyalty tier and probe-segment "
                    "membership all visible in the database (polled every 0.1 s), during the sustained load; the "
                    "median of the runs' p95, probes that never completed ranking above all that did",
        "runs": [{key: value for key, value in result["latency"].items() if key != "probes"} for result in results],
    })
    if out[-1]["value"] is None:
        out[-1]["reason"] = "the p95 of the median run fell on probes that did not complete (see runs)"
    for name, page in (("sustained_contact_list_p95_ms", "contact_list"), ("sustained_contact_card_p95_ms", "contact_card")):
        values = [result["pages"][page]["p95_ms"] for result in results]
        out.append({"name": name, "value": _round(median_or_none(values), 1), "unit": "ms (p95)",
                    "errors": sum(result["pages"][page]["errors"] for result in results),
                    "measures": f"{page.replace('_', ' ')} as the views part requests it (test client, logged in as "
                                "admin), one page every 0.5 s alternating with the other, while the sustained load runs; "
                                "median of the runs' p95",
                    "runs": [result["pages"][page] for result in results]})
    return out
