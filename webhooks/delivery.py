"""Sending deliveries: signed POSTs with bounded concurrency per endpoint, retried on the contract's
schedule from a due-time column (no sleeping worker), leased so a killed worker loses nothing.

One round:

1. claim (a short transaction): per webhook at most ``ROUND_PER_WEBHOOK`` due deliveries
   (``FOR UPDATE SKIP LOCKED`` in a LATERAL per webhook, so a webhook with a backlog does not
   starve the others); ``attempts + 1`` and ``next_attempt_at`` = the end of a lease. A worker
   SIGKILLed while sending leaves the rows to be claimed again when the lease ends, and they are
   sent with the same ``webhook-id`` (the message id is stored with the delivery);
2. send them on a thread pool: per webhook ``CONCURRENCY`` lanes, each taking the webhook's next
   delivery until none is left, so at most ``CONCURRENCY`` calls are in flight to one endpoint
   and a slow endpoint holds only its own lanes. A lane starts no call once a third of the lease
   has passed (the rest go back to the queue untouched, due now), so every call of the round
   ends, timeout included, before the lease does. Each webhook's URL is checked and resolved
   once per round by the SSRF guard, and the connection is made to the checked address: each
   checked address has its own keep-alive connection pool (urllib3, ``CONCURRENCY`` connections).
   urllib3 rather than httpx because a call costs ~0.3 ms of CPU against httpx's ~1.2 ms under
   threads (measured against the same loopback receiver), and sending is GIL-bound;
3. write every outcome in ONE statement, then the webhooks' health in a second (410 → off,
   all failing for 5 days → off, a success clears the failing streak).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from webhooks.models import Webhook
from webhooks.ssrf import Target, UnsafeUrl, check_url, split_url

logger = logging.getLogger(__name__)

# At most this many requests in flight to one webhook (per sending process: one pump runs at a time).
CONCURRENCY = 16
# A round claims up to this many deliveries per webhook, so the claim and outcome statements are
# shared by hundreds of calls (at 64 per round they were a third of the sending time); the lease
# bounds how long a round sends (see Round).
ROUND_PER_WEBHOOK = CONCURRENCY * 32
TIMEOUT_SECONDS = 10.0
RESPONSE_BODY_LIMIT = 4096
FAILING_DAYS_BEFORE_OFF = 5
# A Retry-After beyond this is read as this (a receiver cannot park a message for a month).
RETRY_AFTER_MAX_SECONDS = 24 * 3600
USER_AGENT = "MarketingHub-Webhooks/1"


def retry_delays() -> list[float]:
    """Seconds before the 1st, 2nd, … retry (``MH_WEBHOOK_RETRY_DELAYS``)."""
    return [float(delay) for delay in settings.MH_WEBHOOK_RETRY_DELAYS]


# --- signing (Standard Webhooks) ----------------------------------------------------------------
def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, key = base64-decoded secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: list[str], message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        # During a rotation both secrets sign: the receiver accepts either.
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body) for secret in secrets),
    }


# --- one attempt --------------------------------------------------------------------------------
@dataclass
class Claimed:
    id: int
    webhook_id: int
    message_id: str
    type: str
    body: str
    attempts: int


@dataclass
class Outcome:
    id: int
    webhook_id: int
    ok: bool
    status_code: int | None = None
    error: str = ""
    response_body: str = ""
    latency_ms: int | None = None
    headers: dict = field(default_factory=dict)
    retry_after: float | None = None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return min(max(0.0, when.timestamp() - now), RETRY_AFTER_MAX_SECONDS)


def send_one(pool: urllib3.HTTPConnectionPool | None, delivery: Claimed, target: Target | None, target_error: str,
             secrets: list[str]) -> Outcome:
    timestamp = int(time.time())
    headers = signed_headers(secrets, delivery.message_id, timestamp, delivery.body)
    outcome = Outcome(id=delivery.id, webhook_id=delivery.webhook_id, ok=False, headers=headers)
    if target is None or pool is None:
        outcome.error = f"Refused: the URL {target_error}"[:500]
        return outcome
    started = time.monotonic()
    try:
        # the pool connects to the checked address; Host (and SNI, set on the pool) carry the name
        response = pool.urlopen(
            "POST", request_path(target.url), body=delivery.body.encode(), headers={**headers, "host": target.host_header},
            redirect=False, retries=False, preload_content=False, assert_same_host=False,
            timeout=urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS),
        )
        try:
            received = response.read(RESPONSE_BODY_LIMIT + 1, decode_content=False)
            if len(received) > RESPONSE_BODY_LIMIT:
                response.close()  # the rest is not read: this connection cannot be reused
        finally:
            response.release_conn()
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        outcome.status_code = response.status
        outcome.response_body = bytes(received[:RESPONSE_BODY_LIMIT]).decode("utf-8", "replace")
        outcome.ok = 200 <= response.status < 300
        if not outcome.ok:
            outcome.error = f"HTTP {response.status}"
            if 300 <= response.status < 400 and response.headers.get("location"):
                outcome.error += " (redirects are not followed)"
            if response.status in (429, 503):
                outcome.retry_after = retry_after_seconds(response.headers.get("retry-after"), time.time())
    except (ReadTimeoutError, Urllib3Timeout) as exc:
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        # NewConnectionError is a ConnectTimeoutError for urllib3's history: a refused connection
        if isinstance(exc, NewConnectionError):
            outcome.error = f"ConnectError: {exc}"[:500]
        else:
            outcome.error = f"Timed out after {TIMEOUT_SECONDS:.0f} s"
    except (HTTPError, OSError) as exc:
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        outcome.error = f"{exc.__class__.__name__}: {exc}"[:500] or exc.__class__.__name__
    return outcome


# --- a round ------------------------------------------------------------------------------------
_CLAIM_SQL = """
WITH picked AS (
    SELECT d.id
    FROM webhooks_webhook w
    CROSS JOIN LATERAL (
        SELECT d.id FROM webhooks_delivery d
        WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= %(now)s
          AND (w.active OR d.type = 'webhook.test')
        ORDER BY d.next_attempt_at, d.id
        LIMIT %(per_webhook)s
        FOR UPDATE OF d SKIP LOCKED
    ) d
)
UPDATE webhooks_delivery d
SET attempts = d.attempts + 1, next_attempt_at = %(lease)s, last_attempt_at = %(now)s
FROM picked p WHERE d.id = p.id
RETURNING d.id, d.webhook_id, d.message_id, d.type, d.body, d.attempts
"""

# Every outcome of a round in one statement; the rows travel as ONE JSON document (json.dumps is C,
# quoting nine arrays of strings parameter by parameter cost more than the statement itself).
_RESULTS_SQL = """
UPDATE webhooks_delivery d
SET status = r.status, next_attempt_at = r.next_at, delivered_at = coalesce(r.delivered_at, d.delivered_at),
    last_status_code = r.code, last_error = r.error, last_request_headers = r.headers,
    last_response_body = r.body, last_latency_ms = r.latency
