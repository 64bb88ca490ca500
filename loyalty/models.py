from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Program(models.Model):
    """A loyalty programme: a metric (API contract's Metric JSON) and ordered tiers."""

    class Downgrade(models.TextChoices):
        IMMEDIATE = "immediate", "Immediately"
        GRACE = "grace", "After a grace period"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    metric = models.JSONField(help_text='e.g. {"type": "tag_score", "tag": "PURCHASE"}')
    downgrade_policy = models.CharField(max_length=10, choices=Downgrade.choices, default=Downgrade.IMMEDIATE)
    grace_days = models.PositiveIntegerField(default=0)
    version = models.BigIntegerField(default=0, help_text="Bumped by every full recompute.")
    recomputed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tier(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    name = models.CharField(max_length=100)
    min = models.DecimalField(max_digits=14, decimal_places=2)
    benefits = models.JSONField(default=dict, blank=True, help_text='e.g. {"discount_percent": 5}')

    class Meta:
        ordering = ["program", "min"]
        constraints = [
            models.UniqueConstraint(fields=["program", "name"], name="tier_unique_name"),
            models.UniqueConstraint(fields=["program", "min"], name="tier_unique_min"),
        ]

    def __str__(self) -> str:
        return self.name


class ContactTier(models.Model):
    """A contact's current tier in a programme (null: below the lowest tier)."""

    pk = models.CompositePrimaryKey("program_id", "contact_id")
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="contact_tiers")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="loyalty_tiers")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metric_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    since = models.DateTimeField(default=timezone.now)
    # Grace-period downgrades: the lower tier the contact will drop to, and when.
    pending_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    downgrade_due_at = models.DateTimeField(null=True, blank=True)
    pinned_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pinned_until = models.DateField(null=True, blank=True)
    version = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["program", "tier"], include=["contact"], name="contacttier_tier_idx")]


class TierChange(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tier_changes")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.CharField(max_length=100, blank=True, default="")
    to_tier = models.CharField(max_length=100, blank=True, default="")
    reason = models.CharField(max_length=200, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["program", "created_at"], name="tierchange_program_idx")]
