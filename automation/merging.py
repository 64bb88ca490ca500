"""Anonymous profiles merged or purged (``contacts.merging``): the events, their receipts, the
events still waiting for the rules engine and the rules' guard rows move with the visitor."""

from __future__ import annotations

from collections import Counter
from typing import Any

from contacts.merging import rows_delete, rows_move

_TABLES = ("automation_event", "automation_eventreceipt", "automation_pendingevent", "automation_matrixapplication")


def on_contacts_merge_prepare(sender: Any, *, cursor: Any, profile_ids: list[int], wait: bool = True,
                              **kwargs: Any) -> set[int]:
    """The engine claims queued events, then locks their contacts: a merge takes the profiles'
    queued events first (a batch that claimed them already is waited for — or, with ``wait=False``,
    its profiles are returned as busy; later batches skip them)."""
    lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
    cursor.execute(
        f"SELECT contact_id FROM automation_pendingevent WHERE contact_id = ANY(%s::bigint[]) ORDER BY event_pk {lock}",
        [profile_ids],
    )
    if wait:
        return set()
    locked = Counter(row[0] for row in cursor.fetchall())
    cursor.execute(
        "SELECT contact_id, count(*) FROM automation_pendingevent WHERE contact_id = ANY(%s::bigint[]) GROUP BY contact_id",
        [profile_ids],
    )
    return {contact_id for contact_id, queued in cursor.fetchall() if locked[contact_id] < queued}


def on_contacts_merging(sender: Any, *, cursor: Any, pairs_sql: str, params: dict, **kwargs: Any) -> None:
    rows_move(cursor, _TABLES, pairs_sql=pairs_sql, params=params)
    # A rule that fires once per person fired for the contact already: the visitor's guard row goes
    # (what the rule gave the visitor moved with the tags and the ledger).
    cursor.execute(
        f"""
        DELETE FROM automation_ruleapplication r USING ({pairs_sql}) m
        WHERE r.contact_id = m.profile_id AND r.once AND EXISTS (
            SELECT 1 FROM automation_ruleapplication t WHERE t.rule_id = r.rule_id AND t.contact_id = m.contact_id AND t.once)
        """,
        params,
    )
    rows_move(cursor, ("automation_ruleapplication",), pairs_sql=pairs_sql, params=params)


def on_contacts_purging(sender: Any, *, cursor: Any, contact_ids: list[int], **kwargs: Any) -> None:
    rows_delete(cursor, (*_TABLES, "automation_ruleapplication"), contact_ids=contact_ids)
