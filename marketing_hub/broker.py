"""The embedded broker: kombu's SQLAlchemy transport on our PostgreSQL, with a faster poll.

kombu hands every transport option to ``sqlalchemy.create_engine``, which rejects
``polling_interval``; this channel keeps it for the transport and drops it for the engine. The
transport is registered under the alias ``mhsqla`` (``mhsqla+postgresql+psycopg://…``).
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

ENGINE_ONLY_EXCLUDED = ("polling_interval",)


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        saved = {key: conninfo.transport_options.pop(key) for key in ENGINE_ONLY_EXCLUDED
                 if key in conninfo.transport_options}
        try:
            return super()._engine_from_config()
        finally:
            conninfo.transport_options.update(saved)


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault("mhsqla", "marketing_hub.broker:Transport")
