"""The set-based tag-score primitives. Every tag-score change in the product goes through here:
the card, bulk jobs, CSV import, the API and the rules engine.

Semantics (the product brief): assigning a tag a contact already has adds to its score; a result
≤ 0 removes the tag; every change is recorded in ``TagScoreChange`` (a ``score_after`` of 0 records
a removal). Concurrent increments never lose an update: the increment is one
``INSERT … ON CONFLICT DO UPDATE SET score = contacttag.score + EXCLUDED.score`` statement, which
takes the row lock and re-reads the committed score before adding.

All functions take a DB-API cursor (Django's ``connection.cursor()``) and run inside the caller's
transaction; they never commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from contacts.models import normalize_tag_name, tag_key

# Changes per pair are aggregated first and applied in (contact_id, tag_id) order, so two
# transactions touching the same pairs lock them in the same order and cannot deadlock.
_CHANGES_CTE = """
    input AS (
        SELECT i.contact_id, i.tag_id, i.delta, i.rule_id, i.event_pk, i.ord
        FROM unnest(%(contact_ids)s::bigint[], %(tag_ids)s::bigint[], %(deltas)s::int[],
                    %(rule_ids)s::bigint[], %(event_pks)s::bigint[])
             WITH ORDINALITY AS i(contact_id, tag_id, delta, rule_id, event_pk, ord)
        WHERE i.delta <> 0
    ),
    aggregated AS (
        SELECT contact_id, tag_id, sum(delta)::int AS delta
        FROM input GROUP BY contact_id, tag_id
    ),
    upserted AS (
        INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
        SELECT contact_id, tag_id, delta, now(), now() FROM aggregated ORDER BY contact_id, tag_id
        ON CONFLICT (contact_id, tag_id) DO UPDATE
            SET score = ct.score + EXCLUDED.score, last_assigned_at = now()
        RETURNING ct.contact_id, ct.tag_id, ct.score
    ),
    history AS (
        -- score_after of each change: the final score less the changes that come after it in
        -- this batch (a running sum in input order); 0 records that the tag was removed.
        INSERT INTO contacts_tagscorechange
            (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
        SELECT i.contact_id, i.tag_id, i.delta,
               greatest(u.score - a.delta + sum(i.delta) OVER w_running, 0)::int,
               %(source)s, i.rule_id, %(user_id)s, i.event_pk, now()
        FROM input i
        JOIN aggregated a ON a.contact_id = i.contact_id AND a.tag_id = i.tag_id
        JOIN upserted u ON u.contact_id = i.contact_id AND u.tag_id = i.tag_id
        WINDOW w_running AS (PARTITION BY i.contact_id, i.tag_id ORDER BY i.ord)
        RETURNING 1
    )
"""


def _nullable_list(values: Sequence | None, length: int, name: str) -> list:
    if values is None:
        return [None] * length
    values = list(values)
    if len(values) != length:
        raise ValueError(f"{name} has {len(values)} items, expected {length}")
    return values


def tag_scores_add(
    cursor,
    *,
    contact_ids: list[int],
    tag_ids: list[int],
    deltas: list[int],
    source: str,
    user_id: int | None = None,
    rule_ids: list[int | None] | None = None,
    event_pks: list[int | None] | None = None,
) -> list[int]:
    """Add ``deltas[i]`` to the score of tag ``tag_ids[i]`` on contact ``contact_ids[i]``.

    Parallel arrays, one element per change; a pair may appear several times (each gets its own
    history row). Pairs ending at ≤ 0 are deleted. Returns the distinct contact ids touched.
    """
    length = len(contact_ids)
    if len(tag_ids) != length or len(deltas) != length:
        raise ValueError("contact_ids, tag_ids and deltas must have the same length")
    if not length:
        return []
    params = {
        "contact_ids": list(contact_ids),
        "tag_ids": list(tag_ids),
        "deltas": list(deltas),
        "rule_ids": _nullable_list(rule_ids, length, "rule_ids"),
        "event_pks": _nullable_list(event_pks, length, "event_pks"),
        "source": source,
        "user_id": user_id,
    }
    cursor.execute(
        f"WITH {_CHANGES_CTE} SELECT contact_id, tag_id, score FROM upserted",
        params,
    )
    rows = cursor.fetchall()
    removed_contacts = sorted({contact_id for contact_id, _tag_id, score in rows if score <= 0})
    if removed_contacts:
        # A second statement: rows inserted by the first are invisible to it until it ends.
        cursor.execute(
            "DELETE FROM contacts_contacttag WHERE contact_id = ANY(%s::bigint[]) AND score <= 0",
            [removed_contacts],
        )
    return sorted({contact_id for contact_id, _tag_id, _score in rows})


def tag_remove(
    cursor,
    *,
    contact_ids: list[int],
    tag_ids: list[int],
    source: str,
    user_id: int | None = None,
    rule_ids: list[int | None] | None = None,
    event_pks: list[int | None] | None = None,
) -> list[int]:
    """Remove tag ``tag_ids[i]`` from contact ``contact_ids[i]`` (parallel arrays), recording each
    removal (delta = minus the old score, score_after = 0). Pairs the contact does not have are
    ignored. Returns the distinct contact ids that lost a tag."""
    length = len(contact_ids)
    if len(tag_ids) != length:
        raise ValueError("contact_ids and tag_ids must have the same length")
    if not length:
        return []
    cursor.execute(
        """
        WITH input AS (
            SELECT DISTINCT ON (contact_id, tag_id) contact_id, tag_id, rule_id, event_pk
            FROM unnest(%(contact_ids)s::bigint[], %(tag_ids)s::bigint[], %(rule_ids)s::bigint[],
                        %(event_pks)s::bigint[]) WITH ORDINALITY AS i(contact_id, tag_id, rule_id, event_pk, ord)
            ORDER BY contact_id, tag_id, ord
        ),
        deleted AS (
            DELETE FROM contacts_contacttag ct USING input i
            WHERE ct.contact_id = i.contact_id AND ct.tag_id = i.tag_id
            RETURNING ct.contact_id, ct.tag_id, ct.score, i.rule_id, i.event_pk
        ),
        history AS (
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT contact_id, tag_id, -score, 0, %(source)s, rule_id, %(user_id)s, event_pk, now()
            FROM deleted
            RETURNING 1
        )
        SELECT DISTINCT contact_id FROM deleted ORDER BY contact_id
        """,
        {
            "contact_ids": list(contact_ids),
            "tag_ids": list(tag_ids),
            "rule_ids": _nullable_list(rule_ids, length, "rule_ids"),
            "event_pks": _nullable_list(event_pks, length, "event_pks"),
            "source": source,
            "user_id": user_id,
        },
    )
    return [row[0] for row in cursor.fetchall()]


def tags_ensure(cursor, names: list[str]) -> dict[str, int]:
    """Map each given name (as given) to its tag id, creating missing tags.

    Names match case-insensitively on ``key``; a new tag keeps the first spelling (normalized:
    trimmed, inner whitespace collapsed). Empty names are skipped (absent from the result).
    """
    spelling_by_key: dict[str, str] = {}
    for name in names:
        key = tag_key(name)
        if key and key not in spelling_by_key:
            spelling_by_key[key] = normalize_tag_name(name)[:100]
    if not spelling_by_key:
        return {}
    keys = [key[:100] for key in spelling_by_key]
    spellings = list(spelling_by_key.values())
    # Insert in key order so concurrent creators lock the unique index in the same order.
    cursor.execute(
        """
        INSERT INTO contacts_tag (name, key, description, colour, created_at)
        SELECT name, key, '', '', now()
        FROM unnest(%s::text[], %s::text[]) AS t(key, name)
        WHERE NOT EXISTS (SELECT 1 FROM contacts_tag existing WHERE existing.key = t.key)
        ORDER BY key
        ON CONFLICT (key) DO NOTHING
        """,
        [keys, spellings],
    )
    cursor.execute("SELECT key, id FROM contacts_tag WHERE key = ANY(%s::text[])", [keys])
    id_by_key = dict(cursor.fetchall())
    result: dict[str, int] = {}
    for name in names:
        key = tag_key(name)[:100]
        if key in id_by_key:
            result[name] = id_by_key[key]
    return result


def tag_scores_add_selected(
    cursor,
    *,
    contacts_sql: str,
    contacts_params: Sequence,
    tag_id: int,
    delta: int,
    source: str,
    user_id: int | None = None,
) -> int:
    """Add ``delta`` to tag ``tag_id`` on every contact whose id the query ``contacts_sql`` selects
    (its first column), in one ``INSERT … SELECT``: for bulk actions over a filtered list.

    Returns the number of contacts changed. Pairs ending at ≤ 0 are deleted.
    """
    if delta == 0:
        return 0
    cursor.execute(
        f"""
        WITH selected AS (SELECT DISTINCT s.id AS contact_id FROM ({contacts_sql}) AS s(id)),
        upserted AS (
            INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
            SELECT contact_id, %s, %s, now(), now() FROM selected ORDER BY contact_id
            ON CONFLICT (contact_id, tag_id) DO UPDATE
                SET score = ct.score + EXCLUDED.score, last_assigned_at = now()
            RETURNING ct.contact_id, ct.score
        ),
        history AS (
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT contact_id, %s, %s, greatest(score, 0), %s, NULL, %s, NULL, now() FROM upserted
            RETURNING 1
        )
        SELECT count(*) FROM upserted
        """,
        [*contacts_params, tag_id, delta, tag_id, delta, source, user_id],
    )
    changed = cursor.fetchone()[0]
    if delta < 0:
        cursor.execute("DELETE FROM contacts_contacttag WHERE tag_id = %s AND score <= 0", [tag_id])
    return changed


def tag_remove_selected(
    cursor, *, contacts_sql: str, contacts_params: Sequence, tag_id: int, source: str, user_id: int | None = None
) -> int:
    """Remove tag ``tag_id`` from every contact the query selects, recording each removal."""
    cursor.execute(
        f"""
        WITH deleted AS (
            DELETE FROM contacts_contacttag ct
            WHERE ct.tag_id = %s AND ct.contact_id IN (SELECT s.id FROM ({contacts_sql}) AS s(id))
            RETURNING ct.contact_id, ct.score
        ),
        history AS (
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT contact_id, %s, -score, 0, %s, NULL, %s, NULL, now() FROM deleted
            RETURNING 1
        )
        SELECT count(*) FROM deleted
        """,
        [tag_id, *contacts_params, tag_id, source, user_id],
    )
    return cursor.fetchone()[0]


def tag_scores_set(
    cursor,
    *,
    contact_ids: list[int],
    tag_ids: list[int],
    scores: list[int],
    source: str,
    user_id: int | None = None,
) -> list[int]:
    """Set tag ``tag_ids[i]`` on contact ``contact_ids[i]`` to exactly ``scores[i]`` (a score ≤ 0
    removes it). Idempotent, for imports: running it twice changes and records nothing the second
    time. A pair given twice keeps its last score. Returns the contact ids whose tags changed."""
    length = len(contact_ids)
    if len(tag_ids) != length or len(scores) != length:
        raise ValueError("contact_ids, tag_ids and scores must have the same length")
    if not length:
        return []
    cursor.execute(
        """
        WITH input AS (
            SELECT DISTINCT ON (contact_id, tag_id) contact_id, tag_id, score
            FROM unnest(%(contact_ids)s::bigint[], %(tag_ids)s::bigint[], %(scores)s::int[])
                 WITH ORDINALITY AS i(contact_id, tag_id, score, ord)
            ORDER BY contact_id, tag_id, ord DESC
        ),
        current AS (
            SELECT i.contact_id, i.tag_id, i.score AS new_score, coalesce(ct.score, 0) AS old_score
            FROM input i
            LEFT JOIN contacts_contacttag ct ON ct.contact_id = i.contact_id AND ct.tag_id = i.tag_id
        ),
        upserted AS (
            INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
            SELECT contact_id, tag_id, new_score, now(), now() FROM current
            WHERE new_score > 0 AND new_score <> old_score
            ORDER BY contact_id, tag_id
            ON CONFLICT (contact_id, tag_id) DO UPDATE SET score = EXCLUDED.score, last_assigned_at = now()
            RETURNING ct.contact_id
        ),
        deleted AS (
            DELETE FROM contacts_contacttag ct USING current c
            WHERE ct.contact_id = c.contact_id AND ct.tag_id = c.tag_id AND c.new_score <= 0
            RETURNING ct.contact_id
        ),
        history AS (
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT contact_id, tag_id, greatest(new_score, 0) - old_score, greatest(new_score, 0),
                   %(source)s, NULL, %(user_id)s, NULL, now()
            FROM current WHERE greatest(new_score, 0) <> old_score
            RETURNING contact_id
        )
        SELECT DISTINCT contact_id FROM history ORDER BY contact_id
        """,
        {"contact_ids": list(contact_ids), "tag_ids": list(tag_ids), "scores": list(scores), "source": source,
         "user_id": user_id},
    )
    return [row[0] for row in cursor.fetchall()]



def tag_scores_set_selected(
    cursor,
    *,
    contacts_sql: str,
    contacts_params: Sequence,
    tag_id: int,
    score: int,
    source: str,
    user_id: int | None = None,
) -> int:
    """Set tag ``tag_id`` to exactly ``score`` on every contact the query ``contacts_sql`` selects
    (its first column), in one statement; a score ≤ 0 removes the tag. Each contact whose score
    changes gets a history row (delta = new − old). → the number of contacts changed.

    The contacts' existing rows for the tag are locked first, in contact order (the order every
    other primitive here locks in), so the old score each history row records is the one replaced.
    """
    new_score = max(score, 0)
    cursor.execute(
        f"""
        WITH selected AS (SELECT DISTINCT s.id AS contact_id FROM ({contacts_sql}) AS s(id)),
        locked AS (
            SELECT ct.contact_id, ct.score FROM contacts_contacttag ct
            WHERE ct.tag_id = %s AND ct.contact_id IN (SELECT contact_id FROM selected)
            ORDER BY ct.contact_id
            FOR UPDATE OF ct
        ),
        current AS (
            SELECT s.contact_id, coalesce(l.score, 0) AS old_score, %s::int AS new_score
            FROM selected s LEFT JOIN locked l ON l.contact_id = s.contact_id
        ),
        upserted AS (
            INSERT INTO contacts_contacttag AS ct (contact_id, tag_id, score, first_assigned_at, last_assigned_at)
            SELECT contact_id, %s, new_score, now(), now() FROM current
            WHERE new_score > 0 AND new_score <> old_score
            ORDER BY contact_id
            ON CONFLICT (contact_id, tag_id) DO UPDATE SET score = EXCLUDED.score, last_assigned_at = now()
            RETURNING ct.contact_id
        ),
        deleted AS (
            DELETE FROM contacts_contacttag ct USING current c
            WHERE c.new_score = 0 AND ct.tag_id = %s AND ct.contact_id = c.contact_id
            RETURNING ct.contact_id
        ),
        history AS (
            INSERT INTO contacts_tagscorechange
                (contact_id, tag_id, delta, score_after, source, rule_id, user_id, event_pk, created_at)
            SELECT contact_id, %s, new_score - old_score, new_score, %s, NULL, %s, NULL, now()
            FROM current WHERE new_score <> old_score
            RETURNING 1
        )
        SELECT count(*) FROM history
        """,
        [*contacts_params, tag_id, new_score, tag_id, tag_id, tag_id, source, user_id],
    )
    return cursor.fetchone()[0]
