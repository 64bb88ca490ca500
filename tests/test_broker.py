"""The embedded broker (kombu's SQLAlchemy transport on PostgreSQL): its tables are created by one
process at a time, so workers starting together on a fresh database do not race."""

from __future__ import annotations

import os
import threading
import uuid
from unittest import mock

import psycopg
import pytest
from django.db import connection
from kombu import Connection
from sqlalchemy.orm import Query

from core.locks import BROKER_SCHEMA

pytestmark = pytest.mark.django_db


def _broker_url() -> str:
    """The test database as an ``mhsqla`` broker URL, unique so that kombu's per-URL engine cache
    misses and the channel really opens."""
    db = connection.settings_dict
    tag = f"application_name=broker-test-{uuid.uuid4().hex[:8]}"
    if (db.get("HOST") or "").startswith("/"):
        return f"mhsqla+postgresql+psycopg://{db.get('USER') or 'postgres'}@/{db['NAME']}?host={db['HOST']}&{tag}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return (f"mhsqla+postgresql+psycopg://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or 'localhost'}"
            f"{port}/{db['NAME']}?{tag}")


def test_opening_the_broker_waits_for_the_schema_lock_then_has_its_tables():
    # given another process creating the broker's tables (it holds the lock)
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, 0)", [BROKER_SCHEMA.key])
    opened = threading.Event()
    failures: list[BaseException] = []

    def open_channel() -> None:
        try:
            with Connection(_broker_url()) as broker:
                # the first queue operation opens the database and creates the tables
                broker.default_channel.queue_declare(queue=f"broker-test-{uuid.uuid4().hex[:8]}")
            opened.set()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failures.append(exc)
            opened.set()

    thread = threading.Thread(target=open_channel, daemon=True)
    try:
        thread.start()
        # when this process opens the broker, it waits …
        assert not opened.wait(1.0), f"the channel opened while another process held the schema lock {failures}"
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, 0)", [BROKER_SCHEMA.key])
        other.close()
    # … and once the lock is free it opens, with kombu's tables in place
    assert opened.wait(20) and not failures, failures
    thread.join(5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('kombu_queue') IS NOT NULL AND to_regclass('kombu_message') IS NOT NULL")
        assert cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_queue_another_process_created_between_look_up_and_insert_is_used_not_an_error():
    # given the broker's tables, and a new queue that another process inserts after this process
    # looked it up and found nothing (kombu guards the look-up-then-insert only within a process)
    queue = f"broker-race-{uuid.uuid4().hex[:8]}"
    with Connection(_broker_url()) as broker:
        channel = broker.default_channel
        channel.queue_declare(queue=f"broker-test-{uuid.uuid4().hex[:8]}")  # opens and creates the tables
        real_first = Query.first
        misses = {"left": 2}  # kombu looks up twice (before and inside its mutex)

        def first_missing_until_inserted(query):
            if misses["left"] and query.column_descriptions[0]["entity"] is channel.queue_cls:
                misses["left"] -= 1
                if not misses["left"]:
                    with connection.cursor() as cursor:
                        cursor.execute("INSERT INTO kombu_queue (id, name) VALUES (nextval('queue_id_sequence'), %s)", [queue])
                return None
            return real_first(query)

        # when this process declares the queue
        with mock.patch.object(Query, "first", first_missing_until_inserted):
            declared = channel._get_or_create(queue)
        # then it uses the other process's row instead of failing on the unique name
        assert misses["left"] == 0
        assert declared.name == queue
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM kombu_queue WHERE name = %s", [queue])
            assert cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_a_process_forked_after_the_broker_opened_gets_connections_of_its_own():
    # given a broker opened (its engine pooled a connection) in this process, as a worker's
    # consumer has it when the prefork pool replaces a process
    url = _broker_url()
    queue = f"broker-fork-{uuid.uuid4().hex[:8]}"
    with Connection(url) as broker:
        broker.default_channel.queue_declare(queue=queue)
        engine, _ = broker.default_channel._open()
        with engine.connect() as conn:
            parent_backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        read, write = os.pipe()
        # when a child is forked and uses the broker
        pid = os.fork()
        if pid == 0:  # the child: publish, and report which database session it used
            code = 1
            try:
                with engine.connect() as conn:
                    child_backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with Connection(url) as child_broker:
                    child_broker.SimpleQueue(queue).put({"from": "child"})
                os.write(write, str(child_backend).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child_backend = int(os.read(read, 64).decode() or 0)
        os.close(read)
        # then it spoke to the database on a connection of its own, and published
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_backend and child_backend != parent_backend
        # and the parent's pooled connection still works
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == parent_backend
        message = broker.SimpleQueue(queue).get(timeout=10)
        assert message.payload == {"from": "child"}
        message.ack()