FROM jsonb_to_recordset(%s::jsonb)
     AS r(id bigint, status text, next_at timestamptz, delivered_at timestamptz, code int, error text, headers jsonb,
          body text, latency int)
WHERE d.id = r.id AND d.status = 'pending'
"""


def _claim(now: datetime) -> list[Claimed]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"now": now, "per_webhook": ROUND_PER_WEBHOOK,
                                    "lease": now + timedelta(seconds=settings.MH_WEBHOOK_LEASE_SECONDS)})
        return [Claimed(*row) for row in cursor.fetchall()]


def _next_state(delivery: Claimed, outcome: Outcome, now: datetime, delays: list[float]) -> tuple[str, datetime | None]:
    if outcome.ok:
        return "succeeded", None
    if outcome.status_code == 410 or delivery.attempts > len(delays):
        return "failed", None
    wait = delays[delivery.attempts - 1]
    if outcome.retry_after is not None:
        wait = max(wait, outcome.retry_after)
    return "pending", now + timedelta(seconds=wait)


def _record(claimed: list[Claimed], outcomes: list[Outcome], now: datetime) -> None:
    delays = retry_delays()
    by_id = {delivery.id: delivery for delivery in claimed}
    rows = []
    for outcome in outcomes:
        status, next_at = _next_state(by_id[outcome.id], outcome, now, delays)
        rows.append({
            "id": outcome.id, "status": status, "next_at": next_at.isoformat() if next_at else None,
            "delivered_at": now.isoformat() if outcome.ok else None, "code": outcome.status_code,
            "error": outcome.error[:500], "headers": outcome.headers, "body": outcome.response_body.replace("\x00", ""),
            "latency": outcome.latency_ms,
        })
    succeeded = sorted({o.webhook_id for o in outcomes if o.ok})
    failed = sorted({o.webhook_id for o in outcomes if not o.ok} - set(succeeded))
    gone = sorted({o.webhook_id for o in outcomes if o.status_code == 410})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RESULTS_SQL, [json.dumps(rows)])
        if succeeded:
            Webhook.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(failing_since=None)
        if failed:
            cursor.execute(
                "UPDATE webhooks_webhook SET failing_since = %s WHERE id = ANY(%s) AND failing_since IS NULL",
                [now, failed],
            )
        if gone:
            webhooks_switch_off(gone, reason="The receiver answered 410 Gone", now=now)
        stale = list(Webhook.objects.filter(
            pk__in=failed, active=True, failing_since__lte=now - timedelta(days=FAILING_DAYS_BEFORE_OFF)
        ).values_list("pk", flat=True))
        if stale:
            webhooks_switch_off(stale, reason=f"Every delivery failed for {FAILING_DAYS_BEFORE_OFF} days", now=now)


def webhooks_switch_off(webhook_ids: list[int], *, reason: str, now: datetime | None = None) -> int:
    """The system switches webhooks off (the reason is shown to the admins)."""
    now = now or timezone.now()
    with transaction.atomic():
        count = Webhook.objects.filter(pk__in=webhook_ids, active=True).update(
            active=False, disabled_reason=reason[:200], disabled_at=now, updated_at=now
        )
        deliveries_end_pending(webhook_ids)
    if count:
        logger.warning("webhooks %s switched off: %s", webhook_ids, reason)
    return count


def deliveries_end_pending(webhook_ids: list[int]) -> int:
    """A switched-off webhook's waiting deliveries end ``failed`` (replayable), not parked."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE webhooks_delivery SET status = 'failed', next_attempt_at = NULL,
                   last_error = CASE WHEN last_error = '' THEN %s ELSE last_error END
            WHERE webhook_id = ANY(%s) AND status = 'pending' AND type <> 'webhook.test'
            """,
            ["The webhook was switched off", list(webhook_ids)],
        )
        return cursor.rowcount


def _targets(webhook_ids: set[int]) -> dict[int, tuple[Target | None, str, list[str]]]:
    targets: dict[int, tuple[Target | None, str, list[str]]] = {}
    now = timezone.now()
    for webhook in Webhook.objects.filter(pk__in=webhook_ids):
        try:
            targets[webhook.pk] = (check_url(webhook.url), "", webhook.signing_secrets(now))
        except UnsafeUrl as exc:
            targets[webhook.pk] = (None, str(exc), webhook.signing_secrets(now))
    return targets


_pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
_pools_lock = threading.Lock()
# Pools kept per process; a webhook whose name moves to other addresses gets a new pool, so the
# cache is emptied when it grows past this (the old pools' connections close with them).
MAX_POOLS = 256


def request_path(url: str) -> str:
    parts = urlsplit(url.strip())
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def connection_pool(target: Target) -> urllib3.HTTPConnectionPool:
    """The keep-alive pool for a checked address: at most ``CONCURRENCY`` connections (a thread
    wanting one more waits), TLS verified against the URL's host name, sent as SNI."""
    scheme, _, port = split_url(target.url)
    key = (scheme, target.ip, port, target.hostname)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            if len(_pools) >= MAX_POOLS:
                for old in _pools.values():
                    old.close()
                _pools.clear()
            timeout = urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS)
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    target.ip, port, maxsize=CONCURRENCY, block=True, retries=False, timeout=timeout,
                    server_hostname=target.hostname, assert_hostname=target.hostname,
                )
            else:
                pool = urllib3.HTTPConnectionPool(target.ip, port, maxsize=CONCURRENCY, block=True, retries=False,
                                                  timeout=timeout)
            _pools[key] = pool
        return pool


