"""How the webhooks area plugs into the lower layers, which never import it: the pump is kicked
after the commits that change contacts (so a lead turning hot reaches the receiver in about a
second, not at beat's next tick), the rule action ``send_webhook`` and the change-history kind."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from django.utils.translation import gettext, gettext_lazy

from automation import history
from automation.rules import ExtraAction, action_register
from contacts.registry import TimelineEffect, timeline_source_register
from contacts.signals import contacts_changed, contacts_erasing
from core.outbox import OUTBOX_TABLE, outbox_written
from webhooks.models import Delivery, Webhook, stored_text
from webhooks.tasks import webhooks_pump_task

logger = logging.getLogger(__name__)

# A busy rules engine sends contacts_changed for every batch: kick the pump at most this often per
# process. A commit inside the interval is not dropped: one kick is queued for the interval's end
# (countdown), so a lead that turns hot reaches the pump within this, not at beat's next sweep.
KICK_INTERVAL_SECONDS = 0.5
_kick_at = float("-inf")  # monotonic time of the last kick sent or queued


def _kick_pump() -> None:
    global _kick_at
    now = time.monotonic()
    if _kick_at > now:
        return  # a queued kick is still to come: it covers this commit
    countdown = max(0.0, _kick_at + KICK_INTERVAL_SECONDS - now)
    _kick_at = now + countdown
    try:
        if countdown:
            webhooks_pump_task.apply_async(countdown=countdown)
        else:
            webhooks_pump_task.delay()
    except Exception:  # the broker is down: beat's sweep starts the pump later
        logger.warning("could not enqueue the webhooks pump", exc_info=True)


def on_contacts_changed(sender: object, contact_ids: list[int], deferred: bool = False, **kwargs: Any) -> None:
    if contact_ids:
        transaction.on_commit(_kick_pump)


def on_outbox_written(sender: object, **kwargs: Any) -> None:
    """Writers that send no ``contacts_changed`` (segment memberships, threshold changes, tier
    recomputes, erasures): their messages go out right after the commit too."""
    transaction.on_commit(_kick_pump)




def on_contacts_erasing(sender: object, *, contact_ids: list[int], **kwargs: Any) -> None:
    """GDPR erasure: the contacts' calls — the delivery log's stored bodies carry their email and
    names, and calls not sent yet would carry them out — go with them, set-based. Only the
    ``contact.erased`` message (the email's hash) is sent about them from now on."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM webhooks_delivery WHERE contact_id = ANY(%s::bigint[])", [list(contact_ids)])
        cursor.execute(
            f"DELETE FROM {OUTBOX_TABLE} WHERE contact_id = ANY(%s::bigint[]) AND dispatched_at IS NULL "
            "AND type <> 'contact.erased'",
            [list(contact_ids)],
        )


# --- the rule action send_webhook -----------------------------------------------------------------
def _clean_send_webhook(action: dict, path: str, errors: list) -> dict | None:
    webhook_id = action.get("webhook_id")
    if isinstance(webhook_id, bool) or not isinstance(webhook_id, int):
        errors.append((f"{path}.webhook_id", "is required: the id of a webhook (Settings → Webhooks)"))
        return None
    if not Webhook.objects.filter(pk=webhook_id).exists():
        errors.append((f"{path}.webhook_id", f"no webhook with id {webhook_id}"))
        return None
    return {"type": "send_webhook", "webhook_id": webhook_id}


def _describe_send_webhook(action: dict) -> str:
    webhook_id = action.get("webhook_id")
    name = Webhook.objects.filter(pk=webhook_id).values_list("name", flat=True).first() if isinstance(webhook_id, int) else None
    if name:
        return gettext("send to webhook %(name)s") % {"name": name}
    return gettext("send to webhook #%(id)s") % {"id": action.get("webhook_id")}


def _webhook_choices() -> list[tuple[int, str]]:
    return [(pk, name if active else gettext("%(name)s (off)") % {"name": name})
            for pk, name, active in Webhook.objects.order_by("name").values_list("pk", "name", "active")[:200]]


# --- the card's timeline: "sent to webhook X" for rule.fired calls ----------------------------------
def _timeline_effects(contact: Any, event_pks: list[int]) -> Iterator[TimelineEffect]:
    rows = (Delivery.objects.filter(type="rule.fired", contact_id=contact.pk, event_pk__in=event_pks)
            .values_list("event_pk", "rule_id", "webhook__name", "status"))
    statuses = dict(Delivery.Status.choices)
    for event_pk, rule_id, name, status in rows:
        if status == Delivery.Status.SUCCEEDED:
            text = gettext("sent to webhook %(name)s") % {"name": name}
        else:
            text = gettext("sent to webhook %(name)s (%(status)s)") % {"name": name, "status": str(statuses.get(status, status)).lower()}
        yield TimelineEffect(event_pk, "webhook", text, rule_id)


# --- the change history ---------------------------------------------------------------------------
def _webhook_summary(version: Any) -> str:
    events = ", ".join(version.events or []) or gettext("nothing")
    if version.active:
        return gettext("Sends %(events)s to %(url)s.") % {"events": events, "url": version.url}
    return gettext("Sends %(events)s to %(url)s (off).") % {"events": events, "url": version.url}


def _webhook_changes(old: Any, new: Any) -> list[str]:
    # The history page takes a first "switched on"/"switched off" as the entry's headline (it
    # compares them in the active language).
    changes = []
    if old.active != new.active:
        changes.append(gettext("switched on") if new.active else gettext("switched off"))
        if not new.active and new.disabled_reason:
            changes.append(gettext("by the system: %(reason)s") % {"reason": stored_text(new.disabled_reason)})
    if old.url != new.url:
        changes.append(gettext("URL %(old)s → %(new)s") % {"old": old.url, "new": new.url})
    if old.events != new.events:
        changes.append(gettext("events changed"))
    if (old.segment_ids, old.program_ids, old.funnel_ids) != (new.segment_ids, new.program_ids, new.funnel_ids):
        changes.append(gettext("filters changed"))
    if old.description != new.description:
        changes.append(gettext("description changed"))
    if old.secret_rotated_at != new.secret_rotated_at:
        changes.append(gettext("secret rotated"))
    return changes


def connect() -> None:
    contacts_changed.connect(on_contacts_changed, dispatch_uid="webhooks.on_contacts_changed")
    contacts_erasing.connect(on_contacts_erasing, dispatch_uid="webhooks.on_contacts_erasing")
    outbox_written.connect(on_outbox_written, dispatch_uid="webhooks.on_outbox_written")
    action_register("send_webhook", ExtraAction(
        label=gettext_lazy("Send to webhook"), field="webhook_id", clean=_clean_send_webhook, describe=_describe_send_webhook,
        choices=_webhook_choices,
    ))
    timeline_source_register(_timeline_effects)
    history.kind_register("webhook", history.HistoryKind(
        gettext_lazy("Webhook"), Webhook, "webhooks:detail", "webhook_id", _webhook_summary, _webhook_changes,
        plural=gettext_lazy("Webhooks"),
    ))
