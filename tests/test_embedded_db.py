"""The embedded PostgreSQL's settings: written once with a restart, re-applied by a reload when
they change (a running app keeps its connections), left alone when unchanged."""

from __future__ import annotations

from marketing_hub import embedded_db


class FakeServer:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def psql(self, statement: str) -> str:
        self.statements.append(statement)
        return ""


def test_settings_are_written_once_then_reloaded_only_when_they_change(tmp_path, monkeypatch):
    # given a fresh data directory
    monkeypatch.setattr(embedded_db, "PGDATA", tmp_path)
    monkeypatch.setattr(embedded_db, "SERVER_SETTINGS", {"shared_buffers": "2GB", "max_wal_size": "8GB"})
    server = FakeServer()
    # when configured the first time: every setting written, and a restart asked for
    assert embedded_db._configure(server) is True
    assert server.statements == ["ALTER SYSTEM SET shared_buffers = '2GB';", "ALTER SYSTEM SET max_wal_size = '8GB';"]
    # when nothing changed: nothing is written and no restart
    server.statements.clear()
    assert embedded_db._configure(server) is False
    assert server.statements == []
    # when a setting changes: it is written and the server reloads (no restart of a running server)
    monkeypatch.setattr(embedded_db, "SERVER_SETTINGS", {"shared_buffers": "2GB", "max_wal_size": "16GB"})
    assert embedded_db._configure(server) is False
    assert "ALTER SYSTEM SET max_wal_size = '16GB';" in server.statements
    assert server.statements[-1] == "SELECT pg_reload_conf();"
    # and the next start sees it as applied
    server.statements.clear()
    assert embedded_db._configure(server) is False and server.statements == []
