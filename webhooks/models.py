"""Outbound webhooks: the endpoints admins subscribe, and one delivery row per (message, endpoint).

A message comes from the outbox (``core.outbox``); the fan-out turns it into deliveries with their
final body, and the sender works the deliveries that are due (``next_attempt_at``), so retries wait
in the database, not in a sleeping worker.
"""

from __future__ import annotations

import base64
import secrets as secrets_module
from datetime import datetime

import pghistory
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

# The contract's event types, in the order the editor lists them.
EVENT_TYPES = (
    "segment.entered",
    "segment.exited",
    "lead.temperature_changed",
    "loyalty.tier_changed",
    "funnel.stage_changed",
    "consent.changed",
    "contact.erased",
    "rule.fired",
    "webhook.test",
)
EVENT_LABELS = {
    "segment.entered": "A contact joins a segment",
    "segment.exited": "A contact leaves a segment",
    "lead.temperature_changed": "Lead temperature changes (cold / warm / hot)",
    "loyalty.tier_changed": "Loyalty tier changes",
    "funnel.stage_changed": "Funnel stage changes",
    "consent.changed": "A consent is given or withdrawn",
    "contact.erased": "A contact is erased (GDPR; the email's hash only)",
    "rule.fired": "A rule fires (rules with a “Send to webhook” action)",
    "webhook.test": "Test messages",
}
# Types an admin subscribes to; rule.fired and webhook.test reach their one webhook regardless.
SUBSCRIBABLE_TYPES = EVENT_TYPES[:7]
# Messages addressed to one webhook (``data.webhook_id``) rather than to its subscribers.
TARGETED_TYPES = ("rule.fired", "webhook.test")


def secret_new() -> str:
    """``whsec_`` + base64 of 32 random bytes, as Standard Webhooks libraries expect."""
    return "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()


def _audited() -> tuple:
    return pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent()


# Who created, changed, switched, rotated or deleted a webhook is kept by pghistory triggers
# (the "Change history" page reads it). Secrets are never copied into the history.
@pghistory.track(
    *_audited(),
    fields=["name", "url", "description", "events", "segment_ids", "program_ids", "funnel_ids", "active",
            "disabled_reason", "secret_rotated_at"],
    model_name="WebhookEvent",
)
class Webhook(models.Model):
    name = models.CharField(max_length=200, help_text="The description, or the URL's host when there is none.")
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    events = ArrayField(models.CharField(max_length=40), default=list)
    # Filters: an empty list means every segment / programme / funnel.
    segment_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    program_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    funnel_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, default=secret_new)
    # After a rotation the previous secret signs too, until this moment (24 h).
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # Why the system switched it off (410 Gone, failing for 5 days); empty when a person did.
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Since when every delivery failed (cleared by a success): 5 days of it switch the webhook off.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        now = now or timezone.now()
        keys = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            keys.append(self.previous_secret)
        return keys

    @property
    def filter(self) -> dict:
        return {"segment_ids": list(self.segment_ids), "programs": list(self.program_ids),
                "funnels": list(self.funnel_ids)}


class Delivery(models.Model):
    """One message to one webhook: its exact body, where it stands, and its last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    # The Standard Webhooks ``webhook-id``: the same on every retry and replay.
    message_id = models.CharField(max_length=64)
    type = models.CharField(max_length=40)
    contact_id = models.BigIntegerField(null=True, blank=True)
    # rule.fired: the rule and the event that fired it (the contact's timeline shows the call).
    rule_id = models.BigIntegerField(null=True, blank=True)
    event_pk = models.BigIntegerField(null=True, blank=True)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    # When the sender takes it next. While an attempt runs it is the end of the attempt's lease:
    # a worker killed mid-send leaves the row to be taken again then, with the same webhook-id.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_request_headers = models.JSONField(default=dict, blank=True)
    last_response_body = models.TextField(blank=True, default="")
    last_latency_ms = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["webhook", "-id"], name="delivery_webhook_idx"),
            models.Index(fields=["webhook", "next_attempt_at"], name="delivery_due_idx",
                         condition=models.Q(status="pending")),
            models.Index(fields=["webhook", "status", "-id"], name="delivery_webhook_status_idx"),
            models.Index(fields=["contact_id", "event_pk"], name="delivery_contact_idx",
                         condition=models.Q(type="rule.fired")),
        ]

    def __str__(self) -> str:
        return f"{self.type} → webhook {self.webhook_id} ({self.status})"
