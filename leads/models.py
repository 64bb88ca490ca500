from __future__ import annotations

import pghistory
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class ScoreChange(models.Model):
    """The lead-score ledger: every point change, its cause and time. ``Contact.score`` is the
    maintained sum; a full recompute from this table must equal it."""

    # Ledger rows are written for every rule firing and each index is paid per row: the contact's
    # look-ups use scorechange_contact_idx (it starts with contact), the user's index is partial.
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="score_changes",
                                db_index=False)
    delta = models.IntegerField()
    rule = models.ForeignKey("automation.Rule", null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False)
    event_pk = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["contact", "created_at"], name="scorechange_contact_idx"),
            models.Index(fields=["created_at"], name="scorechange_created_idx"),
            models.Index(fields=["user"], name="scorechange_user_idx", condition=models.Q(user__isnull=False)),
            models.Index(fields=["event_pk"], name="scorechange_event_idx", condition=models.Q(event_pk__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.delta:+d}"


@pghistory.track(
    pghistory.UpdateEvent(
        "changed",
        condition=pghistory.AnyChange("warm", "hot", "decay_enabled", "decay_half_life_days", "tag_decay_enabled"),
    ),
    fields=["warm", "hot", "decay_enabled", "decay_half_life_days", "tag_decay_enabled", "updated_by"],
    model_name="TemperatureSettingsEvent",
)
class TemperatureSettings(models.Model):
    """The single row (pk=1) of lead-temperature thresholds and decay settings."""

    warm = models.IntegerField(default=50)
    hot = models.IntegerField(default=100)
    decay_enabled = models.BooleanField(default=False)
    decay_half_life_days = models.PositiveIntegerField(default=90)
    # Ledger points whose k-th half-life ended before this moment have been decayed already.
    decay_applied_until = models.DateTimeField(null=True, blank=True)
    tag_decay_enabled = models.BooleanField(default=False)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"warm ≥ {self.warm}, hot ≥ {self.hot}"

    @classmethod
    def current(cls) -> TemperatureSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def temperature_of(self, score: int) -> str:
        if score >= self.hot:
            return "hot"
        if score >= self.warm:
            return "warm"
        return "cold"



class ScoreTrend(models.Model):
    """Points a contact gained in the last 7 and 30 days, kept for sorting hot leads by growth.

    ``score_add`` adds every change at once; points that age out of a window are subtracted by the
    scheduled ``score_trend_refresh`` (every few minutes), so the numbers are exact up to that lag.
    The card computes its own exact figures from the ledger.
    """

    contact = models.OneToOneField("contacts.Contact", on_delete=models.CASCADE, primary_key=True, related_name="score_trend")
    points_7d = models.IntegerField(default=0)
    points_30d = models.IntegerField(default=0)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["-points_7d"], include=["contact"], name="scoretrend_7d_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.points_7d:+d} in 7 days"


class TagDecayState(models.Model):
    """How far per-tag half-life decay has been applied (a watermark per tag)."""

    tag = models.OneToOneField("contacts.Tag", on_delete=models.CASCADE, primary_key=True, related_name="+")
    applied_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"tag {self.tag_id} decayed until {self.applied_until:%Y-%m-%d}"


class Funnel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="funnel_unique_name_ci")]

    def __str__(self) -> str:
        return self.name


class Stage(models.Model):
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["funnel", "position"]
        constraints = [
            models.UniqueConstraint(fields=["funnel", "name"], name="stage_unique_name"),
            models.UniqueConstraint(fields=["funnel", "position"], name="stage_unique_position"),
            models.UniqueConstraint("funnel", Lower("name"), name="stage_unique_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class ContactStage(models.Model):
    """Where a contact is in a funnel now."""

    pk = models.CompositePrimaryKey("contact_id", "funnel_id")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="funnel_stages")
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="contact_stages")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="contact_stages")
    entered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["stage"], include=["contact"], name="contactstage_stage_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id} in stage {self.stage_id}"


class StageTransition(models.Model):
    """Every move through a funnel, forwards or backwards, with its cause."""

    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="stage_transitions")
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="transitions")
    from_stage = models.ForeignKey(Stage, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    to_stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="+")
    cause = models.CharField(max_length=20, default="manual", help_text="manual, bulk, rule, api")
    rule = models.ForeignKey("automation.Rule", null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    event_pk = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Kept by the writers (``leads.funnels``) so that the report reads plain ranges instead of
    # ordering every contact's history on each view: when the stay this move began ended (the
    # contact's next move in this funnel; empty while it lasts), and when the contact last entered
    # the same stage before (empty the first time), which makes "distinct contacts who entered in
    # [start, end)" a count of the moves in the range whose previous entry lies before start.
    left_at = models.DateTimeField(null=True, blank=True)
    previous_entry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["funnel", "created_at"], name="transition_funnel_idx"),
            models.Index(fields=["contact", "funnel", "created_at"], name="transition_contact_idx"),
            # the report: one index-only range scan per stage
            models.Index(fields=["funnel", "to_stage", "created_at"], include=["contact", "left_at", "previous_entry_at"],
                         name="transition_report_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.from_stage_id} → {self.to_stage_id} ({self.cause})"


class LeadStatusChange(models.Model):
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="lead_status_changes")
    from_status = models.CharField(max_length=12, blank=True, default="")
    to_status = models.CharField(max_length=12)
    reason = models.TextField(blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.from_status} → {self.to_status}"


