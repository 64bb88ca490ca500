"""Webhook workflows shared by the API and the pages: validation, create/update/rotate/test/delete,
replay, the health line and the delivery log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.outbox import OutboxMessage
from webhooks.delivery import deliveries_end_pending
from webhooks.models import SUBSCRIBABLE_TYPES, Delivery, Webhook, secret_new, stored_text
from webhooks.ssrf import UnsafeUrl, check_url
from webhooks.tasks import webhooks_pump_enqueue

ROTATION_OVERLAP = timedelta(hours=24)
MAX_FILTER_ITEMS = 200


class WebhookError(ValueError):
    """Invalid webhook input: ``errors`` is a list of (dotted field path, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


# --- validation (the API schema and the form both call these) -------------------------------------
def clean_url(value: Any) -> str:
    """An http(s) URL whose host resolves only to allowed addresses (``webhooks.ssrf``)."""
    if not isinstance(value, str):
        raise UnsafeUrl("must be a text")
    check_url(value.strip())
    return value.strip()


def clean_events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of event types")
    unknown = [item for item in value if item not in SUBSCRIBABLE_TYPES]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}; one of {', '.join(SUBSCRIBABLE_TYPES)}")
    return [kind for kind in SUBSCRIBABLE_TYPES if kind in value]


def _ids_or_names(value: Any, *, model_name: str, table: str, field: str) -> list[int]:
    """A filter list: ids, or names (matched case-insensitively), → existing ids."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookError([(field, "must be a list")])
    if len(value) > MAX_FILTER_ITEMS:
        raise WebhookError([(field, f"may hold at most {MAX_FILTER_ITEMS} items")])
    ids: list[int] = []
    names: list[str] = []
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, str)) or (isinstance(item, str) and not item.strip()):
            raise WebhookError([(f"{field}.{index}", f"must be a {model_name} id or name")])
        (ids if isinstance(item, int) else names).append(item)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, lower(name) FROM {table} WHERE id = ANY(%s::bigint[]) OR lower(name) = ANY(%s::text[])",
            [[i for i in ids if abs(i) < 2**63], [name.strip().lower() for name in names]],
        )
        found = cursor.fetchall()
    found_ids = {row[0] for row in found}
    found_names = {row[1]: row[0] for row in found}
    for index, item in enumerate(value):
        if isinstance(item, int) and item not in found_ids:
            raise WebhookError([(f"{field}.{index}", f"no {model_name} with id {item}")])
        if isinstance(item, str) and item.strip().lower() not in found_names:
            raise WebhookError([(f"{field}.{index}", f"no {model_name} named {item.strip()!r}")])
    resolved = [item if isinstance(item, int) else found_names[item.strip().lower()] for item in value]
    return sorted(set(resolved))


def clean_filter(value: Any) -> dict[str, list[int]]:
    if value is None:
        return {"segment_ids": [], "program_ids": [], "funnel_ids": []}
    if not isinstance(value, dict):
        raise WebhookError([("filter", "must be an object")])
    unknown = sorted(set(value) - {"segment_ids", "programs", "funnels"})
    if unknown:
        raise WebhookError([(f"filter.{unknown[0]}", "is not a filter (segment_ids, programs, funnels)")])
    return {
        "segment_ids": _ids_or_names(value.get("segment_ids"), model_name="segment", table="segments_segment",
                                     field="filter.segment_ids"),
        "program_ids": _ids_or_names(value.get("programs"), model_name="programme", table="loyalty_program",
                                     field="filter.programs"),
        "funnel_ids": _ids_or_names(value.get("funnels"), model_name="funnel", table="leads_funnel",
                                    field="filter.funnels"),
    }


def validate_webhook(data: dict, *, partial: bool = False) -> dict:
    """Input (API body or form data in the API's shape) → model field values, or WebhookError."""
    errors: list[tuple[str, str]] = []
    cleaned: dict = {}
    if not partial or "url" in data:
        try:
            cleaned["url"] = clean_url(data.get("url"))
        except UnsafeUrl as exc:
            errors.append(("url", str(exc)))
    if not partial or "events" in data:
        try:
            cleaned["events"] = clean_events(data.get("events"))
        except ValueError as exc:
            errors.append(("events", str(exc)))
    if "description" in data:
        description = data["description"]
        if description is None:
            description = ""
        if not isinstance(description, str):
            errors.append(("description", "must be a text"))
        elif len(description.strip()) > 500:
            errors.append(("description", "may be at most 500 characters"))
        else:
            cleaned["description"] = description.strip()
    if "active" in data:
        if not isinstance(data["active"], bool):
            errors.append(("active", "must be true or false"))
        else:
            cleaned["active"] = data["active"]
    if "filter" in data or not partial:
        try:
            cleaned.update(clean_filter(data.get("filter")))
        except WebhookError as exc:
            errors.extend(exc.errors)
    if errors:
        raise WebhookError(errors)
    return cleaned


# --- writes ---------------------------------------------------------------------------------------
def _name(webhook: Webhook) -> str:
    return (webhook.description.strip() or urlsplit(webhook.url).hostname or webhook.url)[:200]


def webhook_save(webhook: Webhook | None, cleaned: dict, *, user: Any = None) -> Webhook:
    """Create or update from validated fields. Switching on clears the reason it was switched off."""
    now = timezone.now()
    with transaction.atomic():
        if webhook is None:
            webhook = Webhook(created_at=now, created_by=user if getattr(user, "is_authenticated", False) else None)
        was_active = webhook.active if webhook.pk else None
        for key, value in cleaned.items():
            setattr(webhook, key, value)
        if webhook.active and not was_active:
            webhook.disabled_reason, webhook.disabled_at, webhook.failing_since = "", None, None
        if was_active and not webhook.active:
            webhook.disabled_at = now
        webhook.name = _name(webhook)
        webhook.updated_at = now
        webhook.save()
        if was_active and not webhook.active:
            deliveries_end_pending([webhook.pk])
    return webhook


def webhook_rotate_secret(webhook: Webhook) -> str:
    """A new secret; the old one keeps signing for 24 hours (both signatures are sent)."""
    now = timezone.now()
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_expires_at = now + ROTATION_OVERLAP
    webhook.secret = secret_new()
    webhook.secret_rotated_at = now
    webhook.updated_at = now
    webhook.save(update_fields=["previous_secret", "previous_secret_expires_at", "secret", "secret_rotated_at",
                                "updated_at"])
    return webhook.secret


def webhook_send_test(webhook: Webhook) -> None:
    """Queue a ``webhook.test`` message to this webhook (through the outbox like every message)."""
    with transaction.atomic():
        OutboxMessage.objects.create(type="webhook.test", data={"webhook_id": webhook.pk})
        transaction.on_commit(webhooks_pump_enqueue)


def webhook_delete(webhook: Webhook) -> None:
    webhook.delete()


def delivery_replay(delivery: Delivery) -> Delivery:
    """Send the same message (same ``webhook-id``, same body) again, now, with a fresh schedule."""
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None
        )
        transaction.on_commit(webhooks_pump_enqueue)
    delivery.refresh_from_db()
    return delivery


