"""Every PostgreSQL advisory lock of the project, in one registry with one key scheme.

A lock is the two-int key (namespace, id): the namespace names what is locked, the id which one
(a segment, a programme, a partition of the contacts; 0 when there is only one). Keeping every
namespace here is what guarantees two areas never take each other's lock by accident.

Transaction-scoped locks (``pg_advisory_xact_lock``) are released by the commit or the rollback, so
a worker killed mid-way never leaves one behind; session locks are only for work spanning several
transactions (a recount done in chunks) and are released by ``advisory_session_lock``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from django.db.backends.utils import CursorWrapper


class LockNamespace(NamedTuple):
    name: str
    key: int


# The rules engine: batches hold it shared, a rule backfill exclusively (runs alone).
ENGINE = LockNamespace("rules engine", 7_310_001)
# One partition of the contacts (contact_id % MH_ENGINE_PARTITIONS): one batch at a time each.
ENGINE_PARTITION = LockNamespace("rules engine partition", 7_310_002)
# The drain of the segments' dirty queue.
SEGMENTS_DIRTY_DRAIN = LockNamespace("segment memberships drain", 7_310_003)
# One saved segment's full refresh.
SEGMENT_REFRESH = LockNamespace("segment refresh", 7_310_004)
# One loyalty programme: a save or full recompute exclusively, incremental refreshes shared.
LOYALTY_PROGRAM = LockNamespace("loyalty programme", 7_310_005)
# The Tags page's counts snapshot.
TAG_STATS = LockNamespace("tag statistics recount", 7_310_006)
# The dashboard's figures snapshot (leads.dashboard).
DASHBOARD = LockNamespace("dashboard figures", 7_310_021)
# One funnel's report snapshots (leads.funnels; id: the funnel's id).
FUNNEL_REPORT = LockNamespace("funnel report figures", 7_310_022)
# Creating the embedded broker's tables (kombu creates them on first use, unguarded).
BROKER_SCHEMA = LockNamespace("broker tables", 7_310_007)
# The outbox fan-out (one at a time; delivery itself is row-claimed).
OUTBOX_FANOUT = LockNamespace("outbox fan-out", 7_310_008)
# The webhooks pump (fan-out, then sending what is due): one at a time, so that beat's ticks never
# pile pumps onto every worker process while the rules engine needs them.
WEBHOOK_PUMP = LockNamespace("webhooks pump", 7_310_020)
# One background job (id: the job's id modulo 2^31), held for the whole of a delivery: a second
# delivery of the same job finds it taken and leaves, the sweeper reads it as "a worker is alive".
JOB = LockNamespace("background job", 7_310_009)


def _function(*, shared: bool, try_: bool, xact: bool = True) -> str:
    return "pg_{}advisory_{}lock{}".format("try_" if try_ else "", "xact_" if xact else "", "_shared" if shared else "")


def advisory_xact_lock(cursor: CursorWrapper, namespace: LockNamespace, key: int = 0, *, shared: bool = False) -> None:
    """Wait for the lock; it is held until the transaction ends."""
    cursor.execute(f"SELECT {_function(shared=shared, try_=False)}(%s, %s)", [namespace.key, key])


def advisory_xact_try_lock(cursor: CursorWrapper, namespace: LockNamespace, key: int = 0, *, shared: bool = False) -> bool:
    """Take the lock if free (held until the transaction ends); False when someone holds it."""
    cursor.execute(f"SELECT {_function(shared=shared, try_=True)}(%s, %s)", [namespace.key, key])
    return bool(cursor.fetchone()[0])


def advisory_xact_lock_many(cursor: CursorWrapper, namespace: LockNamespace, keys: Sequence[int], *, shared: bool = False) -> None:
    """Wait for several locks of one namespace, taken in key order (no deadlock between takers)."""
    cursor.execute(
        f"SELECT {_function(shared=shared, try_=False)}(%s, k) FROM unnest(%s::int[]) AS k ORDER BY k",
        [namespace.key, sorted(set(keys))],
    )


@contextmanager
def advisory_session_lock(cursor: CursorWrapper, namespace: LockNamespace, key: int = 0, *, wait: bool) -> Iterator[bool]:
    """Hold a session lock for the block and yield True, or yield False when someone else holds it
    and ``wait`` is false. Released at the end of the block whatever happens."""
    cursor.execute(f"SELECT {_function(shared=False, try_=not wait, xact=False)}(%s, %s)", [namespace.key, key])
    got = True if wait else bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace.key, key])


def held_sql(namespace: LockNamespace) -> tuple[str, list[int]]:
    """A WHERE condition on ``pg_locks`` (granted locks of this database) matching the namespace's
    locks: two-int advisory keys show as classid = namespace, objid = id, objsubid = 2."""
    return (
        "locktype = 'advisory' AND granted AND objsubid = 2 AND classid::bigint = %s "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [namespace.key],
    )