def _release(delivery_ids: list[int], now: datetime) -> None:
    """Claimed deliveries the round did not start go back as they were, due now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE webhooks_delivery SET attempts = attempts - 1, next_attempt_at = %s "
            "WHERE id = ANY(%s) AND status = 'pending'",
            [now, delivery_ids],
        )


class Round:
    """Claimed deliveries on their way: ``start()`` hands them to the thread pool, ``wait()``
    waits for the calls, ``record()`` writes the outcomes. Every database statement runs in the
    calling thread (the sending threads touch no connection)."""

    def __init__(self, now: datetime) -> None:
        self.claimed = _claim(now)
        # No call starts after a third of the lease: with the 10 s timeout every call ends in time.
        self.start_by = time.monotonic() + settings.MH_WEBHOOK_LEASE_SECONDS / 3
        self.queues: dict[int, deque[Claimed]] = {}
        for delivery in self.claimed:
            self.queues.setdefault(delivery.webhook_id, deque()).append(delivery)
        self.targets = _targets(set(self.queues)) if self.claimed else {}
        self.futures: list = []
        self.outcomes: list[Outcome] = []
        self.gone: set[int] = set()  # webhooks that answered 410 in this round: no further call

    def start(self) -> None:
        pools = {webhook_id: connection_pool(target) for webhook_id, (target, _, _) in self.targets.items() if target}

        def lane(webhook_id: int) -> list[Outcome]:
            # one of the webhook's CONCURRENCY lanes: one call at a time (deque.popleft is atomic)
            target, error, secrets = self.targets[webhook_id]
            waiting, done = self.queues[webhook_id], []
            while time.monotonic() < self.start_by and webhook_id not in self.gone:
                try:
                    delivery = waiting.popleft()
                except IndexError:
                    break
                outcome = send_one(pools.get(webhook_id), delivery, target, error, secrets)
                if outcome.status_code == 410:
                    self.gone.add(webhook_id)
                done.append(outcome)
            return done

        executor = _pool()
        self.futures = [executor.submit(lane, webhook_id) for webhook_id, waiting in self.queues.items()
                        for _ in range(min(CONCURRENCY, len(waiting)))]

    def wait(self) -> None:
        self.outcomes = [outcome for future in self.futures for outcome in future.result()]

    def record(self) -> int:
        # the unsent first: a webhook switched off by these outcomes then ends them ``failed``
        unsent = [delivery.id for waiting in self.queues.values() for delivery in waiting]
        if unsent:
            _release(unsent, timezone.now())
        if self.outcomes:
            _record(self.claimed, self.outcomes, timezone.now())
        return len(self.outcomes)

    def keep_pending_only(self) -> None:
        """Drop what is no longer pending (a webhook switched off by an earlier round's outcome
        ended its deliveries ``failed``): a 410 is the last call that webhook gets."""
        ids = [delivery.id for delivery in self.claimed]
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM webhooks_delivery WHERE id = ANY(%s) AND status = 'pending'", [ids])
            pending = {row[0] for row in cursor.fetchall()}
        self.claimed = [delivery for delivery in self.claimed if delivery.id in pending]
        for webhook_id, waiting in list(self.queues.items()):
            kept = deque(delivery for delivery in waiting if delivery.id in pending)
            if kept:
                self.queues[webhook_id] = kept
            else:
                del self.queues[webhook_id]


def deliveries_send_round(*, now: datetime | None = None) -> int:
    """Claim what is due, send it, record the outcomes. Returns how many were sent."""
    batch = Round(now or timezone.now())
    if not batch.claimed:
        return 0
    batch.start()
    batch.wait()
    return batch.record()


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One pool per process, kept between rounds (threads are not started per call)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="webhook-send")
    return _executor


def deliveries_send_due(*, time_budget: float = 30.0, between: Callable[[], object] | None = None) -> dict:
    """Rounds until nothing is due or the time budget is spent (``more``: call again).

    Pipelined: the next round is claimed while the current one sends, and the current one's
    outcomes are written while the next one sends, so the database statements cost no sending
    time. A round starts only when the previous one's calls have ended (at most ``CONCURRENCY``
    in flight per endpoint). After a round with a failure its outcomes are written before the
    next round starts, so a 410 (or a webhook switched off for failing) stops the calls at once.
    ``between`` runs once per round while its calls are in flight (the pump fans out the next
    chunk of the outbox there, so new messages join the rounds without waiting for the end)."""
    deadline = time.monotonic() + time_budget
    sent = 0
    current = Round(timezone.now())
    if not current.claimed:
        return {"sent": 0, "more": False}
    current.start()
    while True:
        if between is not None:
            between()
        following = Round(timezone.now()) if time.monotonic() < deadline else None
        current.wait()
        written = False
        if following is not None and following.claimed and any(not outcome.ok for outcome in current.outcomes):
            sent += current.record()
            following.keep_pending_only()
            written = True
        if following is not None and following.claimed:
            following.start()
        if not written:
            sent += current.record()
        if following is None:
            return {"sent": sent, "more": deliveries_due()}
        if not following.claimed:
            return {"sent": sent, "more": False}
        current = following


def deliveries_due(now: datetime | None = None) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (SELECT 1 FROM webhooks_delivery d JOIN webhooks_webhook w ON w.id = d.webhook_id
                           WHERE d.status = 'pending' AND d.next_attempt_at <= %s
                             AND (w.active OR d.type = 'webhook.test'))
            """,
            [now or timezone.now()],
        )
        return cursor.fetchone()[0]
