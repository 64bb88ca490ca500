"""The outbox: durable "tell the world" messages, written by the area that makes a change in the
same transaction as the change, set-based, and delivered at least once by the webhooks area.

Writers append rows with one ``INSERT … SELECT`` (usually a data-modifying CTE over the rows the
statement changed), never a loop over contacts::

    WITH moved AS (UPDATE … RETURNING contact_id, old_tier, new_tier)
    INSERT INTO core_outboxmessage (type, contact_id, program_id, data)
    SELECT 'loyalty.tier_changed', contact_id, %s, jsonb_build_object('from', old_tier, 'to', new_tier)
    FROM moved

``data`` holds what the message says about the change itself (``from``/``to``, the segment, …);
the contact's current snapshot (email, names, score, temperature) is added when the message is
fanned out, so a writer low in the layers never needs to know how temperature is computed. The id
is increasing, which gives receivers ``data.sequence`` per contact.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.dispatch import Signal
from django.utils import timezone

OUTBOX_TABLE = "core_outboxmessage"
OUTBOX_COLUMNS = "(type, contact_id, segment_id, program_id, funnel_id, data)"

# Sent by a writer whose transaction wrote outbox rows and sends no ``contacts_changed``: the area
# that delivers the messages starts right after the commit instead of at its next periodic sweep.
outbox_written = Signal()


def outbox_written_send(sender: object) -> None:
    outbox_written.send(sender=sender)


class OutboxMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=40)
    # No foreign keys: a message outlives an erased contact or a deleted segment.
    contact_id = models.BigIntegerField(null=True, blank=True)
    segment_id = models.BigIntegerField(null=True, blank=True)
    program_id = models.BigIntegerField(null=True, blank=True)
    funnel_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "core"
        indexes = [
            models.Index(fields=["id"], name="outbox_pending_idx", condition=models.Q(dispatched_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"
