"""Hot-lead alerts: in-app notifications and emails to sales when a contact becomes hot.

Writing. The alerts are written where the transition is detected, in the same transaction,
set-based: the writer of a score or threshold change has the transition rows (contact_id,
from_temperature, to_temperature, score) as a CTE or temp table, and either embeds
:func:`hot_alerts_cte` into its own statement or calls :func:`hot_transitions_notify` right after
it. For each contact that became hot, one notification goes to its owner (an active user) or, when
unassigned, to every active Sales user, and ``leads_hotlead`` remembers when (the hot-leads page's
"new since your last visit"). An unread alert for the same lead is not repeated: a score that
hovers around the threshold alerts once until the alert is read.

Sending. The worker (``leads.tasks.alerts_email_task``, swept by beat) claims rows owed an email
with a conditional ``UPDATE … WHERE email_sent_at IS NULL AND (unclaimed OR claim expired)`` under
``FOR UPDATE SKIP LOCKED``, sends, and marks them sent. Two workers never claim the same row; a
worker killed after claiming leaves a claim that expires after ``CLAIM_LEASE`` and the rows are
sent by the next sweep. A kill between the SMTP hand-over and the "sent" mark (a few ms) would
send that one email again: SMTP has no idempotency key, so the Message-ID is derived from the
notification ids and mail systems that de-duplicate on it show one copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.exceptions import ObjectDoesNotExist
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts.models import Contact
from core.roles import SALES
from leads.models import AlertSettings, Notification

logger = logging.getLogger(__name__)

# A claim older than this belongs to a worker that died (sending a batch takes seconds).
CLAIM_LEASE = timedelta(minutes=5)
# At most this many rows are claimed per sweep; the sweep re-enqueues itself while more remain.
SEND_BATCH = 500
# More instant alerts than this for one user in one sweep (a threshold lowered, a bulk import)
# go out as one summary email instead of a flood.
INSTANT_FLOOD_LIMIT = 10
# A digest lists this many leads and links to the rest.
DIGEST_LIST_LIMIT = 50
# Opening the hot-leads page again within this pause continues the same visit.
VISIT_PAUSE = timedelta(minutes=30)
UNSUBSCRIBE_SALT = "leads.alerts.unsubscribe"


# --- writing ---------------------------------------------------------------------------------------
def hot_alerts_cte(source: str) -> str:
    """CTEs (to follow a ``WITH … ,``) that write the alerts for the rows of ``source`` — a CTE or
    table with ``contact_id``, ``from_temperature``, ``to_temperature`` and ``score`` — that went
    to hot. The last CTE, ``hot_alerted``, returns the ids of the notifications written.

    The owner is read from ``contacts_contact`` as of the statement's snapshot, which is right for
    a statement that changes scores (it never changes owners)."""
    return f"""
