"""API v1: outbound webhooks (admin scope), exactly as docs/api-v1.md says."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import ConfigDict, StrictBool

from webhooks.models import Delivery, Webhook
from webhooks.services import (
    WebhookError,
    delivery_replay,
    validate_webhook,
    webhook_delete,
    webhook_rotate_secret,
    webhook_save,
    webhook_send_test,
)

router = Router(tags=["webhooks"])


class FilterIn(Schema):
    model_config = ConfigDict(extra="forbid")

    segment_ids: list[int | str] | None = None
    programs: list[int | str] | None = None
    funnels: list[int | str] | None = None


class WebhookIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str
    events: list[str]
    description: str = ""
    active: StrictBool = True
    filter: FilterIn | None = None


class WebhookPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    active: StrictBool | None = None
    filter: FilterIn | None = None


class FilterOut(Schema):
    segment_ids: list[int]
    programs: list[int]
    funnels: list[int]


class WebhookOut(Schema):
    id: int
    url: str
    events: list[str]
    description: str
    active: bool
    filter: FilterOut
    created_at: datetime
    disabled_reason: str


class WebhookCreatedOut(WebhookOut):
    secret: str


class WebhookListOut(Schema):
    results: list[WebhookOut]
    count: int


class SecretOut(Schema):
    secret: str


class DeliveryOut(Schema):
    id: int
    message_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryListOut(Schema):
    results: list[DeliveryOut]
    count: int


class Accepted(Schema):
    detail: str


class ErrorItem(Schema):
    field: str
    message: str


class Errors(Schema):
    errors: list[ErrorItem]


def _out(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.pk, "url": webhook.url, "events": list(webhook.events), "description": webhook.description,
        "active": webhook.active, "filter": webhook.filter, "created_at": webhook.created_at,
        "disabled_reason": webhook.disabled_reason,
    }


def _errors(exc: WebhookError) -> Status:
    return Status(400, {"errors": [{"field": field, "message": message} for field, message in exc.errors]})


def _payload(schema: Schema) -> dict:
    data = schema.model_dump(exclude_unset=True)
    if "filter" in data and data["filter"] is not None:
        data["filter"] = {key: value for key, value in data["filter"].items() if value is not None}
    return data


@router.post("/webhooks", response={201: WebhookCreatedOut, 400: Errors})
def webhooks_create(request: HttpRequest, payload: WebhookIn) -> Any:
    data = _payload(payload)
    data.setdefault("active", True)
    data.setdefault("description", "")
    try:
        cleaned = validate_webhook(data)
    except WebhookError as exc:
        return _errors(exc)
    webhook = webhook_save(None, cleaned)
    return Status(201, {**_out(webhook), "secret": webhook.secret})


@router.get("/webhooks", response=WebhookListOut)
def webhooks_list(request: HttpRequest) -> Any:
    webhooks = list(Webhook.objects.order_by("pk")[:1000])
    return {"results": [_out(webhook) for webhook in webhooks], "count": len(webhooks)}


@router.get("/webhooks/{webhook_id}", response=WebhookOut)
def webhooks_get(request: HttpRequest, webhook_id: int) -> Any:
    return _out(get_object_or_404(Webhook, pk=webhook_id))


@router.patch("/webhooks/{webhook_id}", response={200: WebhookOut, 400: Errors})
def webhooks_patch(request: HttpRequest, webhook_id: int, payload: WebhookPatch) -> Any:
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    data = {key: value for key, value in _payload(payload).items() if value is not None or key == "filter"}
    try:
        cleaned = validate_webhook(data, partial=True)
    except WebhookError as exc:
        return _errors(exc)
    return _out(webhook_save(webhook, cleaned))


@router.delete("/webhooks/{webhook_id}", response={204: None})
def webhooks_delete(request: HttpRequest, webhook_id: int) -> Any:
    webhook_delete(get_object_or_404(Webhook, pk=webhook_id))
    return Status(204, None)


@router.post("/webhooks/{webhook_id}/rotate-secret", response=SecretOut)
def webhooks_rotate_secret(request: HttpRequest, webhook_id: int) -> Any:
    return {"secret": webhook_rotate_secret(get_object_or_404(Webhook, pk=webhook_id))}


@router.post("/webhooks/{webhook_id}/test", response={202: Accepted})
def webhooks_test(request: HttpRequest, webhook_id: int) -> Any:
    webhook_send_test(get_object_or_404(Webhook, pk=webhook_id))
    return Status(202, {"detail": "A webhook.test message is on its way."})


@router.get("/webhooks/{webhook_id}/deliveries", response=DeliveryListOut)
def webhooks_deliveries(request: HttpRequest, webhook_id: int,
                        status: Literal["pending", "succeeded", "failed"] | None = None, limit: int = 100,
                        offset: int = 0) -> Any:
    """Newest first, a page at a time (``limit`` ≤ 1000, ``offset``); ``count`` is the total."""
    webhook = get_object_or_404(Webhook, pk=webhook_id)
    deliveries = Delivery.objects.filter(webhook=webhook)
    if status:
        deliveries = deliveries.filter(status=status)
    limit = max(1, min(limit, 1000))
    offset = max(0, offset)
    page = list(deliveries.order_by("-id")[offset:offset + limit])
    return {"results": page, "count": deliveries.count()}


@router.post("/webhooks/deliveries/{delivery_id}/replay", response={202: DeliveryOut})
def deliveries_replay(request: HttpRequest, delivery_id: int) -> Any:
    return Status(202, delivery_replay(get_object_or_404(Delivery, pk=delivery_id)))
