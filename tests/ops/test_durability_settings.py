"""Acknowledged writes commit synchronously on any server: the embedded server's default is `on`,
and the app's sessions ask for it even where a server's default is `off`; only recomputable work
opts out inside its own transaction."""

from __future__ import annotations

import psycopg
from django.conf import settings

from marketing_hub import embedded_db


def test_the_embedded_server_commits_synchronously_by_default():
    assert embedded_db.SERVER_SETTINGS["synchronous_commit"] == "on"


def test_app_sessions_commit_synchronously_on_a_server_whose_default_is_off(cluster):
    # given a server configured for asynchronous commit
    cluster.configure({"synchronous_commit": "off"})
    cluster.server.psql(f"CREATE DATABASE {cluster.database};")
    # when the app connects to it with its connection options
    options = settings.DATABASES["default"]["OPTIONS"]["options"]
    with psycopg.connect(host=cluster.socket_dir, dbname=cluster.database, user="postgres", options=options,
                         autocommit=True) as conn:
        session_default = conn.execute("SHOW synchronous_commit").fetchone()[0]
        # and a recomputable batch opts out inside its transaction only
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            inside = conn.execute("SHOW synchronous_commit").fetchone()[0]
        after = conn.execute("SHOW synchronous_commit").fetchone()[0]
    # then the session commits synchronously, except inside that transaction
    assert (session_default, inside, after) == ("on", "off", "on")
