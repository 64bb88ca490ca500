from __future__ import annotations

import pghistory
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


# Who changed a programme or its tiers, and how, is kept by pghistory triggers (the audit trail of
# thresholds). The recompute's own bookkeeping (version, recomputed_at) is not audited.
@pghistory.track(
    pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent(),
    exclude=["version", "recomputed_at", "updated_at"],
)
class Program(models.Model):
    """A loyalty programme: a metric (API contract's Metric JSON) and ordered tiers."""

    class Downgrade(models.TextChoices):
        IMMEDIATE = "immediate", _("Immediately")
        GRACE = "grace", _("After a grace period")

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    metric = models.JSONField(help_text='e.g. {"type": "tag_score", "tag": "PURCHASE"}')
    downgrade_policy = models.CharField(max_length=10, choices=Downgrade.choices, default=Downgrade.IMMEDIATE)
    grace_days = models.PositiveIntegerField(default=0)
    # Switched off: tiers stay as they are (frozen) — no recompute, no refresh by events, no due
    # downgrades — until it is switched on again, which recomputes it.
    active = models.BooleanField(default=True)
    version = models.BigIntegerField(default=0, help_text="Bumped by every full recompute.")
    recomputed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TierQuerySet(models.QuerySet):
    def active(self) -> TierQuerySet:
        return self.filter(retired=False)


@pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent())
class Tier(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    name = models.CharField(max_length=100)
    min = models.DecimalField(max_digits=14, decimal_places=2)
    benefits = models.JSONField(default=dict, blank=True, help_text='e.g. {"discount_percent": 5}')
    # A tier removed in the editor stays (retired) until the next recompute has moved its contacts,
    # so their change history can still say "from Gold"; the recompute then deletes it.
    retired = models.BooleanField(default=False)

    objects = TierQuerySet.as_manager()

    class Meta:
        ordering = ["program", "min"]
        constraints = [
            # Checked at the end of each statement, so one UPDATE may swap two tiers' names.
            # Thresholds are unique among active tiers; services.tiers_check enforces it under
            # the programme's row lock (a retired tier may share a threshold with its successor).
            models.UniqueConstraint(
                fields=["program", "name"], name="tier_unique_name", deferrable=models.Deferrable.IMMEDIATE
            ),
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
    pinned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pinned_note = models.CharField(max_length=200, blank=True, default="")
    version = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["program", "tier"], include=["contact"], name="contacttier_tier_idx"),
            # The scheduled job looks only at rows with a due downgrade or a pin that ends.
            models.Index(
                fields=["program", "downgrade_due_at"], name="contacttier_due_idx",
                condition=models.Q(downgrade_due_at__isnull=False),
            ),
            models.Index(
                fields=["program", "pinned_until"], name="contacttier_pin_idx",
                condition=models.Q(pinned_tier__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.program_id}:{self.contact_id}→{self.tier_id}"


class TierChange(models.Model):
    UP = 1
    DOWN = -1

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tier_changes")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.CharField(max_length=100, blank=True, default="")
    to_tier = models.CharField(max_length=100, blank=True, default="")
    direction = models.SmallIntegerField(default=0, help_text="1 up, -1 down (by the tiers' thresholds).")
    reason = models.CharField(max_length=200, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["program", "created_at"], name="tierchange_program_idx")]

    def __str__(self) -> str:
        return f"{self.from_tier or '—'} → {self.to_tier or '—'}"
