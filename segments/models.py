from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Segment(models.Model):
    """A saved segment: a JSON condition tree (the API contract's Node) and its materialised
    membership, refreshed by the worker."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    definition = models.JSONField()
    for_sending = models.BooleanField(default=False, help_text="Excludes contacts without email consent.")
    count = models.BigIntegerField(null=True, blank=True)
    version = models.BigIntegerField(default=0, help_text="Bumped by every full refresh.")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    pk = models.CompositePrimaryKey("segment_id", "contact_id")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="segment_memberships")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["contact"], name="segmentmember_contact_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.contact_id}"


class SegmentSize(models.Model):
    """Size history of a saved segment, one row per refresh."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="sizes")
    count = models.BigIntegerField()
    measured_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["measured_at"]
        indexes = [models.Index(fields=["segment", "measured_at"], name="segmentsize_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id}: {self.count} at {self.measured_at:%Y-%m-%d %H:%M}"


class SegmentDirtyContact(models.Model):
    """A contact whose saved-segment memberships must be re-evaluated: the rules engine appends
    the contacts of each batch here (inside the batch transaction) instead of refreshing the
    memberships in that transaction; ``segments_dirty_refresh`` drains it in its own, larger,
    transactions. Append-only with a serial id (no unique contact): appending never waits on a
    drain that holds some of the rows. No foreign key: a deleted contact's row is harmless."""

    id = models.BigAutoField(primary_key=True)
    contact_id = models.BigIntegerField()
    marked_at = models.DateTimeField(default=timezone.now)
    # What changed, comma-separated (``contacts.signals``' CHANGED_* names); NULL: anything.
    changes = models.TextField(null=True, blank=True)  # noqa: DJ001 (NULL is "anything", not an empty list)

    class Meta:
        db_table = "automation_segmentdirtycontact"

    def __str__(self) -> str:
        return f"contact {self.contact_id} (segments to refresh)"
