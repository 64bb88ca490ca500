"""The embedded PostgreSQL used when no DATABASE_URL is set.

The server comes from the ``pgserver`` wheel, keeps its data in ``.pgdata/`` at the project root
and listens on a Unix socket only. It is started on first use by any process that loads the
settings and left running, so every ``manage.py`` command, the worker and the test run find the
same server. ``make run`` stops it on exit; ``python -m marketing_hub.embedded_db stop`` does too.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PGDATA = Path(os.environ.get("MH_PGDATA", PROJECT_ROOT / ".pgdata"))
DATABASE_NAME = "marketing_hub"

# Tuned for the 2-core / 24 GiB machines this runs on; the defaults (128 MB buffers) are far
# too small for the benchmark's million contacts.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "effective_cache_size": "12GB",
    "max_connections": "200",
    # Every acknowledged write waits for its WAL flush: with "off", a crash-restart of the server
    # (one backend SIGKILLed is enough) lost events already answered 202. Only work recomputable
    # from stored state (rules-engine batches, the segments' dirty drain) opts out with
    # SET LOCAL synchronous_commit = off.
    "synchronous_commit": "on",
    # A backend whose client died (a worker process SIGKILLed mid-batch) notices within 2 s even
    # while its query runs, and rolls back, releasing the batch's locks for the replacement.
    "client_connection_check_interval": "2s",
    # Rules batches rewrite rows all over the contact table and its indexes; after each checkpoint
    # the first change to a page logs the whole page. Checkpoints every 15 minutes (or 8 GB of
    # WAL) instead of every 5 (or 4 GB) mean fewer of those full-page images under a steady stream.
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "random_page_cost": "1.1",
    "jit": "off",
}


def _server():
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    PGDATA.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(PGDATA, cleanup_mode=None)


def _configure(server) -> bool:
    """Write our settings into postgresql.auto.conf; True when a restart is needed (the first
    time). When SERVER_SETTINGS change later the server reloads them: a running app keeps its
    connections, and settings that need a restart take effect at the next start."""
    marker = PGDATA / ".mh_configured"
    wanted = "".join(f"{name}={value}\n" for name, value in sorted(SERVER_SETTINGS.items()))
    first = not marker.exists()
    if not first and marker.read_text() == wanted:
        return False
    for name, value in SERVER_SETTINGS.items():
        server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
    if not first:
        server.psql("SELECT pg_reload_conf();")
    marker.write_text(wanted)
    return first


def socket_dir() -> str:
    """Start the server if needed, make sure our database exists, return the socket directory."""
    server = _server()
    if _configure(server):
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-l", str(PGDATA / "log"), "restart"], pgdata=PGDATA, user=server.system_user)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    from pgserver.utils import PostmasterInfo

    return str(PostmasterInfo.read_from_pgdata(PGDATA).socket_dir)


def stop() -> None:
    if not (PGDATA / "postmaster.pid").exists():
        return
    from pgserver._commands import pg_ctl

    server = _server()
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=server.system_user)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    if command == "stop":
        stop()
    else:
        print(socket_dir())
