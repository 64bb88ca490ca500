"""Anonymous profiles merged or purged (``contacts.merging``): a visitor's tier is recomputed on the
contact it merges into (``contacts_changed``), so the profile's tier rows just go."""

from __future__ import annotations

from typing import Any

from contacts.merging import rows_delete

_TABLES = ("loyalty_tierchange", "loyalty_contacttier")


def on_contacts_merging(sender: Any, *, cursor: Any, params: dict, **kwargs: Any) -> None:
    rows_delete(cursor, _TABLES, contact_ids=params["profiles"])


def on_contacts_purging(sender: Any, *, cursor: Any, contact_ids: list[int], **kwargs: Any) -> None:
    rows_delete(cursor, _TABLES, contact_ids=contact_ids)
