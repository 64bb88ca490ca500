"""Outbound webhooks: the endpoints admins subscribe, and one delivery row per (message, endpoint).

A message comes from the outbox (``core.outbox``); the fan-out turns it into deliveries with their
final body, and the sender works the deliveries that are due (``next_attempt_at``), so retries wait
in the database, not in a sleeping worker.
"""

from __future__ import annotations

import base64
import re
import secrets as secrets_module
from datetime import datetime

import pghistory
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, ngettext, pgettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

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
    "segment.entered": _("A contact joins a segment"),
    "segment.exited": _("A contact leaves a segment"),
    "lead.temperature_changed": _("Lead temperature changes (cold / warm / hot)"),
    "loyalty.tier_changed": _("Loyalty tier changes"),
    "funnel.stage_changed": _("Funnel stage changes"),
    "consent.changed": _("A consent is given or withdrawn"),
    "contact.erased": _("A contact is erased (GDPR; the email's hash only)"),
    "rule.fired": _("A rule fires (rules with a “Send to webhook” action)"),
    "webhook.test": _("Test messages"),
}
# Types an admin subscribes to; rule.fired and webhook.test reach their one webhook regardless.
SUBSCRIBABLE_TYPES = EVENT_TYPES[:7]
# Messages addressed to one webhook (``data.webhook_id``) rather than to its subscribers.
TARGETED_TYPES = ("rule.fired", "webhook.test")


# What the worker stores in English (it has no reader, so no language): errors and the reason the
# system switched a webhook off. The pages show the ones known here in the reader's language; the
# rest (an exception's own text, a receiver's answer) stays as stored.
_STORED_TEXTS = {
    "The receiver answered 410 Gone": _("The receiver answered 410 Gone"),
    "The webhook was switched off": _("The webhook was switched off"),
}
_STORED_PATTERNS = (
    (re.compile(r"Every delivery failed for (\d+) days"),
     lambda n: ngettext("Every delivery failed for %(days)d day", "Every delivery failed for %(days)d days",
                        int(n)) % {"days": int(n)}),
    (re.compile(r"Timed out after (\d+) s"), lambda n: gettext("Timed out after %(seconds)s s") % {"seconds": n}),
    (re.compile(r"HTTP (\d+) \(redirects are not followed\)"),
     lambda code: gettext("HTTP %(code)s (redirects are not followed)") % {"code": code}),
    (re.compile(r"Refused: the URL (.*)", re.DOTALL),
     lambda reason: gettext("Refused: the URL %(reason)s") % {"reason": _unsafe_url_reason(reason)}),
)
# Why the SSRF guard refused a URL (``webhooks.ssrf``'s messages, as the worker stored them).
_UNSAFE_URL_REASONS = (
    (re.compile(r"is required"), lambda: pgettext("webhook URL", "is required")),
    (re.compile(r"may be at most 2000 characters"), lambda: gettext("may be at most 2000 characters")),
    (re.compile(r"must start with http:// or https://"), lambda: gettext("must start with http:// or https://")),
    (re.compile(r"has no host"), lambda: gettext("has no host")),
    (re.compile(r"may not contain a user name or password"), lambda: gettext("may not contain a user name or password")),
    (re.compile(r"is not a valid URL \((.*)\)", re.DOTALL),
     lambda error: gettext("is not a valid URL (%(error)s)") % {"error": error}),
    (re.compile(r"host (\S+) does not resolve \((.*)\)", re.DOTALL),
     lambda host, error: gettext("host %(host)s does not resolve (%(error)s)") % {"host": host, "error": error}),
    (re.compile(r"host (\S+) does not resolve"), lambda host: gettext("host %(host)s does not resolve") % {"host": host}),
    (re.compile(r"resolves to (\S+), a loopback, private or link-local address \(allow it with MH_WEBHOOK_ALLOWED_NETS\)"),
     lambda address: gettext("resolves to %(address)s, a loopback, private or link-local address (allow it with "
                             "MH_WEBHOOK_ALLOWED_NETS)") % {"address": address}),
)


def _unsafe_url_reason(reason: str) -> str:
    for pattern, translate in _UNSAFE_URL_REASONS:
        match = pattern.fullmatch(reason)
        if match:
            return translate(*match.groups())
    return reason


def stored_text(text: str) -> str:
    """A stored English error or reason in the active language, when it is one the worker writes."""
    if text in _STORED_TEXTS:
        return str(_STORED_TEXTS[text])
    for pattern, translate in _STORED_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return translate(*match.groups())
    return text


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
    def disabled_reason_display(self) -> str:
        return stored_text(self.disabled_reason)

    @property
    def filter(self) -> dict:
        return {"segment_ids": list(self.segment_ids), "programs": list(self.program_ids),
                "funnels": list(self.funnel_ids)}


class Delivery(models.Model):
    """One message to one webhook: its exact body, where it stands, and its last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("delivery status", "Pending")
        SUCCEEDED = "succeeded", pgettext_lazy("delivery status", "Succeeded")
        FAILED = "failed", pgettext_lazy("delivery status", "Failed")

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

    @property
    def last_error_display(self) -> str:
        return stored_text(self.last_error)
