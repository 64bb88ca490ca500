from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key for the HTTP API. Only its SHA-256 is stored; the key itself is shown once."""

    SCOPE_INGEST = "ingest"
    SCOPE_ADMIN = "admin"
    SCOPES = [(SCOPE_INGEST, "Ingest (events, contacts)"), (SCOPE_ADMIN, "Admin (everything)")]

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