class Notification(models.Model):
    """An in-app alert for one user: "this lead became hot". Written set-based where the transition
    is detected (``leads.notifications``); emailed once, instantly or in a digest, by the worker."""

    KIND_LEAD_HOT = "lead_hot"
    KIND_CHOICES = [(KIND_LEAD_HOT, _("Lead became hot"))]

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lead_notifications",
                             db_index=False)
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default=KIND_LEAD_HOT)
    score = models.IntegerField(help_text="The lead score when the alert was raised.")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    # Email delivery: ``email_due`` is decided when the row is written (the user's settings then);
    # a worker claims rows by setting ``email_claimed_at`` (a lease: a worker that dies mid-send
    # leaves a claim that expires) and ``email_sent_at`` marks the row done.
    email_due = models.BooleanField(default=True)
    email_claimed_at = models.DateTimeField(null=True, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-id"], name="notification_user_idx"),
            # The bell's count and "mark all read" read only the unread rows of one user.
            models.Index(fields=["user"], name="notification_unread_idx", condition=models.Q(read_at__isnull=True)),
            # The mail sweep reads only rows still owed an email.
            models.Index(fields=["user", "created_at"], name="notification_email_due_idx",
                         condition=models.Q(email_due=True, email_sent_at__isnull=True)),
            models.Index(fields=["contact"], name="notification_contact_idx"),
        ]
        constraints = [
            # A lead that cools and heats up again while its alert is still unread is not alerted twice.
            models.UniqueConstraint(fields=["user", "contact", "kind"], condition=models.Q(read_at__isnull=True),
                                    name="notification_one_unread"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.contact_id} → user {self.user_id}"


class AlertSettings(models.Model):
    """One user's hot-lead alert settings and their last visit of the hot-leads page. A user
    without a row has the defaults (an email per lead)."""

    class EmailMode(models.TextChoices):
        INSTANT = "instant", _("An email for each lead")
        DIGEST = "digest", _("A digest")
        OFF = "off", _("No emails")

    # read after "Digest at most every …": Polish needs the accusative ("co godzinę")
    DIGEST_MINUTES_CHOICES = [(15, pgettext_lazy("digest every", "15 minutes")),
                              (30, pgettext_lazy("digest every", "30 minutes")),
                              (60, pgettext_lazy("digest every", "hour")),
                              (240, pgettext_lazy("digest every", "4 hours")),
                              (1440, pgettext_lazy("digest every", "day"))]

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="alert_settings")
    email_mode = models.CharField(max_length=10, choices=EmailMode.choices, default=EmailMode.INSTANT)
    digest_minutes = models.PositiveIntegerField(default=60)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    # "New since your last visit": a visit starts when the page is opened after a pause (see
    # leads.notifications.hot_visit); leads that became hot after the previous visit are new.
    hot_visit_at = models.DateTimeField(null=True, blank=True)
    hot_previous_visit_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"alerts of user {self.user_id}: {self.email_mode}"


class HotLead(models.Model):
    """When a contact last became hot (written with the alerts); the hot-leads page's "new" marks."""

    contact = models.OneToOneField("contacts.Contact", on_delete=models.CASCADE, primary_key=True, related_name="+")
    became_hot_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.contact_id} hot since {self.became_hot_at:%Y-%m-%d %H:%M}"


class DashboardSnapshot(models.Model):
    """The dashboard's figures as computed at ``computed_at`` (``leads.dashboard``), one row per
    pair of temperature thresholds (``key``). Computing them reads every contact and a month of
    events: too slow for every view of a large database, and each web process would repeat it.
    The page reads this row; one older than a minute asks the worker for a new one
    (``refresh_requested_at``, so that many views ask once) and the page says when its figures
    are from."""

    key = models.CharField(max_length=40, primary_key=True)
    data = models.JSONField(encoder=DjangoJSONEncoder)
    computed_at = models.DateTimeField()
    refresh_requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dashboard {self.key} at {self.computed_at:%Y-%m-%d %H:%M:%S}"


class FunnelReportSnapshot(models.Model):
    """A funnel report (``leads.funnels.funnel_report``) for one range as computed at
    ``computed_at``: the preset ranges ("7", "30", "90", "365" days to the day it was computed),
    all time ("all") and wide custom ranges ("2025-01-01..2025-12-31"). A wide range's exact
    medians read every stay that began in it, seconds at a million contacts, so the page reads
    this row; one older than a minute asks the worker for a new one (``refresh_requested_at``,
    so that many views ask once). A row without ``computed_at`` is a first computation asked
    for and not done yet."""

    pk = models.CompositePrimaryKey("funnel_id", "range_key")
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="+")
    range_key = models.CharField(max_length=30)
    data = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"funnel {self.funnel_id} report {self.range_key} at {self.computed_at}"
