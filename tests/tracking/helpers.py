"""Sources and messages for the tracking tests."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta

from django.test import Client

from tracking.services import source_issue

SHOP_ORIGIN = "https://shop.example"
_counter = itertools.count(1)


def server_source(name: str = "Shop back end"):
    return source_issue(name=name, kind="server")


def browser_source(name: str = "Shop website", origins: tuple[str, ...] = (SHOP_ORIGIN,)):
    return source_issue(name=name, kind="browser", allowed_origins=list(origins))


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message(type: str = "track", *, message_id: str | None = None, **fields) -> dict:
    """A message as Segment's libraries send it (a minute old unless ``timestamp`` is given)."""
    body = {"type": type, "messageId": message_id or f"msg-{next(_counter)}",
            "timestamp": iso(datetime.now(UTC) - timedelta(minutes=1))}
    body.update(fields)
    return body


def post(path: str, body, *, key: str | None = None, client: Client | None = None, **headers):
    client = client or Client()
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type=headers.pop("content_type", "application/json"), **headers)


def merge_queued() -> int:
    """What the worker does after an identify: merge the queued anonymous profiles."""
    from contacts.merging import profiles_merge_due

    total = 0
    while merged := profiles_merge_due():
        total += merged
    return total
