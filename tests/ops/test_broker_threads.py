"""The embedded broker's channel is used by two threads of a prefork worker at once: the consumer
takes messages while the pool's supervisor thread requeues the task of a killed pool process.
kombu's channel shared one SQLAlchemy session between them, and the worker died ("This session
is in 'prepared' state") or stopped consuming; ours gives each thread its own session."""

from __future__ import annotations

import threading
import time
import uuid
from queue import Empty

import pytest
from kombu import Connection

from tests.test_broker import _broker_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_put_and_get_from_two_threads_on_one_channel_lose_nothing_and_raise_nothing():
    # given one channel, as a worker's consumer holds it
    queue = f"threads-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []
    put = 0
    got = 0
    with Connection(_broker_url()) as broker:
        channel = broker.default_channel
        channel.queue_declare(queue=queue)
        stop_at = time.monotonic() + 3.0

        def requeue_like_the_supervisor() -> None:
            nonlocal put
            try:
                while time.monotonic() < stop_at:
                    channel._put(queue, {"body": "task", "n": put})
                    put += 1
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                errors.append(exc)

        def consume_like_the_consumer() -> None:
            nonlocal got
            try:
                while time.monotonic() < stop_at:
                    try:
                        channel._get(queue)
                        got += 1
                    except Empty:
                        pass
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        # when both threads use the channel at the same time
        threads = [threading.Thread(target=requeue_like_the_supervisor), threading.Thread(target=consume_like_the_consumer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        left = channel._size(queue)

    # then neither thread failed, and every message put was either taken once or is still there
    assert errors == []
    assert put > 10
    assert got + left == put
