"""Models every area uses: API keys, background jobs and the outbox of changes to tell the world."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from core.health import WorkerHeartbeat
from core.outbox import OutboxMessage

__all__ = ["ApiKey", "Job", "OutboxMessage", "WorkerHeartbeat"]


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key for the HTTP API. Only its SHA-256 is stored; the key itself is shown once."""

    SCOPE_INGEST = "ingest"
    SCOPE_ADMIN = "admin"
    SCOPES = [(SCOPE_INGEST, _("Ingest (events, contacts)")), (SCOPE_ADMIN, _("Admin (everything)"))]

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=SCOPES)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a key in lists.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        db_table = "marketing_hub_apikey"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(cls, *, name: str, scope: str, created_by=None) -> tuple[ApiKey, str]:
        raw_key = "mh_" + secrets.token_urlsafe(32)
        api_key = cls.objects.create(
            name=name, scope=scope, prefix=raw_key[:10], key_hash=cls.hash_key(raw_key), created_by=created_by
        )
        return api_key, raw_key

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Job(models.Model):
    """A background job: what ran, for whom, how far it got, how it ended."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("job status", "Queued")
        RUNNING = "running", pgettext_lazy("job status", "Running")
        DONE = "done", pgettext_lazy("job status", "Done")
        FAILED = "failed", pgettext_lazy("job status", "Failed")

    kind = models.CharField(max_length=50, help_text="e.g. bulk_tag, import_contacts, rule_backfill")
    title = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0..1")
    total = models.BigIntegerField(null=True, blank=True)
    processed = models.BigIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True, help_text="JSON scalars the task was started with.")
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The chunk runner (core.jobs.runner): where the next chunk starts (the key of the last row
    # done; null: from the beginning), what the committed chunks counted, and how many there were.
    # Each chunk writes them in its own transaction, so they always describe committed work.
    resume_after = models.JSONField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    chunks_done = models.IntegerField(default=0)
    # How often the sweeper enqueued the job again because nobody was running it (its worker died,
    # its message was lost), and the last sign of life (enqueued, claimed, a chunk committed).
    attempts = models.SmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "automation_job"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"], name="job_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def kind_label(self) -> str:
        from core.jobs import job_kind_label  # local import: core.jobs imports this module

        return job_kind_label(self.kind)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
