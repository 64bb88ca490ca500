"""Helpers of the operations tests: a throwaway PostgreSQL cluster, app processes on it, HTTP.

Tests that crash PostgreSQL (a SIGKILLed backend makes the postmaster restart every backend) run
against a cluster of their own in a temporary directory, never the shared server: the cluster
gets a copy of the test database (schema and the rows the test created) and is removed after.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT, _test_database_url

LOG_DIR = PROJECT_ROOT / ".run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, bytes, dict]:
    """(status, body, headers); a refused or reset connection is status 0."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b"", {}


@dataclass
class Cluster:
    """A PostgreSQL cluster of the ``pgserver`` wheel in a temporary directory."""

    root: Path
    pgdata: Path = field(init=False)
    database: str = "mh_ops"

    def __post_init__(self) -> None:
        self.pgdata = self.root / "pg"

    def start(self) -> None:
        import warnings

        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        self.server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)

    def bin(self, name: str) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def configure(self, settings: dict[str, str]) -> None:
        for name, value in settings.items():
            self.server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
        self.server.psql("SELECT pg_reload_conf();")

    def copy_database(self, source_url: str) -> None:
        """The test database (schema and rows) into ``self.database``."""
        self.server.psql(f"CREATE DATABASE {self.database};")
        dump = subprocess.run([self.bin("pg_dump"), "--no-owner", "--no-privileges", source_url],
                              check=True, capture_output=True).stdout
        # Column options some PostgreSQL builds add (pg_attver) are not portable between servers.
        dump = b"\n".join(line for line in dump.split(b"\n") if b"SET (pg_attver=" not in line)
        result = subprocess.run([self.bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", self.dsn()], input=dump,
                                capture_output=True)
        if result.returncode:
            raise RuntimeError(f"restoring the test database failed: {result.stderr.decode()[-2000:]}")

    def dsn(self, application_name: str = "mh-ops-test") -> str:
        return f"postgresql://postgres@/{self.database}?host={self.socket_dir}&application_name={application_name}"

    def database_url(self, application_name: str) -> str:
        return f"postgresql://postgres@{quote(self.socket_dir, safe='')}/{self.database}?application_name={application_name}"

    def broker_url(self) -> str:
        return f"mhsqla+postgresql+psycopg://postgres@/{self.database}?host={self.socket_dir}&application_name=mh-broker"

    def connect(self, timeout: float = 30) -> psycopg.Connection:
        """A connection, waiting while the server restarts after a crash."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return psycopg.connect(self.dsn(), autocommit=True)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params or []).fetchall()

    def log(self) -> str:
        path = self.pgdata / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            from pgserver._commands import pg_ctl

            try:
                pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.pgdata, user=self.server.system_user)
            except subprocess.CalledProcessError:
                pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    """A throwaway cluster (started, empty); removed after the test."""
    instance = Cluster(Path(tempfile.mkdtemp(prefix="mh-ops-")))
    instance.start()
    try:
        yield instance
    finally:
        instance.destroy()


def copy_test_database(cluster: Cluster) -> None:
    cluster.copy_database(_test_database_url())


class AppProcess:
    """A process of the app (gunicorn, a celery worker, ``python -m marketing_hub.run``) with its
    own environment and a log file under .run/."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.args = args
        self.env = env
        self.log_path = LOG_DIR / f"test-ops-{self.name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> AppProcess:
        LOG_DIR.mkdir(exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            if text in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not log {text!r}; see {self.log_path}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        import signal

        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def app_environment(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, **extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def gunicorn(port: int, env: dict[str, str], workers: int = 2) -> AppProcess:
    return AppProcess("web", [sys.executable, "-m", "gunicorn", "marketing_hub.wsgi", "--bind",
                              f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", "60"], env)


def celery_worker(env: dict[str, str], queue: str, *, concurrency: int = 2) -> AppProcess:
    return AppProcess("worker", [sys.executable, "-m", "celery", "-A", "marketing_hub", "worker", "--pool=prefork",
                                 f"--concurrency={concurrency}", "--loglevel=INFO", "-Q", queue, "-n", f"{queue}@%h",
                                 "--without-gossip", "--without-mingle"], {**env, "MH_CELERY_QUEUE": queue})


def wait_http(url: str, timeout: float = 60, process: AppProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited; see {process.log_path}")
        last = http("GET", url, timeout=5)
        if last[0] == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s; last answer {last[:2] if last else None}")
