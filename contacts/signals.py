"""How contacts tell the areas above them that contacts changed, without importing them.

``contacts_changed`` is sent inside the transaction that changed the contacts' tags, scores or
stages (by hand, in bulk, by the rules engine), with ``contact_ids`` (a list of ints). Receivers,
connected in their ``AppConfig.ready()``, bring what they derive from contacts up to date with
set-based SQL over those ids: loyalty's tiers, segments' memberships. They run in the order the
apps are installed, lower layers first (tiers before memberships: a segment may test a tier).

``deferred=True`` (the rules engine's batches) lets a receiver queue expensive work for later
instead of doing it in the sender's transaction: segments append the contacts to their dirty queue.
``changes`` says what changed — one set of the ``CHANGED_*`` names (and ``changed_events``) for
every contact, or a mapping contact id → set; None (the default) means anything may have: a
receiver may skip work that no named change can affect (a segment on email consent is not
re-evaluated for contacts whose events only moved their tags).

``contacts_erasing`` is sent inside the GDPR erasure's transaction just before the contacts'
rows are deleted, with ``contact_ids``: areas that keep figures derived from them (segments'
saved counts) correct those figures while the rows still exist.

``contacts_merging`` is sent inside an anonymous profile's merge (``contacts.merging``) with a
``cursor``, ``pairs_sql`` (a SELECT of ``(profile_id, contact_id)`` rows) and its ``params``: each
area moves its rows of the profiles to the contacts. ``contacts_purging`` is sent before anonymous
profiles are deleted (retention), with ``cursor`` and ``contact_ids``: each area deletes its rows.
``contacts_merge_prepare`` (``cursor``, ``profile_ids``, ``wait``) comes first, before the contacts
are locked: an area whose workers lock its rows before contacts (the rules engine's queue) locks the
profiles' rows there, in the same order as they do, so the two never wait for each other in a circle.
With ``wait=False`` rows another transaction holds are not waited for: the receiver returns the
profiles it could not lock whole (their merge waits for a later run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.dispatch import Signal

# What a change touched (``contacts_changed``'s ``changes``).
CHANGED_TAGS = "tags"
CHANGED_SCORE = "score"
CHANGED_ACTIVITY = "activity"  # last_activity_at
CHANGED_STAGE = "stage"
CHANGED_TIER = "tier"
CHANGED_CONSENT = "consent"
CHANGED_FIELDS = "fields"  # the contact's columns and properties


# A change of tag scores: the tiers derived from them may move too.
TAG_CHANGES = (CHANGED_TAGS, CHANGED_TIER)


def changed_events(event_type: str) -> str:
    """The change "new events of this type"."""
    return f"event:{event_type}"


contacts_changed = Signal()
contacts_erasing = Signal()
contacts_merge_prepare = Signal()
contacts_merging = Signal()
contacts_purging = Signal()


def contacts_changed_send(contact_ids, *, deferred: bool = False, sender: object = None,
                          changes: Mapping[int, Iterable[str]] | Iterable[str] | None = None) -> None:
    ids = sorted({int(pk) for pk in contact_ids})
    if ids:
        contacts_changed.send(sender=sender, contact_ids=ids, deferred=deferred, changes=changes)