hot_became AS (
    SELECT DISTINCT ON (t.contact_id) t.contact_id, t.score
    FROM {source} t
    WHERE t.to_temperature = 'hot' AND t.from_temperature IS DISTINCT FROM 'hot'
      -- anonymous visitors' profiles alert nobody (their merge into a contact may)
      AND t.contact_id NOT IN (SELECT id FROM contacts_contact WHERE is_anonymous)
    ORDER BY t.contact_id
), hot_marked AS (
    INSERT INTO leads_hotlead (contact_id, became_hot_at)
    SELECT contact_id, statement_timestamp() FROM hot_became ORDER BY contact_id
    ON CONFLICT (contact_id) DO UPDATE SET became_hot_at = EXCLUDED.became_hot_at
), hot_recipients AS (
    SELECT b.contact_id, b.score, coalesce(o.id, s.user_id) AS user_id
    FROM hot_became b
    JOIN contacts_contact c ON c.id = b.contact_id
    LEFT JOIN auth_user o ON o.id = c.owner_id AND o.is_active
    LEFT JOIN (
        SELECT ug.user_id FROM auth_user_groups ug
        JOIN auth_group g ON g.id = ug.group_id AND g.name = '{SALES}'
        JOIN auth_user u ON u.id = ug.user_id AND u.is_active
    ) s ON o.id IS NULL
), hot_alerted AS (
    INSERT INTO leads_notification (user_id, contact_id, kind, score, created_at, email_due)
    SELECT r.user_id, r.contact_id, '{Notification.KIND_LEAD_HOT}', r.score, statement_timestamp(),
           coalesce(a.email_mode, '{AlertSettings.EmailMode.INSTANT}') <> '{AlertSettings.EmailMode.OFF}'
    FROM hot_recipients r
    LEFT JOIN leads_alertsettings a ON a.user_id = r.user_id
    WHERE r.user_id IS NOT NULL
    ORDER BY r.user_id, r.contact_id
    ON CONFLICT (user_id, contact_id, kind) WHERE read_at IS NULL DO NOTHING
    RETURNING id
)"""


def hot_transitions_notify(cursor: CursorWrapper, changed_sql: str, params: dict | list | None = None) -> int:
    """Write the alerts for the transitions ``changed_sql`` yields (a SELECT, or a table name,
    with contact_id, from_temperature, to_temperature, score), in the caller's transaction.
    Returns how many notifications were written; when any, the email sweep is nudged after commit."""
    relation = changed_sql if changed_sql.split()[0].upper() in {"SELECT", "WITH", "VALUES", "TABLE"} else f"TABLE {changed_sql}"
    cursor.execute(f"WITH hot_changed AS ({relation}), {hot_alerts_cte('hot_changed')} SELECT count(*) FROM hot_alerted",
                   params)
    written = cursor.fetchone()[0]
    if written:
        alerts_email_nudge()
    return written


def hot_alerts_on_thresholds(cursor: CursorWrapper, *, old_warm: int, old_hot: int, new_warm: int, new_hot: int) -> int:
    """Alerts for the contacts a threshold change makes hot (score in [new hot, old hot)): one
    range scan on the score index, whatever the number of contacts."""
    if new_hot >= old_hot:
        return 0
    return hot_transitions_notify(
        cursor,
        """
        SELECT id AS contact_id,
               CASE WHEN score >= %(old_warm)s THEN 'warm' ELSE 'cold' END AS from_temperature,
               'hot' AS to_temperature, score
        FROM contacts_contact WHERE score >= %(new_hot)s AND score < %(old_hot)s AND NOT is_anonymous
        """,
        {"old_warm": old_warm, "old_hot": old_hot, "new_hot": new_hot, "new_warm": new_warm},
    )


def alerts_email_nudge() -> None:
    """Send pending emails soon after the current transaction commits (beat is the safety net)."""
    from leads.tasks import alerts_email_task  # local import: leads.tasks imports this module

    transaction.on_commit(lambda: alerts_email_task.delay(), robust=True)


# --- reading and marking -----------------------------------------------------------------------------
def notifications_of(user: User) -> QuerySet[Notification]:
    """The user's own notifications, newest first: the only way the views read them."""
    return Notification.objects.filter(user=user).order_by("-id")


def notifications_unread_count(user: User, *, cap: int = 99) -> int:
    """Unread count up to ``cap + 1`` (the bell shows "99+"), an index-only read of the partial index."""
    return Notification.objects.filter(user=user, read_at__isnull=True).order_by()[: cap + 1].count()


def notifications_mark_read(user: User, *, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, every) unread notification of ``user`` read. A read alert
    is no longer owed an email: the person has seen it."""
    rows = Notification.objects.filter(user=user, read_at__isnull=True)
    if notification_id is not None:
        rows = rows.filter(pk=notification_id)
    return rows.update(read_at=timezone.now(), email_due=False)


def alert_settings_of(user: User) -> AlertSettings:
    found = AlertSettings.objects.filter(user=user).first()
    return found or AlertSettings(user=user)


def alert_settings_save(user: User, *, email_mode: str, digest_minutes: int) -> None:
    AlertSettings.objects.update_or_create(
        user=user, defaults={"email_mode": email_mode, "digest_minutes": digest_minutes, "updated_at": timezone.now()}
    )
    if email_mode == AlertSettings.EmailMode.OFF:
        Notification.objects.filter(user=user, email_due=True, email_sent_at__isnull=True).update(email_due=False)


# --- the hot-leads page's last visit ---------------------------------------------------------------
_VISIT_SQL = """
INSERT INTO leads_alertsettings AS s (user_id, email_mode, digest_minutes, hot_visit_at, updated_at)
VALUES (%(user_id)s, %(mode)s, %(minutes)s, %(now)s, %(now)s)
ON CONFLICT (user_id) DO UPDATE SET
    hot_previous_visit_at = CASE WHEN s.hot_visit_at IS NULL OR s.hot_visit_at < %(now)s - %(pause)s
                                 THEN s.hot_visit_at ELSE s.hot_previous_visit_at END,
    hot_visit_at = %(now)s
