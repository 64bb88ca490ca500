"""The embedded broker: kombu's SQLAlchemy transport on our PostgreSQL, with a faster poll.

kombu hands every transport option to ``sqlalchemy.create_engine``, which rejects
``polling_interval``; this channel keeps it for the transport and drops it for the engine. The
transport is registered under the alias ``mhsqla`` (``mhsqla+postgresql+psycopg://…``).

kombu creates its tables (and a sequence) the first time a process opens the broker, with no
guard between processes: two workers starting together on a fresh database could both run
``CREATE SEQUENCE`` and one died. Our channel creates them under a PostgreSQL advisory lock.

kombu's channel keeps ONE SQLAlchemy session for every thread. This transport has no event loop,
so a prefork worker runs billiard's pool with helper threads: when a pool process dies (SIGKILL,
the OOM killer) the pool's supervisor thread marks its task lost and, with ``acks_late`` and
``task_reject_on_worker_lost``, requeues the message — a ``_put`` on that session while the
consumer thread is inside ``_get`` on it. A session is not thread-safe: the consumer then died
with "This session is in 'prepared' state" (and the worker exited), or the requeue failed and the
dead process's prefetch slots stayed taken (the worker alive but consuming nothing). Our channel
gives each thread a session of its own (the engine's connection pool is thread-safe).

kombu caches its engines in a class attribute, so a process forked after the broker was opened —
a prefork pool's replacement process, forked by the worker after ``worker_max_tasks_per_child``
tasks — inherited its parent's engine and pooled connections: both processes then spoke on one
socket ("prepared statement … already exists" / "does not exist") until the consumer died and the
worker exited. After a fork the child's engines drop the inherited connections without closing
them (``dispose(close=False)``: the parent keeps using them) and open their own.
"""

from __future__ import annotations

import os
import threading

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from core.locks import BROKER_SCHEMA

ENGINE_ONLY_EXCLUDED = ("polling_interval",)


class Channel(kombu_sqlalchemy.Channel):
    def __init__(self, connection, **kwargs):
        self._thread_sessions = threading.local()
        self._all_sessions: list = []
        super().__init__(connection, **kwargs)

    @property
    def session(self):
        """The calling thread's session (see the module docstring)."""
        session = getattr(self._thread_sessions, "session", None)
        if session is None:
            _, session_factory = self._open()
            session = self._thread_sessions.session = session_factory()
            self._all_sessions.append(session)
        return session

    def close(self):
        super().close()  # requeues unacknowledged messages through the sessions first
        for session in self._all_sessions:
            session.close()
        self._all_sessions.clear()

    def _get_or_create(self, queue):
        """kombu's look-up-or-insert of a queue row is guarded only inside one process: two
        processes publishing to a new queue at once (two web workers after a deploy) both insert
        it, and one got a unique violation instead of publishing. The loser reads the winner's row."""
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    def _engine_from_config(self):
        conninfo = self.connection.client
        saved = {key: conninfo.transport_options.pop(key) for key in ENGINE_ONLY_EXCLUDED
                 if key in conninfo.transport_options}
        try:
            return super()._engine_from_config()
        finally:
            conninfo.transport_options.update(saved)

    def _open(self):
        """kombu's ``_open`` with the tables created by one process at a time."""
        hostname = self.connection.client.hostname
        if hostname not in self._engines:
            with kombu_sqlalchemy._MUTEX:
                if hostname not in self._engines:
                    engine = self._engine_from_config()
                    with engine.begin() as connection:
                        connection.execute(text("SELECT pg_advisory_xact_lock(:namespace, 0)"),
                                           {"namespace": BROKER_SCHEMA.key})
                        kombu_sqlalchemy.metadata.create_all(connection)
                    self._engines[hostname] = engine, sessionmaker(bind=engine)
        return self._engines[hostname]


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel


def _engines_after_fork() -> None:
    """In a forked child: forget the parent's pooled broker connections (see the module docstring)."""
    for engine, _ in list(Channel._engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_engines_after_fork)


TRANSPORT_ALIASES.setdefault("mhsqla", "marketing_hub.broker:Transport")
