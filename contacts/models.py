from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

_WHITESPACE = re.compile(r"\s+")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def normalize_tag_name(name: str) -> str:
    """Trimmed, inner whitespace collapsed: the spelling a new tag is created with."""
    return _WHITESPACE.sub(" ", (name or "").strip())


def tag_key(name: str) -> str:
    """The case-insensitive identity of a tag name."""
    return normalize_tag_name(name).lower()


def email_hash(email: str) -> str:
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()


class Contact(models.Model):
    class LeadStatus(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    email = models.CharField(max_length=254, unique=True, help_text="Stored trimmed and lower-case.")
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    phone = models.CharField(max_length=40, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2, upper-case.")
    city = models.CharField(max_length=100, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_contacts"
    )
    # The lead score, maintained from the ledger (leads.ScoreChange) in the same statement batch.
    score = models.IntegerField(default=0)
    lead_status = models.CharField(max_length=12, choices=LeadStatus.choices, default=LeadStatus.NEW)
    lead_status_reason = models.TextField(blank=True, default="")
    lead_status_changed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["-score", "id"], name="contact_score_idx"),
            models.Index(fields=["last_activity_at"], name="contact_last_activity_idx"),
            models.Index(fields=["created_at"], name="contact_created_idx"),
            models.Index(fields=["owner", "-score"], name="contact_owner_score_idx"),
            models.Index(fields=["country", "city"], name="contact_country_city_idx"),
            models.Index(Lower("city"), name="contact_city_lower_idx"),
            models.Index(fields=["birth_date"], name="contact_birth_date_idx"),
            models.Index(fields=["lead_status", "-score"], name="contact_status_score_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Tag(models.Model):
    name = models.CharField(max_length=100, help_text="The spelling the tag was first created with.")
    key = models.CharField(max_length=100, unique=True, help_text="Lower-case name: tags match case-insensitively.")
    description = models.TextField(blank=True, default="")
    colour = models.CharField(max_length=7, blank=True, default="", help_text="#rrggbb")
    # Optional tag-score decay: scores halve every ``half_life_days`` (leads.tasks applies it).
    half_life_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContactTag(models.Model):
    """A tag on a contact with its score. The composite key is the natural one."""

    pk = models.CompositePrimaryKey("contact_id", "tag_id")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="contact_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="contact_tags")
    score = models.IntegerField(default=1)
    first_assigned_at = models.DateTimeField(default=timezone.now)
    last_assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tag", "score"], include=["contact"], name="contacttag_tag_score_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.tag_id}={self.score}"


class TagScoreChange(models.Model):
    """Every change of a tag score on a contact: by whom or by which rule, how much, when."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Manual"
        BULK = "bulk", "Bulk action"
        RULE = "rule", "Rule"
        IMPORT = "import", "Import"
        API = "api", "API"
        MERGE = "merge", "Tag merge"
        DECAY = "decay", "Decay"
        REMOVED = "removed", "Removed"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="tag_score_changes")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="score_changes")
    delta = models.IntegerField()
    score_after = models.IntegerField(help_text="0 when the tag was removed.")
    source = models.CharField(max_length=10, choices=Source.choices)
    # A plain id, not a foreign key: contacts must not depend on automation's tables, and the
    # history keeps the id of a rule that was deleted since.
    rule_id = models.BigIntegerField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    event_pk = models.BigIntegerField(null=True, blank=True, help_text="automation.Event id that caused it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["contact", "tag", "-created_at"], name="tagchange_contact_tag_idx"),
            models.Index(fields=["event_pk"], name="tagchange_event_idx", condition=models.Q(event_pk__isnull=False)),
        ]


class Note(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="note_contact_idx")]


class Consent(models.Model):
    """The current consent state of one channel for one contact."""

    pk = models.CompositePrimaryKey("contact_id", "channel")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=32)
    granted = models.BooleanField()
    source = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["channel", "granted"], include=["contact"], name="consent_channel_idx")]


class ConsentChange(models.Model):
    """Append-only history of consent: what, when and where it was given or withdrawn (GDPR)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=32)
    granted = models.BooleanField()
    source = models.CharField(max_length=100, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="consentchange_contact_idx")]


class Suppression(models.Model):
    """An erased contact's email hash: ingestion does not silently re-create it without new consent."""

    email_hash = models.CharField(max_length=64, primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=100, default="gdpr_erasure")
