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
    "synchronous_commit": "off",
    "max_wal_size": "4GB",
    "random_page_cost": "1.1",
    "jit": "off",
}


def _server():
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    PGDATA.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(PGDATA, cleanup_mode=None)


def _configure(server) -> bool:
    """Write our settings into postgresql.auto.conf once; True when a restart is needed."""
    marker = PGDATA / ".mh_configured"
    if marker.exists():
        return False
    for name, value in SERVER_SETTINGS.items():
        server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
    marker.write_text("ok\n")
    return True


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
