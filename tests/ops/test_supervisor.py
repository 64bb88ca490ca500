"""`make run` supervises its children: a killed worker comes back by itself while the web server
keeps answering, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from django.conf import settings

from marketing_hub.run import RESTART_DELAY_FIRST, RESTART_DELAY_MAX, Child
from tests.conftest import _test_database_url
from tests.factories import ContactFactory
from tests.ops.conftest import AppProcess, app_environment, free_port, http


def test_restart_delay_doubles_for_quick_crashes_and_resets_after_a_healthy_run(tmp_path):
    # given a child that keeps crashing right after its start
    child = Child("worker", ["true"], tmp_path / "worker.log")
    delays = []
    for _ in range(7):
        child.started_at = 100.0
        delays.append(child.schedule_restart(now=101.0))
    # then each restart waits twice as long, up to the ceiling
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert delays[0] == RESTART_DELAY_FIRST and max(delays) == RESTART_DELAY_MAX
    # when it then ran for a while before exiting, the next restart is quick again
    child.started_at = 200.0
    assert child.schedule_restart(now=400.0) == RESTART_DELAY_FIRST


def _children(pid: int) -> dict[str, psutil.Process]:
    found = {}
    for child in psutil.Process(pid).children():
        arguments = child.cmdline()
        for name in ("gunicorn", "worker", "beat"):
            if name in arguments:
                # webhook delivery's worker is the one that serves a queue of its own (-Q)
                found["webhooks" if name == "worker" and "-Q" in arguments else name] = child
    return found


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_restarted_while_web_keeps_answering_and_ctrl_c_stops_all(tmp_path):
    # given a contact (no demo data to load) and `python -m marketing_hub.run` on the test database
    ContactFactory()
    port = free_port()
    env = app_environment(_test_database_url(), settings.CELERY_BROKER_URL, PORT=str(port), MH_RUN_DIR=str(tmp_path),
                          WEB_CONCURRENCY="2", WORKER_CONCURRENCY="1")
    env.pop("DEBUG", None)
    run = AppProcess("run", [sys.executable, "-m", "marketing_hub.run"], env).start()
    url = f"http://127.0.0.1:{port}"
    worker_log = tmp_path / "worker.log"
    try:
        run.wait_for_log("Marketing Hub is running", timeout=120)
        assert "(gunicorn;" in run.log()
        started = _children(run.process.pid)
        assert set(started) == {"gunicorn", "worker", "beat", "webhooks"}
        deadline = time.monotonic() + 60
        while b"ready." not in worker_log.read_bytes():
            assert time.monotonic() < deadline, "the worker did not become ready"
            time.sleep(0.2)

        # when the worker is SIGKILLed
        os.kill(started["worker"].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        answers = []
        while worker_log.read_bytes().count(b"ready.") < 2:
            assert time.monotonic() - killed_at < 60, f"the worker did not come back; {run.log()[-2000:]}"
            answers.append(http("GET", f"{url}/healthz", timeout=5)[0])
            time.sleep(0.3)
        back_after = time.monotonic() - killed_at

        # then the web server answered all along, and a new worker runs beside the same web and beat
        now = _children(run.process.pid)
        assert answers and set(answers) == {200}
        assert now["worker"].pid != started["worker"].pid
        assert now["gunicorn"].pid == started["gunicorn"].pid and now["beat"].pid == started["beat"].pid
        assert now["webhooks"].pid == started["webhooks"].pid
        assert "worker exited with -9; restarting" in run.log()
        print(f"\nworker back {back_after:.1f} s after the SIGKILL; web answered {len(answers)} probes, all 200")

        # when Ctrl-C reaches the supervisor
        everything = [run.process.pid, *(p.pid for p in now.values()),
                      *(c.pid for p in now.values() for c in p.children(recursive=True))]
        os.kill(run.process.pid, signal.SIGINT)
        # then it exits cleanly and nothing it started is left running
        assert run.process.wait(40) == 0
        time.sleep(0.5)
        left = [pid for pid in everything if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert left == []
        assert http("GET", f"{url}/healthz", timeout=2)[0] == 0
    finally:
        if run.process.poll() is None:
            run.stop()
        try:
            run.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
