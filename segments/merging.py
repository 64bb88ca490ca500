"""Anonymous profiles merged or purged (``contacts.merging``): a profile is in no segment; its
queued membership work goes (the contact it merges into is queued by ``contacts_changed``)."""

from __future__ import annotations

from typing import Any

from contacts.merging import rows_delete

_TABLES = ("segments_segmentmember", "automation_segmentdirtycontact")


def on_contacts_merging(sender: Any, *, cursor: Any, params: dict, **kwargs: Any) -> None:
    rows_delete(cursor, _TABLES, contact_ids=params["profiles"])


def on_contacts_purging(sender: Any, *, cursor: Any, contact_ids: list[int], **kwargs: Any) -> None:
    rows_delete(cursor, _TABLES, contact_ids=contact_ids)
