"""Sources (write keys for Segment-compatible libraries), the identities they link to contacts
and anonymous profiles, and what the live debugger shows."""

from __future__ import annotations

import hashlib
import re
import secrets

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _


class SourceQuerySet(models.QuerySet):
    def active(self) -> SourceQuerySet:
        return self.filter(revoked_at__isnull=True)


class Source(models.Model):
    """Where tracked messages come from. A server key is a secret; a browser key is public (it
    sits in the shop's pages), so a browser source only answers its allowed origins and may not
    set consents. Only the key's SHA-256 is stored; the key itself is shown once."""

    KIND_SERVER = "server"
    KIND_BROWSER = "browser"
    KINDS = [(KIND_SERVER, _("Server (secret key)")), (KIND_BROWSER, _("Browser (public key, allowed origins)"))]

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=KINDS)
    key_prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a key in lists.")
    key_hash = models.CharField(max_length=64, unique=True)
    allowed_origins = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SourceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @staticmethod
    def new_key() -> str:
        return "mhw_" + secrets.token_urlsafe(24)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_browser(self) -> bool:
        return self.kind == self.KIND_BROWSER


class Identity(models.Model):
    """An id a tracking library knows a person by, linked to the contact it resolved to. The same
    id is one person across sources (a shop's server and browser sources share user ids)."""

    KIND_USER = "user"
    KIND_ANONYMOUS = "anonymous"
    KINDS = [(KIND_USER, "userId"), (KIND_ANONYMOUS, "anonymousId")]

    kind = models.CharField(max_length=10, choices=KINDS)
    value = models.CharField(max_length=200)
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="identities")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="tracking_identity_kind_value_uniq")]
        indexes = [models.Index(fields=["contact"], name="tracking_identity_contact_idx")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class MessageReceipt(models.Model):
    """The idempotency key of an identify, alias or group message (track, page and screen keep
    theirs in the events' receipts)."""

    key = models.CharField(max_length=160, primary_key=True)
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class MessageLog(models.Model):
    """The live debugger: the last messages of each source (capped, see ``LOG_KEEP``)."""

    LOG_KEEP = 100
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    STATUSES = [(ACCEPTED, pgettext_lazy("tracked message", "Accepted")), (DUPLICATE, pgettext_lazy("tracked message", "Duplicate")),
                (REJECTED, pgettext_lazy("tracked message", "Rejected"))]

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="log")
    received_at = models.DateTimeField(default=timezone.now)
    message_type = models.CharField(max_length=20, blank=True, default="")
    message_id = models.CharField(max_length=200, blank=True, default="")
    label = models.CharField(max_length=200, blank=True, default="", help_text="Event or page name.")
    status = models.CharField(max_length=10, choices=STATUSES)
    reason = models.TextField(blank=True, default="")
    event_type = models.CharField(max_length=20, blank=True, default="")
    event_id = models.CharField(max_length=160, blank=True, default="")
    contact = models.ForeignKey("contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    visitor = models.CharField(max_length=200, blank=True, default="", help_text="userId or anonymousId.")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["source", "-id"], name="tracking_log_source_idx")]

    def __str__(self) -> str:
        return f"{self.status} {self.message_type} {self.message_id}"

    @property
    def reason_display(self) -> str:
        return stored_reason(self.reason)


# The debugger's reasons are written in English by the intake (a machine's request has no reader's
# language). The page shows the ones known here in the reader's language; a validation message
# naming a field ("properties.total: must be a number") stays as the API returned it.
_STORED_REASONS = {
    "linked the visitor: its anonymous profile merges into the contact":
        _("linked the visitor: its anonymous profile merges into the contact"),
    "this visitor was erased at the person's request (GDPR); dropped":
        _("this visitor was erased at the person's request (GDPR); dropped"),
    "reached the visitor's anonymous profile": _("reached the visitor's anonymous profile"),
    "this email was erased at the person's request (GDPR); not re-created":
        _("this email was erased at the person's request (GDPR); not re-created"),
    "the body is not a JSON object": _("the body is not a JSON object"),
    "batch must be a list of messages": _("batch must be a list of messages"),
    "another message of the batch was invalid (all-or-nothing)":
        _("another message of the batch was invalid (all-or-nothing)"),
    "invalid request": _("invalid request"),
}
_STORED_REASON_PATTERNS = (
    (re.compile(r"origin (.+) is not allowed for this browser source"),
     lambda origin: gettext("origin %(origin)s is not allowed for this browser source")
     % {"origin": gettext("(none)") if origin == "(none)" else origin}),
    (re.compile(r"request of ([\d,]+) bytes: above (\d+) KB"),
     lambda size, limit: gettext("request of %(size)s bytes: above %(limit)s KB") % {"size": size, "limit": limit}),
)


def stored_reason(reason: str) -> str:
    """A debugger reason in the active language, when it is one of the fixed ones."""
    if reason in _STORED_REASONS:
        return str(_STORED_REASONS[reason])
    for pattern, translate in _STORED_REASON_PATTERNS:
        match = pattern.fullmatch(reason)
        if match:
            return translate(*match.groups())
    return reason


class HourlyCount(models.Model):
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    accepted = models.IntegerField(default=0)
    duplicates = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "hour"], name="tracking_hourly_source_hour_uniq")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.hour:%Y-%m-%d %H}:00"