RETURNING hot_previous_visit_at
"""


def hot_visit(user: User, *, now: datetime | None = None) -> datetime | None:
    """Record a visit of the hot-leads page; returns the end of the previous visit (None on the
    first one). Page loads less than ``VISIT_PAUSE`` apart are one visit, so paging and filtering
    do not clear the "new" marks."""
    with connection.cursor() as cursor:
        cursor.execute(_VISIT_SQL, {
            "user_id": user.pk, "now": now or timezone.now(), "pause": VISIT_PAUSE,  # type: ignore[dict-item]
            "mode": AlertSettings.EmailMode.INSTANT, "minutes": 60,
        })
        return cursor.fetchone()[0]


def hot_visit_reset(user: User, *, now: datetime | None = None) -> None:
    """"Mark all as seen": the current visit counts as the previous one."""
    now = now or timezone.now()
    AlertSettings.objects.update_or_create(user=user, defaults={"hot_visit_at": now, "hot_previous_visit_at": now})


# --- unsubscribe ---------------------------------------------------------------------------------------
def alerts_unsubscribe_token(user_id: int) -> str:
    return signing.dumps(user_id, salt=UNSUBSCRIBE_SALT, compress=False)


def alerts_unsubscribe_user(token: str) -> User | None:
    """The user a signed unsubscribe token names, or None if it was tampered with."""
    try:
        user_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return get_user_model().objects.filter(pk=user_id).first() if isinstance(user_id, int) else None


def alerts_unsubscribe_url(user_id: int) -> str:
    return settings.MH_SITE_URL + reverse("leads:alerts_unsubscribe", args=[alerts_unsubscribe_token(user_id)])


# --- sending ---------------------------------------------------------------------------------------------
# Rows of users who switched emails off (or have no address, or left) are no longer owed one.
_DROP_UNDELIVERABLE_SQL = """
UPDATE leads_notification n SET email_due = false
FROM auth_user u LEFT JOIN leads_alertsettings a ON a.user_id = u.id
WHERE n.user_id = u.id AND n.email_due AND n.email_sent_at IS NULL
  AND (a.email_mode = 'off' OR u.email = '' OR NOT u.is_active)
