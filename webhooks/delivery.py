"""Sending deliveries: signed POSTs with bounded concurrency per endpoint, retried on the contract's
schedule from a due-time column (no sleeping worker), leased so a killed worker loses nothing.

One round:

1. claim (a short transaction): per webhook at most ``CONCURRENCY`` due deliveries
   (``FOR UPDATE SKIP LOCKED`` in a LATERAL per webhook, so a webhook with a backlog does not
   starve the others); ``attempts + 1`` and ``next_attempt_at`` = the end of a lease. A worker
   SIGKILLed while sending leaves the rows to be claimed again when the lease ends, and they are
   sent with the same ``webhook-id`` (the message id is stored with the delivery);
2. send them at once on a thread pool (one httpx client, keep-alive), each webhook's URL checked
   and resolved once per round by the SSRF guard, the connection made to the checked address;
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from webhooks.models import Webhook
from webhooks.ssrf import Target, UnsafeUrl, check_url

logger = logging.getLogger(__name__)

# At most this many requests in flight to one webhook (per sending process: one pump runs at a time).
CONCURRENCY = 16
# A round claims up to this many deliveries per webhook: four waves of CONCURRENCY, so the claim and
# the outcome statements are shared by 64 calls, and even four waves of 10 s timeouts end well
# within the lease.
ROUND_WAVES = 4
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


def send_one(client: httpx.Client, delivery: Claimed, target: Target | None, target_error: str,
             secrets: list[str]) -> Outcome:
    timestamp = int(time.time())
    headers = signed_headers(secrets, delivery.message_id, timestamp, delivery.body)
    outcome = Outcome(id=delivery.id, webhook_id=delivery.webhook_id, ok=False, headers=headers)
    if target is None:
        outcome.error = f"Refused: the URL {target_error}"[:500]
        return outcome
    started = time.monotonic()
    try:
        request = client.build_request(
            "POST", target.address_url, content=delivery.body.encode(),
            headers={**headers, "host": target.host_header},
            extensions={"sni_hostname": target.hostname, "timeout": httpx.Timeout(TIMEOUT_SECONDS).as_dict()},
        )
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            received = bytearray()
            for chunk in response.iter_raw():
                received.extend(chunk)
                if len(received) > RESPONSE_BODY_LIMIT:
                    break
        finally:
            response.close()
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        outcome.status_code = response.status_code
        outcome.response_body = bytes(received[:RESPONSE_BODY_LIMIT]).decode("utf-8", "replace")
        outcome.ok = 200 <= response.status_code < 300
        if not outcome.ok:
            outcome.error = f"HTTP {response.status_code}"
            if response.is_redirect:
                outcome.error += " (redirects are not followed)"
            if response.status_code in (429, 503):
                outcome.retry_after = retry_after_seconds(response.headers.get("retry-after"), time.time())
    except httpx.TimeoutException:
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        outcome.error = f"Timed out after {TIMEOUT_SECONDS:.0f} s"
    except httpx.HTTPError as exc:
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
        cursor.execute(_CLAIM_SQL, {"now": now, "per_webhook": CONCURRENCY * ROUND_WAVES,
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


_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One client per process: keep-alive connections to each receiver's address."""
    global _client
    if _client is None:
        _client = httpx.Client(
            timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
    return _client


def deliveries_send_round(*, now: datetime | None = None) -> int:
    """Claim what is due, send it, record the outcomes. Returns how many were sent."""
    now = now or timezone.now()
    claimed = _claim(now)
    if not claimed:
        return 0
    targets = _targets({delivery.webhook_id for delivery in claimed})
    client = http_client()
    limits = {webhook_id: threading.BoundedSemaphore(CONCURRENCY) for webhook_id in targets}

    def send(delivery: Claimed) -> Outcome:
        target, error, secrets = targets[delivery.webhook_id]
        with limits[delivery.webhook_id]:  # per endpoint: at most CONCURRENCY in flight
            return send_one(client, delivery, target, error, secrets)

    outcomes = list(_pool().map(send, claimed))
    _record(claimed, outcomes, timezone.now())
    return len(claimed)


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One pool per process, kept between rounds (threads are not started per call)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="webhook-send")
    return _executor


def deliveries_send_due(*, time_budget: float = 30.0) -> dict:
    """Rounds until nothing is due or the time budget is spent (``more``: call again)."""
    deadline = time.monotonic() + time_budget
    sent = 0
    while True:
        count = deliveries_send_round()
        sent += count
        if not count:
            return {"sent": sent, "more": False}
        if time.monotonic() > deadline:
            return {"sent": sent, "more": deliveries_due()}


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
