"""The embedded broker: kombu's SQLAlchemy transport on our PostgreSQL, with a faster poll.

kombu hands every transport option to ``sqlalchemy.create_engine``, which rejects
``polling_interval``; this channel keeps it for the transport and drops it for the engine. The
transport is registered under the alias ``mhsqla`` (``mhsqla+postgresql+psycopg://…``).

kombu creates its tables (and a sequence) the first time a process opens the broker, with no
guard between processes: two workers starting together on a fresh database could both run
``CREATE SEQUENCE`` and one died. Our channel creates them under a PostgreSQL advisory lock.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

ENGINE_ONLY_EXCLUDED = ("polling_interval",)
SCHEMA_LOCK_KEY = 731_004_401  # pg_advisory_xact_lock key for creating kombu's tables


class Channel(kombu_sqlalchemy.Channel):
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
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                        kombu_sqlalchemy.metadata.create_all(connection)
                    self._engines[hostname] = engine, sessionmaker(bind=engine)
        return self._engines[hostname]


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault("mhsqla", "marketing_hub.broker:Transport")
