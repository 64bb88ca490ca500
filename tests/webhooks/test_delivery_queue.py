"""Webhook delivery on a queue of its own (``MH_WEBHOOK_QUEUE``): the pump and its sweep are routed
there, everything else stays on the default queue, and `make run` serves it with a worker of its
own at a lower CPU priority, so a pump never holds one of the rules engine's worker processes."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from marketing_hub.celery import app, webhook_queue
from marketing_hub.run import WEBHOOK_QUEUE_DEFAULT, WEBHOOK_WORKER_NICE, Child, children
from tests.conftest import WorkerProcess, _test_database_url, wait_for
from tests.webhooks.conftest import make_webhook
from webhooks.models import Delivery
from webhooks.services import webhook_send_test

PUMP = "webhooks.tasks.webhooks_pump_task"
SWEEP = "webhooks.tasks.webhooks_sweep_task"
ENGINE = "automation.tasks.events_process_task"


def _queue_of(task_name: str, **options) -> str:
    return app.amqp.router.route(options, task_name)["queue"].name


def test_the_pump_and_its_sweep_go_to_the_webhook_queue_and_nothing_else_does(monkeypatch):
    # given a webhook queue named in the environment
    monkeypatch.setenv("MH_WEBHOOK_QUEUE", "deliveries")
    # then the pump and the sweep are routed to it, the rules engine to the default queue
    assert _queue_of(PUMP) == "deliveries"
    assert _queue_of(SWEEP) == "deliveries"
    assert _queue_of(ENGINE) == app.conf.task_default_queue
    # and a caller that names a queue keeps it
    assert _queue_of(PUMP, queue="elsewhere") == "elsewhere"


def test_without_a_webhook_queue_every_task_goes_to_the_default_queue(monkeypatch):
    # given no webhook queue (one worker does everything)
    monkeypatch.delenv("MH_WEBHOOK_QUEUE", raising=False)
    # then the pump shares the default queue with the rest
    assert webhook_queue() is None
    assert _queue_of(PUMP) == _queue_of(ENGINE) == app.conf.task_default_queue


def test_a_bad_webhook_queue_name_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MH_WEBHOOK_QUEUE", "two words")
    with pytest.raises(ValueError, match="MH_WEBHOOK_QUEUE"):
        webhook_queue()


def test_make_run_serves_the_webhook_queue_with_a_one_process_worker_of_its_own(monkeypatch, tmp_path):
    # given `make run`'s environment without a webhook queue named
    monkeypatch.delenv("MH_WEBHOOK_QUEUE", raising=False)
    # when it lists its children
    started = {child.name: child for child in children("8000", tmp_path)}
    # then a worker serves the default webhook queue, one process, at a lower priority
    webhooks, worker = started["webhooks"], started["worker"]
    assert webhooks.args[webhooks.args.index("-Q") + 1] == WEBHOOK_QUEUE_DEFAULT
    assert "--concurrency=1" in webhooks.args
    assert webhooks.nice == WEBHOOK_WORKER_NICE > 0
    # and the main worker (every other queue's tasks) keeps the normal priority and no -Q
    assert worker.nice == 0 and "-Q" not in worker.args
    # when a queue is named, that one is served
    monkeypatch.setenv("MH_WEBHOOK_QUEUE", "deliveries")
    named = {child.name: child for child in children("8000", tmp_path)}["webhooks"]
    assert named.args[named.args.index("-Q") + 1] == "deliveries"


def test_a_child_started_with_a_lower_priority_runs_with_it(tmp_path):
    # given a child that prints its niceness, started with nice=WEBHOOK_WORKER_NICE
    child = Child("probe", [sys.executable, "-c", "import os; print(os.nice(0))"], tmp_path / "probe.log",
                  nice=WEBHOOK_WORKER_NICE)
    # when it runs
    child.start()
    assert child.process is not None
    child.process.wait(30)
    # then it ran that much nicer than this process
    assert int((tmp_path / "probe.log").read_text().strip()) == os.nice(0) + WEBHOOK_WORKER_NICE


@pytest.fixture
def webhook_queue_named(monkeypatch):
    """A webhook queue of this test's own, in this process and in the workers it starts."""
    queue = f"test-wh-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MH_WEBHOOK_QUEUE", queue)
    return queue


@pytest.mark.integration
def test_calls_are_sent_by_the_webhook_worker_never_by_the_main_one(webhook_queue_named, celery_worker_process,
                                                                   receiver):
    # given the main worker (celery_worker_process) and a worker on the webhook queue
    webhooks_worker = WorkerProcess(_test_database_url(), webhook_queue_named)
    webhooks_worker.start()
    try:
        receiver.expect_request("/hook", method="POST").respond_with_data("ok")
        webhook = make_webhook(receiver.url_for("/hook"))
        # when a test message is queued (the pump is kicked after the commit)
        webhook_send_test(webhook)
        # then it reaches the receiver
        wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), timeout=60,
                 message="the test call to succeed")
        assert len(receiver.log) == 1
    finally:
        webhooks_worker.stop()
    # and the pump ran in the webhook worker; the main worker never received one
    time.sleep(0.5)
    assert f"{PUMP}[" in webhooks_worker.log_path.read_text()
    assert f"{PUMP}[" not in celery_worker_process.log_path.read_text()

