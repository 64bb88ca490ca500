"""What other areas must bring up to date, inside the same transaction, when the rules engine has
applied a batch of events (and when tags change by hand or in bulk: contacts calls the same hooks).
``events/status`` reads 0 only when these have run, so tiers are as current as tags and scores.

Segment memberships are the exception on the rules engine's path (``deferring()``): re-evaluating
every saved segment for every contact of every batch cost more than all the rest of a batch (about
half of its time at 250k contacts, and growing with the data), so the engine only appends the
batch's contacts to ``automation_segmentdirtycontact`` in its transaction and
``automation.engine.segments_dirty_refresh`` (a task enqueued after the batches, plus a beat
safety net) re-evaluates them set-based a moment later, in chunks that merge repeated contacts.
``events/status`` = 0 therefore means rules, tags, scores, stages and loyalty tiers are applied
(the API contract's list); memberships follow within seconds. Other callers (edits by hand, bulk
jobs) keep refreshing memberships in their own transaction.

Each hook takes ``contact_ids`` (a list of ints: the contacts whose tags, scores or stages the batch
changed) and must be set-based SQL over those ids.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connection

AFTER_EVENTS_APPLIED = [
    "loyalty.services.tiers_refresh_for_contacts",
    "segments.services.segment_members_refresh_for_contacts",
]
# Hooks the rules engine defers out of its batch transaction (see the module docstring).
SEGMENTS_HOOK = "segments.services.segment_members_refresh_for_contacts"
DEFERRABLE = {SEGMENTS_HOOK}

_deferring: ContextVar[bool] = ContextVar("mh_hooks_deferring", default=False)


@contextmanager
def deferring() -> Iterator[None]:
    """Within this block ``run_after_events_applied`` marks contacts dirty for the deferrable hooks
    instead of running them (the rules engine's batches)."""
    token = _deferring.set(True)
    try:
        yield
    finally:
        _deferring.reset(token)


def segments_mark_dirty(contact_ids: list[int]) -> None:
    """Append ``contact_ids`` to the segments' dirty queue (one INSERT, never waits on a drain)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO automation_segmentdirtycontact (contact_id, marked_at) "
            "SELECT DISTINCT unnest(%s::bigint[]), now()",
            [list(contact_ids)],
        )


def _resolve(path: str) -> Callable | None:
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # that area has not landed yet
        raise
    return getattr(module, attribute, None)


def run_after_events_applied(contact_ids: list[int]) -> None:
    if not contact_ids:
        return
    defer = _deferring.get()
    for path in AFTER_EVENTS_APPLIED:
        hook = _resolve(path)
        if hook is None:
            continue
        if defer and path in DEFERRABLE:
            segments_mark_dirty(contact_ids)
        else:
            hook(contact_ids)
