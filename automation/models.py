from __future__ import annotations

import pghistory
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import EVENT_TYPE_CHOICES


class EventReceipt(models.Model):
    """One row per accepted ``event_id``: the idempotency key (an ``event_id`` seen before is a
    duplicate) and where the event is. Written once, never updated: what still waits for the
    rules engine is in :class:`PendingEvent`."""

    event_id = models.CharField(max_length=128, primary_key=True)
    event_pk = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    # No database constraint: a receipt is written by the same statement as its event, whose
    # foreign key already proves the contact exists; a second check per row (and its row lock on
    # the contact, shared with the rules engine's) cost an ingest request a tenth of its time.
    # Erasure deletes receipts through the ORM's cascade (``Contact.delete()``).
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, db_constraint=False)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["event_pk"], name="receipt_event_pk_idx")]

    def __str__(self) -> str:
        return self.event_id


class PendingEvent(models.Model):
    """An accepted event whose rules have not been applied yet, or that failed for good
    (``failed``, with its error: visible on the Events page with a retry button).

    A small queue: ingestion inserts a row per new event, the rules engine claims rows
    (``FOR UPDATE SKIP LOCKED``) and deletes them in the transaction that applies the events. A
    per-event UPDATE of an ever-growing receipts table cost the engine a sixth of its time at a
    million contacts (three index entries per row version on an 18M-row table).
    ``events/status`` counts these rows.
    """

    event_pk = models.BigIntegerField(primary_key=True)
    event_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField()
    # No index of its own (the queue is small: an erasure finds its rows by a scan) and no database
    # constraint (as for receipts: written with the event, whose foreign key checks the contact).
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, db_index=False, db_constraint=False)
    received_at = models.DateTimeField(default=timezone.now)
    attempts = models.SmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    failed = models.BooleanField(default=False)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["received_at"], name="pending_waiting_idx", condition=models.Q(failed=False)),
            models.Index(fields=["received_at"], name="pending_failed_idx", condition=models.Q(failed=True)),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} ({'failed' if self.failed else 'waiting'})"


# Who created, changed, switched or deleted a rule or a matrix, and what it said then, is kept by
# pghistory triggers (automation/history.py reads it). Only people change these rows.
# (Fresh trackers per model: pghistory fills a tracker's fields in for the model it tracks.)
def _audited() -> tuple:
    return pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent()


@pghistory.track(*_audited(), exclude=["updated_at", "created_by", "created_at"])
class Rule(models.Model):
    """An automation rule: when an event of ``event_type`` matching ``conditions`` happens, run
    ``actions``. Both are JSON as in the API contract."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    active = models.BooleanField(default=True)
    event_type = models.CharField(max_length=20, choices=EVENT_TYPE_CHOICES)
    conditions = models.JSONField(default=list, blank=True)
    actions = models.JSONField(default=list)
    once_per_contact = models.BooleanField(default=False, help_text="Fire at most once for each contact.")
    max_points_per_contact = models.IntegerField(
        null=True, blank=True, help_text="Cap on the points this rule may give one contact in total."
    )
    activated_at = models.DateTimeField(null=True, blank=True, help_text="Events accepted from then on apply.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["event_type"], name="rule_active_type_idx", condition=models.Q(active=True))]

    def __str__(self) -> str:
        return self.name

    @property
    def summary(self) -> str:
        """The rule in plain words ("When a purchase happens, add tag PURCHASE +1.")."""
        # local import: automation.rules imports this module (it validates and saves Rule)
        from automation.rules import rule_summary

        return rule_summary(
            event_type=self.event_type,
            conditions=self.conditions or [],
            actions=self.actions or [],
            once_per_contact=self.once_per_contact,
            max_points_per_contact=self.max_points_per_contact,
        )


class RuleApplication(models.Model):
    """That ``rule`` took effect for the event ``event_pk``: the at-most-once guard."""

    pk = models.CompositePrimaryKey("rule_id", "event_pk")
    # One guard row per rule firing: the primary key (rule, event) and ruleapp_rule_contact_idx
    # serve look-ups by rule, ruleapp_contact_idx by contact — no separate foreign-key indexes.
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="applications", db_index=False)
    event_pk = models.BigIntegerField()
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="rule_applications",
                                db_index=False)
    points = models.IntegerField(default=0)
    applied_at = models.DateTimeField(default=timezone.now)
    # Set for rules that fire once per contact: the partial unique index below then refuses a
    # second application for the same contact even from a concurrent transaction (a backfill job
    # racing the engine), where a NOT EXISTS check alone could not.
    once = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["rule", "contact"], name="ruleapp_rule_contact_idx"),
            models.Index(fields=["rule", "applied_at"], name="ruleapp_rule_time_idx"),
            models.Index(fields=["contact"], name="ruleapp_contact_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "contact"], condition=models.Q(once=True), name="ruleapp_once_per_contact"
            ),
        ]

    def __str__(self) -> str:
        return f"rule {self.rule_id} × event {self.event_pk}"


@pghistory.track(*_audited(), exclude=["updated_at", "created_by", "created_at"])
class SegmentationMatrix(models.Model):
    """Maps values of one event property to tags: many tagging rules in one table."""

    class Match(models.TextChoices):
        EQUALS = "eq", _("equals")
        PREFIX = "prefix", _("starts with")
        CONTAINS = "contains", _("contains")

    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    event_type = models.CharField(max_length=20, choices=EVENT_TYPE_CHOICES)
    property = models.CharField(max_length=64, help_text="e.g. category or url")
    match = models.CharField(max_length=10, choices=Match.choices, default=Match.EQUALS)
    # [{"value": "/diamenty", "tag": "Diamenty", "score": 1}, ...]
    rows = models.JSONField(default=list)
    activated_at = models.DateTimeField(null=True, blank=True, help_text="Events accepted from then on apply.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MatrixApplication(models.Model):
    """That ``matrix`` tagged the event ``event_pk``: the at-most-once guard of matrices."""

    pk = models.CompositePrimaryKey("matrix_id", "event_pk")
    matrix = models.ForeignKey(SegmentationMatrix, on_delete=models.CASCADE, related_name="applications")
    event_pk = models.BigIntegerField()
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+")
    applied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["matrix", "applied_at"], name="matrixapp_time_idx")]

    def __str__(self) -> str:
        return f"matrix {self.matrix_id} × event {self.event_pk}"
