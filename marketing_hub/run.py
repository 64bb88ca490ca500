"""`make run`: database, migrations, demo data on first run, web server, worker and beat.

Ctrl-C stops everything this started (and the embedded database, if this started it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing_hub.settings")
    port = os.environ.get("PORT", "8000")
    RUN_DIR.mkdir(exist_ok=True)
    embedded = not os.environ.get("DATABASE_URL")
    db_was_running = (ROOT / ".pgdata" / "postmaster.pid").exists()

    import django

    django.setup()  # starts the embedded PostgreSQL when there is no DATABASE_URL
    from django.core.management import call_command

    print("→ migrating the database", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    from contacts.models import Contact
    from demo.users import DEMO_USERS, ensure_demo_users

    ensure_demo_users()
    if not Contact.objects.exists():
        print("→ loading demo data (first run, 5,000 contacts)…", flush=True)
        call_command("seed_demo", contacts=5000)
    from django.db import connections

    connections.close_all()

    python = sys.executable
    processes: list[tuple[str, subprocess.Popen]] = []

    def spawn(name: str, args: list[str]) -> None:
        log = open(RUN_DIR / f"{name}.log", "ab")
        processes.append((name, subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)))

    spawn("web", [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"])
    spawn("worker", [python, "-m", "celery", "-A", "marketing_hub", "worker", "--loglevel=INFO", "--concurrency=2"])
    spawn("beat", [python, "-m", "celery", "-A", "marketing_hub", "beat", "--loglevel=INFO",
                   "--schedule", str(RUN_DIR / "celerybeat-schedule")])

    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except Exception:
            time.sleep(0.2)
    print(f"\nMarketing Hub is running on {url}  (logs in .run/; Ctrl-C stops everything)\n")
    print("Demo logins:")
    for user in DEMO_USERS:
        print(f"  {user['role']:<9} {user['username']:<10} / {user['password']}")
    print(flush=True)

    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, process in processes:
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; see .run/{name}.log", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("\nStopping…", flush=True)
        for _name, process in processes:
            if process.poll() is None:
                process.terminate()
        for _name, process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        if embedded and not db_was_running:
            from marketing_hub import embedded_db

            embedded_db.stop()
            print("Embedded PostgreSQL stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
