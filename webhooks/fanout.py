"""The fan-out: outbox messages → one delivery per (message, subscribed matching webhook).

ONE statement per chunk claims the oldest undelivered outbox rows (``FOR UPDATE SKIP LOCKED``, in
id order), marks them dispatched, and inserts the deliveries with their final body: the contact's
snapshot (email, names, score, temperature as of now), the segment / programme / funnel names, and
``sequence`` (the outbox id, increasing). Claim, insert and mark commit together, so a worker killed
mid-way leaves the chunk undispatched and the next run takes it again — at least once, never lost.
The ``OUTBOX_FANOUT`` lock keeps fan-outs one at a time (a second waits for nothing: it leaves).
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from core import locks
from core.outbox import OUTBOX_TABLE

FANOUT_CHUNK = 5000

# Matching: targeted messages (rule.fired, webhook.test) go to the webhook named in data.webhook_id
# (a test even when the webhook is off, to try it before switching it on); the others to every
# active webhook subscribed to the type whose filter lets it through (empty filter = all).
_FANOUT_SQL = f"""
WITH batch AS (
    SELECT id FROM {OUTBOX_TABLE}
    WHERE dispatched_at IS NULL
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE {OUTBOX_TABLE} o SET dispatched_at = %(now)s
    FROM batch b WHERE o.id = b.id
    RETURNING o.id, o.type, o.contact_id, o.segment_id, o.program_id, o.funnel_id, o.data, o.created_at
), matched AS (
    SELECT m.*, w.id AS webhook_id
    FROM marked m
    JOIN webhooks_webhook w ON CASE
        WHEN m.type = 'webhook.test' THEN w.id = (m.data ->> 'webhook_id')::bigint
        WHEN m.type = 'rule.fired' THEN w.active AND w.id = (m.data ->> 'webhook_id')::bigint
        ELSE w.active AND m.type = ANY(w.events)
             AND (m.segment_id IS NULL OR cardinality(w.segment_ids) = 0 OR m.segment_id = ANY(w.segment_ids))
             AND (m.program_id IS NULL OR cardinality(w.program_ids) = 0 OR m.program_id = ANY(w.program_ids))
             AND (m.funnel_id IS NULL OR cardinality(w.funnel_ids) = 0 OR m.funnel_id = ANY(w.funnel_ids))
        END
    -- Anonymous visitors' profiles are nobody's business outside until they merge into a contact.
    WHERE NOT EXISTS (SELECT 1 FROM contacts_contact a WHERE a.id = m.contact_id AND a.is_anonymous)
), thresholds AS (
    SELECT coalesce((SELECT warm FROM leads_temperaturesettings WHERE id = 1), 50) AS warm,
           coalesce((SELECT hot FROM leads_temperaturesettings WHERE id = 1), 100) AS hot
), bodies AS (
    SELECT x.webhook_id, x.id, x.type, x.contact_id, x.created_at,
           (x.data ->> 'event_pk')::bigint AS event_pk, (x.data #>> '{{rule,id}}')::bigint AS rule_id,
           CASE WHEN x.type = 'webhook.test' THEN '{{}}'::jsonb ELSE
               (x.data - 'webhook_id' - 'event_pk')
               || jsonb_build_object('sequence', x.id)
               || CASE WHEN x.type IN ('contact.erased') OR x.contact_id IS NULL THEN '{{}}'::jsonb
                       ELSE jsonb_build_object('contact', CASE WHEN c.id IS NULL THEN NULL ELSE jsonb_build_object(
                           'email', c.email, 'first_name', c.first_name, 'last_name', c.last_name, 'score', c.score,
                           'temperature', CASE WHEN c.score >= t.hot THEN 'hot' WHEN c.score >= t.warm THEN 'warm'
                                               ELSE 'cold' END) END) END
               || CASE WHEN x.segment_id IS NULL THEN '{{}}'::jsonb
                       ELSE jsonb_build_object('segment', jsonb_build_object('id', x.segment_id, 'name', s.name)) END
               || CASE WHEN x.program_id IS NULL THEN '{{}}'::jsonb
                       ELSE jsonb_build_object('program', jsonb_build_object('id', x.program_id, 'name', p.name)) END
               || CASE WHEN x.funnel_id IS NULL THEN '{{}}'::jsonb
                       ELSE jsonb_build_object('funnel', jsonb_build_object('id', x.funnel_id, 'name', f.name)) END
           END AS data
    FROM matched x
    CROSS JOIN thresholds t
    LEFT JOIN contacts_contact c ON c.id = x.contact_id
    LEFT JOIN segments_segment s ON s.id = x.segment_id
    LEFT JOIN loyalty_program p ON p.id = x.program_id
    LEFT JOIN leads_funnel f ON f.id = x.funnel_id
), inserted AS (
    INSERT INTO webhooks_delivery
        (webhook_id, message_id, type, contact_id, rule_id, event_pk, body, status, attempts, next_attempt_at,
         created_at, last_error, last_request_headers, last_response_body)
    SELECT b.webhook_id, 'msg_' || b.id, b.type, b.contact_id, b.rule_id, b.event_pk,
           jsonb_build_object(
               'type', b.type,
               'timestamp', to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'data', b.data)::text,
           'pending', 0, %(now)s, %(now)s, '', '{{}}'::jsonb, ''
    FROM bodies b
    ORDER BY b.id, b.webhook_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM inserted)
"""


def outbox_fanout(*, chunk: int = FANOUT_CHUNK, max_chunks: int = 1000) -> dict:
    """Fan out every undispatched outbox message (in chunks of ``chunk``, each its own
    transaction). Returns ``{"messages", "deliveries"}``; ``busy`` when another fan-out runs."""
    totals = {"messages": 0, "deliveries": 0, "busy": False}
    for _ in range(max_chunks):
        with transaction.atomic(), connection.cursor() as cursor:
            if not locks.advisory_xact_try_lock(cursor, locks.OUTBOX_FANOUT):
                totals["busy"] = True
                return totals
            cursor.execute(_FANOUT_SQL, {"limit": chunk, "now": timezone.now()})
            messages, deliveries = cursor.fetchone()
        totals["messages"] += messages
        totals["deliveries"] += deliveries
        if messages < chunk:
            break
    return totals


def outbox_pending() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {OUTBOX_TABLE} WHERE dispatched_at IS NULL)")
        return cursor.fetchone()[0]
