"""Webhook tests: a real HTTP receiver on loopback (pytest-httpserver), loopback allowed by the
SSRF guard, short retry delays (the same code path, the schedule's numbers only)."""

from __future__ import annotations

import time

import pytest

LOOPBACK = "127.0.0.0/8"
SHORT_DELAYS = [0.2] * 7


@pytest.fixture(scope="session")
def httpserver_listen_address():
    # 127.0.0.1, not "localhost": the name may also resolve to ::1, which the guard would refuse.
    return ("127.0.0.1", 0)


@pytest.fixture(autouse=True)
def allow_loopback(settings, monkeypatch):
    """The receiver runs on loopback: allow it (in this process and in worker subprocesses)."""
    settings.MH_WEBHOOK_ALLOWED_NETS = [LOOPBACK]
    monkeypatch.setenv("MH_WEBHOOK_ALLOWED_NETS", LOOPBACK)


@pytest.fixture
def short_retries(settings, monkeypatch):
    settings.MH_WEBHOOK_RETRY_DELAYS = list(SHORT_DELAYS)
    monkeypatch.setenv("MH_WEBHOOK_RETRY_DELAYS", ",".join(str(d) for d in SHORT_DELAYS))
    return SHORT_DELAYS


@pytest.fixture
def receiver(httpserver):
    """The loopback receiver, answering 200 to every POST unless a test says otherwise."""
    httpserver.clear()
    yield httpserver
    httpserver.clear()


def make_webhook(url: str, events: list[str] | None = None, **fields):
    from webhooks.models import SUBSCRIBABLE_TYPES
    from webhooks.services import validate_webhook, webhook_save

    data = {"url": url, "events": events or list(SUBSCRIBABLE_TYPES), **fields}
    return webhook_save(None, validate_webhook(data))


def pump_until(predicate, timeout: float = 15.0):
    """Run the pump in-process (the task's body) until ``predicate()`` holds."""
    from webhooks.tasks import webhooks_pump

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        webhooks_pump(time_budget=5)
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {predicate.__doc__ or 'the deliveries'}")


def received(httpserver) -> list:
    """(request, json body) of every call the receiver got."""
    return [(request, request.get_json()) for request, _response in httpserver.log]