def deliveries_replay_failed(*, webhook_id: int, since: datetime) -> int:
    """Every failed delivery of the webhook created since ``since`` back to pending: one UPDATE."""
    with transaction.atomic():
        count = Delivery.objects.filter(webhook_id=webhook_id, status=Delivery.Status.FAILED, created_at__gte=since) \
            .update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None)
        if count:
            transaction.on_commit(webhooks_pump_enqueue)
    return count


# --- reading --------------------------------------------------------------------------------------
@dataclass
class Health:
    sent_24h: int
    succeeded_24h: int
    pending: int
    last_error: str
    last_error_at: datetime | None

    @property
    def last_error_display(self) -> str:
        return stored_text(self.last_error)

    @property
    def success_rate(self) -> float | None:
        return None if not self.sent_24h else self.succeeded_24h / self.sent_24h


def webhooks_health(webhook_ids: list[int]) -> dict[int, Health]:
    """Per webhook: deliveries attempted in the last 24 h and how many succeeded, what waits, and
    the last error — two grouped queries over the deliveries' indexes."""
    if not webhook_ids:
        return {}
    since = timezone.now() - timedelta(hours=24)
    counts = {
        row["webhook_id"]: row
        for row in Delivery.objects.filter(webhook_id__in=webhook_ids)
        .filter(Q(last_attempt_at__gte=since) | Q(status=Delivery.Status.PENDING))
        .values("webhook_id")
        .annotate(
            sent=Count("id", filter=Q(last_attempt_at__gte=since) & ~Q(status=Delivery.Status.PENDING)),
            ok=Count("id", filter=Q(last_attempt_at__gte=since, status=Delivery.Status.SUCCEEDED)),
            pending=Count("id", filter=Q(status=Delivery.Status.PENDING)),
        )
    }
    errors: dict[int, tuple[str, datetime]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT w.id, e.last_error, e.last_attempt_at FROM unnest(%s::bigint[]) AS w(id)
            CROSS JOIN LATERAL (
                SELECT last_error, last_attempt_at FROM webhooks_delivery d
                WHERE d.webhook_id = w.id AND d.last_error <> ''
                ORDER BY d.id DESC LIMIT 1
            ) e
            """,
            [webhook_ids],
        )
        for webhook_id, error, at in cursor.fetchall():
            errors[webhook_id] = (error, at)
    health = {}
    for webhook_id in webhook_ids:
        row = counts.get(webhook_id, {})
        error, at = errors.get(webhook_id, ("", None))
        health[webhook_id] = Health(sent_24h=row.get("sent", 0), succeeded_24h=row.get("ok", 0),
                                    pending=row.get("pending", 0), last_error=error, last_error_at=at)
    return health


def switched_off_by_system() -> QuerySet[Webhook]:
    """Webhooks the system switched off (410, failing for days): the admins' warning."""
    return Webhook.objects.filter(active=False).exclude(disabled_reason="")
