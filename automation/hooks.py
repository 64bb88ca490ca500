"""What other areas must bring up to date, inside the same transaction, when the rules engine has
applied a batch of events (and when tags change by hand or in bulk: contacts calls the same hooks). ``events/status`` reads 0 only when these have run, so tiers (and
segment memberships) are as current as tags and scores.

Each hook takes ``contact_ids`` (a list of ints: the contacts whose tags, scores or stages the batch
changed) and must be set-based SQL over those ids.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

AFTER_EVENTS_APPLIED = [
    "loyalty.services.tiers_refresh_for_contacts",
    "segments.services.segment_members_refresh_for_contacts",
]


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
    for path in AFTER_EVENTS_APPLIED:
        hook = _resolve(path)
        if hook is not None:
            hook(contact_ids)