"""

_CLAIM_INSTANT_SQL = """
WITH due AS (
    SELECT n.id FROM leads_notification n
    LEFT JOIN leads_alertsettings a ON a.user_id = n.user_id
    WHERE n.email_due AND n.email_sent_at IS NULL
      AND (n.email_claimed_at IS NULL OR n.email_claimed_at < %(stale)s)
      AND coalesce(a.email_mode, 'instant') = 'instant'
    ORDER BY n.id
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE leads_notification n SET email_claimed_at = %(now)s
FROM due WHERE n.id = due.id
RETURNING n.id, n.user_id, n.contact_id, n.score, n.created_at
"""

# A user's digest is due when their oldest unsent alert has waited their interval: alerts of one
# interval travel together, and two digests are at least about an interval apart.
_CLAIM_DIGEST_SQL = """
WITH due_users AS (
    SELECT n.user_id
    FROM leads_notification n
    JOIN leads_alertsettings a ON a.user_id = n.user_id AND a.email_mode = 'digest'
    WHERE n.email_due AND n.email_sent_at IS NULL
      AND (n.email_claimed_at IS NULL OR n.email_claimed_at < %(stale)s)
    GROUP BY n.user_id, a.digest_minutes
    HAVING min(n.created_at) <= %(now)s - a.digest_minutes * interval '1 minute'
    ORDER BY n.user_id
    LIMIT %(users)s
), due AS (
    SELECT n.id FROM leads_notification n JOIN due_users d ON d.user_id = n.user_id
    WHERE n.email_due AND n.email_sent_at IS NULL
      AND (n.email_claimed_at IS NULL OR n.email_claimed_at < %(stale)s)
    ORDER BY n.id
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE leads_notification n SET email_claimed_at = %(now)s
FROM due WHERE n.id = due.id
RETURNING n.id, n.user_id, n.contact_id, n.score, n.created_at
"""


def _claim(sql: str, now: datetime, **extra: Any) -> list[tuple]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, {"now": now, "stale": now - CLAIM_LEASE, "limit": SEND_BATCH, **extra})
        return sorted(cursor.fetchall())


def _mark(ids: list[int], *, sent: bool, now: datetime) -> None:
    if sent:
        Notification.objects.filter(pk__in=ids).update(email_sent_at=now)
    else:  # give them back to the next sweep
        Notification.objects.filter(pk__in=ids, email_sent_at__isnull=True).update(email_claimed_at=None)


def _message_id(ids: list[int]) -> str:
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:24]
    domain = (settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].rstrip(">").strip() or "localhost")
    return f"<lead-alert-{digest}@{domain}>"


def _language_of(user: Any) -> str:
    """The language the user chose for the app (the shell's preference row, read through its
    relation so that this layer imports nothing above it), else the site's default."""
    try:
        language = user.preference.language
    except (ObjectDoesNotExist, AttributeError):
        language = ""
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _build_email(user: Any, rows: list[tuple], contacts: dict[int, Contact], *, digest: bool) -> EmailMultiAlternatives:
    """One email for ``rows`` (claimed notifications of ``user``): a single lead, or a list, in the
    user's language."""
    with translation.override(_language_of(user)):
        return _build_email_in_language(user, rows, contacts, digest=digest)


def _build_email_in_language(user: Any, rows: list[tuple], contacts: dict[int, Contact], *,
                             digest: bool) -> EmailMultiAlternatives:
    site = settings.MH_SITE_URL
    leads = []
    for _id, _user_id, contact_id, score, created_at in rows:
        contact = contacts.get(contact_id)
        if contact is None:
            continue
        leads.append({
            "name": contact.full_name or contact.email, "email": contact.email, "score": score,
            "became_hot_at": created_at, "owned": contact.owner_id == user.pk,
            "url": site + reverse("contacts:card", args=[contact_id]),
        })
    unsubscribe_url = alerts_unsubscribe_url(user.pk)
    context = {
        "user": user, "leads": leads[:DIGEST_LIST_LIMIT], "more": max(len(leads) - DIGEST_LIST_LIMIT, 0),
        "total": len(leads), "lead": leads[0] if leads else None, "digest": digest,
        "hot_url": site + reverse("leads:hot") + "?owner=mine",
        "notifications_url": site + reverse("leads:notifications"),
        "settings_url": site + reverse("leads:alert_settings"), "unsubscribe_url": unsubscribe_url,
    }
    if digest:
        subject = ngettext("%(count)s lead became hot", "%(count)s leads became hot", len(leads)) % {"count": len(leads)}
        template = "leads/email/digest"
    else:
        subject = _("Hot lead: %(name)s (score %(score)s)") % {"name": leads[0]["name"], "score": leads[0]["score"]}
        template = "leads/email/hot_lead"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        to=[user.email],
        headers={
            "Message-ID": _message_id([row[0] for row in rows]),
            # RFC 8058 one-click unsubscribe: mail clients show their own "Unsubscribe" button.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


def _send(batches: list[tuple[Any, list[tuple], bool]], contacts: dict[int, Contact], now: datetime) -> int:
    """Send each (user, rows, digest) batch over one SMTP connection; mark what went out."""
    sent = 0
    mail = get_connection(fail_silently=False)
    try:
        mail.open()
    except Exception:
        # The server is unreachable: give every claimed row back to the next sweep.
        _mark([row[0] for _user, rows, _digest in batches for row in rows], sent=False, now=now)
        raise
    try:
        for user, rows, digest in batches:
            ids = [row[0] for row in rows]
            try:
                mail.send_messages([_build_email(user, rows, contacts, digest=digest)])
            except Exception:
                logger.exception("hot-lead alert email to user %s failed; it will be retried", user.pk)
                _mark(ids, sent=False, now=now)
                continue
            _mark(ids, sent=True, now=now)
            if digest:
                AlertSettings.objects.filter(user=user).update(last_digest_at=now)
            sent += 1
    finally:
        mail.close()
    return sent


def _batches_for(rows: list[tuple], *, digest: bool) -> tuple[list, dict[int, Contact]]:
    # with each person's language (one query, not one per email)
    users = get_user_model().objects.select_related("preference").in_bulk({row[1] for row in rows})
    contacts = Contact.objects.only("id", "email", "first_name", "last_name", "owner_id").in_bulk(
        {row[2] for row in rows}
    )
    by_user: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        by_user[row[1]].append(row)
    batches: list = []
    for user_id, user_rows in sorted(by_user.items()):
        user = users.get(user_id)
        if user is None:
            continue
        if digest or len(user_rows) > INSTANT_FLOOD_LIMIT:
            batches.append((user, user_rows, True))
        else:
            batches.extend((user, [row], False) for row in user_rows)
    return batches, contacts


def alerts_email_send(*, now: datetime | None = None, max_rounds: int = 20) -> int:
    """Send what is owed: instant alerts, then due digests, ``SEND_BATCH`` rows a round until a
    round finds less. Returns how many emails went out."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_DROP_UNDELIVERABLE_SQL)
    sent = 0
    for sql, digest, extra in ((_CLAIM_INSTANT_SQL, False, {}), (_CLAIM_DIGEST_SQL, True, {"users": SEND_BATCH})):
        for _round in range(max_rounds):
            rows = _claim(sql, now, **extra)
            if rows:
                batches, contacts = _batches_for(rows, digest=digest)
                sent += _send(batches, contacts, now)
            if len(rows) < SEND_BATCH:
                break
    return sent
