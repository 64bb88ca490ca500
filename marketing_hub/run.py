"""`make run`: database, migrations, static files, demo data on first run, then a supervisor of the
web server (gunicorn; Django's runserver only with DEBUG=1), the worker and beat.

A child that exits is started again after a pause that doubles with each quick crash (1 s up to
30 s; back to 1 s once a child ran for a minute). A dead child never stops the others or the
database. Ctrl-C (SIGINT) or SIGTERM stops every child, and the embedded database if this started
it.

Environment: PORT, DEBUG (off by default: gunicorn, the real 404/500 pages; DEBUG=1: runserver),
WEB_CONCURRENCY (gunicorn workers; default 2 × cores + 1), WORKER_CONCURRENCY (pool processes;
default 2), MH_RUN_DIR (logs and beat's schedule; .run/), MH_WEBHOOK_QUEUE (webhook delivery's
queue, served by a worker of its own; default "webhooks").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from marketing_hub import embedded_db

ROOT = Path(__file__).resolve().parent.parent
RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 30.0
# A child that ran this long before exiting is restarted at once, as if it had never crashed.
HEALTHY_RUN_SECONDS = 60.0
STOP_TIMEOUT = 15.0
# Webhook delivery runs in a worker of its own (see marketing_hub/celery.py), one process: its pump
# sends on threads, and one pump runs at a time anyway. A little less CPU priority than the rules
# engine and the web server, so that calls to receivers give way to ingestion when the cores are
# busy and use them when they are idle.
WEBHOOK_QUEUE_DEFAULT = "webhooks"
WEBHOOK_WORKER_NICE = int(os.environ.get("MH_WEBHOOK_WORKER_NICE", "5"))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Child:
    """One supervised process; its output goes to ``<run dir>/<name>.log``."""

    name: str
    args: list[str]
    log_path: Path
    nice: int = 0  # added to the process's niceness (lower CPU priority), inherited by what it forks
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = RESTART_DELAY_FIRST
    restarts: int = 0
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C reaches the supervisor only, which stops the children
            # in order (a second SIGINT would make celery's shutdown cold).
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=self._lower_priority)
        self.started_at = time.monotonic()
        self.restart_at = None

    def _lower_priority(self) -> None:
        if self.nice:
            os.nice(self.nice)

    def exited(self) -> int | None:
        """The exit status if the process ended since the last look (its group is cleaned up)."""
        if self.process is None or self.restart_at is not None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        # Processes it started (a killed celery worker's pool) must not outlive it.
        _signal_group(self.process.pid, signal.SIGKILL)
        return code

    def schedule_restart(self, now: float) -> float:
        if now - self.started_at >= HEALTHY_RUN_SECONDS:
            self.delay = RESTART_DELAY_FIRST
        wait = self.delay
        self.restart_at = now + wait
        self.delay = min(self.delay * 2, RESTART_DELAY_MAX)
        self.restarts += 1
        return wait

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def web_command(port: str) -> list[str]:
    python = sys.executable
    if env_flag("DEBUG"):
        return [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    workers = os.environ.get("WEB_CONCURRENCY") or str(2 * (os.cpu_count() or 1) + 1)
    return [python, "-m", "gunicorn", "marketing_hub.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", workers,
            "--timeout", "60", "--graceful-timeout", "10", "--access-logfile", "-"]


def children(port: str, run_dir: Path) -> list[Child]:
    """The supervised processes. Webhook delivery has a worker of its own on ``MH_WEBHOOK_QUEUE``
    (``main`` sets it for every child, so that their webhook tasks are routed there)."""
    python = sys.executable
    concurrency = os.environ.get("WORKER_CONCURRENCY", "2")
    webhook_queue = os.environ.get("MH_WEBHOOK_QUEUE", "").strip() or WEBHOOK_QUEUE_DEFAULT
    celery = [python, "-m", "celery", "-A", "marketing_hub"]
    return [
        Child("web", web_command(port), run_dir / "web.log"),
        Child("worker", [*celery, "worker", "--loglevel=INFO", "--pool=prefork", f"--concurrency={concurrency}"],
              run_dir / "worker.log"),
        Child("beat", [*celery, "beat", "--loglevel=INFO", "--schedule", str(run_dir / "celerybeat-schedule")],
              run_dir / "beat.log"),
        Child("webhooks", [*celery, "worker", "--loglevel=INFO", "--pool=prefork", "--concurrency=1",
                           "-Q", webhook_queue, "-n", f"{webhook_queue}@%h"],
              run_dir / "webhooks.log", nice=WEBHOOK_WORKER_NICE),
    ]


def prepare() -> None:
    """Migrations, static files, demo users; demo data when the database has no contacts."""
    import django

    django.setup()  # starts the embedded PostgreSQL when there is no DATABASE_URL
    from django.core.management import call_command

    print("→ migrating the database", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    print("→ collecting static files", flush=True)
    call_command("collectstatic", interactive=False, verbosity=0)
    # local import: models can be imported only after django.setup() above
    from contacts.models import Contact
    from demo.users import ensure_demo_users

    ensure_demo_users()
    if not Contact.objects.exists():
        print("→ loading demo data (first run, 5,000 contacts)…", flush=True)
        call_command("seed_demo", contacts=5000)
    from django.db import connections

    connections.close_all()


def wait_until_up(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            return True
        except Exception:
            time.sleep(0.2)
    return False


def supervise(processes: list[Child], should_stop) -> None:
    """Restart children that exit until ``should_stop()``."""
    while not should_stop():
        now = time.monotonic()
        for child in processes:
            code = child.exited()
            if code is not None:
                wait = child.schedule_restart(now)
                print(f"{child.name} exited with {code}; restarting in {wait:.0f} s (see {child.log_path})", flush=True)
            elif child.restart_at is not None and now >= child.restart_at:
                child.start()
                print(f"{child.name} restarted (pid {child.process.pid})", flush=True)
        time.sleep(0.2)


def stop_all(processes: list[Child]) -> None:
    for child in processes:
        child.stop()
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in processes:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop within {STOP_TIMEOUT:.0f} s; killing it", flush=True)
        _signal_group(child.process.pid, signal.SIGKILL)
        child.process.wait()


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")
    if not env_flag("MH_PRODUCTION"):
        # the demo's login page lists the demo logins, as this prints them (DEBUG is off by default)
        os.environ.setdefault("MH_SHOW_DEMO_LOGINS", "1")
    os.environ["MH_WEBHOOK_QUEUE"] = os.environ.get("MH_WEBHOOK_QUEUE", "").strip() or WEBHOOK_QUEUE_DEFAULT
    port = os.environ.get("PORT", "8000")
    run_dir = Path(os.environ.get("MH_RUN_DIR") or ROOT / ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    embedded = not os.environ.get("DATABASE_URL")
    db_was_running = (embedded_db.PGDATA / "postmaster.pid").exists()

    prepare()
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # local import: the demo logins are read after django.setup() in prepare()
    from demo.users import DEMO_USERS

    processes = children(port, run_dir)
    try:
        for child in processes:
            child.start()
        url = f"http://127.0.0.1:{port}"
        up = wait_until_up(url)
        server = "runserver (DEBUG=1)" if env_flag("DEBUG") else "gunicorn"
        print(f"\nMarketing Hub is {'running' if up else 'starting'} on {url} ({server}; logs in {run_dir}/;"
              " Ctrl-C stops everything)\n", flush=True)
        print("Demo logins:")
        for user in DEMO_USERS:
            print(f"  {user['role']:<9} {user['username']:<10} / {user['password']}")
        print(flush=True)
        supervise(processes, lambda: stopping)
    finally:
        print("\nStopping…", flush=True)
        stop_all(processes)
        if embedded and not db_was_running:
            embedded_db.stop()
            print("Embedded PostgreSQL stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
