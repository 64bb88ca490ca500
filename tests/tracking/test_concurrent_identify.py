"""Identity merges under races and crashes: two identifies of the same anonymous visitor at the same
moment queue its merge once, and two workers merging at once merge it once; a worker killed in the
middle of a merge leaves the unmerged state and the merge still queued, and the next run merges it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from unittest import mock

import psycopg
import pytest
from django.db import connection

from contacts.merging import profiles_merge_due
from contacts.models import Contact, ContactTag, Event, ProfileMerge
from tests.conftest import PROJECT_ROOT, _test_database_url, wait_for
from tests.tracking.helpers import merge_queued, message, post, server_source
from tracking.models import Identity

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_enqueue():
    with mock.patch("automation.tasks.events_process_enqueue"):
        yield


def _anonymous_visitor(key: str, visitor: str) -> Contact:
    """A visitor's five product views and a kurtki score of 4 on its anonymous profile."""
    views = [message(anonymousId=visitor, event="Product Viewed", properties={"category": "kurtki"}) for _ in range(5)]
    assert post("/v1/batch", {"batch": views}, key=key).status_code == 200
    profile = Contact.all_objects.get(identities__value=visitor)
    profile.add_tag("kurtki", 4)
    return profile


def test_two_concurrent_identifies_merge_the_visitor_once():
    # given an anonymous visitor (five views, kurtki 4), and an existing contact with kurtki 2
    _, key = server_source()
    _anonymous_visitor(key, "racer")
    Contact.objects.create(email="racer@example.com").add_tag("kurtki", 2)
    barrier = threading.Barrier(2)
    codes: list = []

    def identify() -> None:
        try:
            barrier.wait(30)
            response = post("/v1/identify", message("identify", anonymousId="racer", traits={"email": "racer@example.com"}), key=key)
            codes.append(response.status_code if response.status_code == 200 else (response.status_code, response.content))
        except Exception as exc:  # reported by the assertion below, not lost in the thread
            codes.append(repr(exc))
        finally:
            connection.close()

    # when two identifies (two tabs logging in) arrive together
    threads = [threading.Thread(target=identify) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then both succeed and the merge is queued once
    assert codes == [200, 200]
    assert ProfileMerge.objects.count() == 1
    # when two workers merge at the same moment
    results: list = []

    def merge() -> None:
        try:
            barrier.wait(30)
            results.append(profiles_merge_due())
        except Exception as exc:
            results.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=merge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then one of them merged it, the other found nothing to take; the five views moved once,
    # and the scores added up once
    assert sorted(results) == [0, 1]
    contact = Contact.objects.get(email="racer@example.com")
    assert Event.objects.filter(contact=contact, type="product_view").count() == 5
    assert Event.objects.filter(contact=contact, type="visitor_merged").count() == 1
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 6
    assert not Contact.all_objects.filter(is_anonymous=True).exists()
    assert list(Identity.objects.filter(value="racer").values_list("contact_id", flat=True)) == [contact.pk]


_MERGE_THEN_HANG = """
import time
import django
django.setup()
from contacts.merging import profiles_merge_due
from contacts.signals import contacts_merging

def hang(sender, **kwargs):
    # the events, tags and contact fields have moved; the profile is not deleted yet
    print("in-merge", flush=True)
    time.sleep(600)

contacts_merging.connect(hang, weak=False)
profiles_merge_due()
"""


def test_a_worker_killed_mid_merge_leaves_the_visitor_unmerged_and_the_next_run_merges_once():
    # given an anonymous visitor (five views, kurtki 4) that identified as its contact (kurtki 2)
    _, key = server_source()
    profile = _anonymous_visitor(key, "crasher")
    Contact.objects.create(email="crasher@example.com").add_tag("kurtki", 2)
    body = message("identify", message_id="crash-identify", anonymousId="crasher", traits={"email": "crasher@example.com"})
    assert post("/v1/identify", body, key=key).status_code == 200
    # when the worker merging it is SIGKILLed in the middle of the merge
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "DJANGO_SETTINGS_MODULE": "marketing_hub.settings"}
    child = subprocess.Popen([sys.executable, "-c", _MERGE_THEN_HANG], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in-merge"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # then nothing of the merge happened: the profile keeps its events and score, the contact its own
    wait_for(lambda: Contact.all_objects.filter(pk=profile.pk).exists(), message="the killed transaction rolled back")
    contact = Contact.objects.get(email="crasher@example.com")
    assert Event.objects.filter(contact=profile).count() == 5
    assert not Event.objects.filter(contact=contact).exists()
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 2
    assert ContactTag.objects.get(contact=profile, tag__key="kurtki").score == 4
    assert ProfileMerge.objects.filter(profile_id=profile.pk).exists()
    # when the library sends the identify again (its retry: the same messageId), and the worker runs again
    assert post("/v1/identify", body, key=key).status_code == 200
    assert merge_queued() == 1
    assert merge_queued() == 0
    # then the visitor merged exactly once
    assert Event.objects.filter(contact=contact, type="product_view").count() == 5
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 6
    assert not Contact.all_objects.filter(is_anonymous=True).exists()


def test_concurrent_first_messages_of_a_visitor_all_reach_its_one_profile():
    # given a new visitor whose browser sends its first six messages at the same moment (analytics.js
    # does not wait for one call before the next)
    _, key = server_source()
    barrier = threading.Barrier(6)
    codes: list = []

    def send(number: int) -> None:
        try:
            barrier.wait(30)
            body = message(anonymousId="fresh-visitor", event="Product Viewed", properties={"category": "kurtki"})
            codes.append(post("/v1/track", body, key=key).status_code)
        except Exception as exc:
            codes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then every message is an event of the visitor's one profile
    assert codes == [200] * 6
    profile = Contact.all_objects.get(is_anonymous=True)
    assert Event.objects.filter(contact=profile).count() == 6


def test_an_identify_that_changes_nothing_does_not_wait_for_the_engine_holding_the_contact():
    # given a known contact and a known visitor of it, with one event stored for the visitor
    _, key = server_source()
    contact = Contact.objects.create(email="held@example.com", first_name="Ola")
    views = [message(userId="held@example.com", event="Product Viewed", properties={"category": "kurtki"})]
    assert post("/v1/batch", {"batch": views}, key=key).status_code == 200
    # and the rules engine in the middle of a batch that updates that contact (its row locked and written)
    engine = psycopg.connect(_test_database_url(), autocommit=False)
    try:
        engine.execute("UPDATE contacts_contact SET score = score + 1 WHERE id = %s", [contact.pk])
        # when the shop sends an identify naming the email and the name already stored, and a second
        # visitor's identify of a new email (in a thread: a request that waits is not left hanging)
        body = {"batch": [
            message("identify", userId="u-held", traits={"email": "held@example.com", "firstName": "Ola"}),
            message("identify", userId="u-new", traits={"email": "new@example.com"}),
        ]}
        answers: list = []

        def send() -> None:
            try:
                answers.append(post("/v1/batch", body, key=key))
            finally:
                connection.close()

        request = threading.Thread(target=send)
        request.start()
        request.join(10)
        answered_while_held = not request.is_alive()
    finally:
        engine.rollback()
        engine.close()
        request.join(30)
    # then it was answered while the engine still held the contact, and both ids are linked
    assert answered_while_held
    assert answers[0].status_code == 200, answers[0].content
    assert set(Identity.objects.filter(value__in=["u-held", "u-new"]).values_list("value", "contact__email")) == {
        ("u-held", "held@example.com"), ("u-new", "new@example.com")}


def test_a_request_with_a_new_visitor_does_not_wait_for_another_request_carrying_it_too():
    # given two batches carrying the same visitor seen for the first time, and the first request
    # held inside its own transaction, after its profile work, while it stores its events
    from tracking import services

    _, key = server_source()
    store = services.events_store
    release, first_inside = threading.Event(), threading.Event()
    calls = {"n": 0}

    def held_store(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            first_inside.set()
            release.wait(20)
        return store(*args, **kwargs)

    answers: dict[str, int] = {}

    def send(name: str) -> None:
        try:
            batch = [message(anonymousId="first-visit", event="Product Viewed", properties={"category": "kurtki"})]
            answers[name] = post("/v1/batch", {"batch": batch}, key=key).status_code
        finally:
            connection.close()

    with mock.patch.object(services, "events_store", held_store):
        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert first_inside.wait(20)
        # when the second request arrives while the first is still open
        second = threading.Thread(target=send, args=("second",))
        second.start()
        second.join(10)
        answered_while_first_open = not second.is_alive()
        release.set()
        first.join(20)
        second.join(20)
    # then it was answered without waiting for the first to commit, and both reached one profile
    assert answered_while_first_open
    assert answers == {"first": 200, "second": 200}
    profile = Contact.all_objects.get(identities__value="first-visit")
    assert Event.objects.filter(contact=profile).count() == 2


def test_a_refused_batch_leaves_no_profile_for_its_new_visitor():
    # given a batch whose second message has a timestamp from the last century
    _, key = server_source()
    batch = [message(anonymousId="never-stored", event="Product Viewed", properties={"category": "kurtki"}),
             message(anonymousId="never-stored", event="Product Viewed", timestamp="1990-01-01T00:00:00Z")]
    # when it is sent, then it is refused naming that message, and nothing of it is stored
    response = post("/v1/batch", {"batch": batch}, key=key)
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 1 and response.json()["errors"][0]["field"] == "timestamp"
    assert not Identity.objects.filter(value="never-stored").exists()
    assert not Contact.all_objects.filter(is_anonymous=True).exists()
    assert not Event.objects.exists()


@pytest.mark.parametrize("held", ["contact", "profile", "queued events"])
def test_a_merge_whose_rows_another_transaction_holds_waits_in_the_queue_not_in_the_worker(held):
    # given a visitor that identified as an existing contact (its merge queued)
    _, key = server_source()
    visitor = "busy-" + held.replace(" ", "-")
    profile = _anonymous_visitor(key, visitor)
    contact = Contact.objects.create(email=f"{visitor}@example.com")
    contact.add_tag("kurtki", 2)
    identify = message("identify", anonymousId=visitor, traits={"email": contact.email})
    assert post("/v1/identify", identify, key=key).status_code == 200
    assert ProfileMerge.objects.filter(profile_id=profile.pk).exists()
    # and another connection in the middle of a transaction on one of its rows: the rules engine's
    # batch locking the contact or having claimed the profile's queued events, or a request still
    # storing events for the profile
    other = psycopg.connect(_test_database_url(), autocommit=False)
    if held == "queued events":
        assert other.execute("SELECT count(*) FROM automation_pendingevent WHERE contact_id = %s",
                             [profile.pk]).fetchone()[0] == 5
        other.execute("SELECT 1 FROM automation_pendingevent WHERE contact_id = %s ORDER BY event_pk FOR UPDATE",
                      [profile.pk])
    else:
        lock = "FOR NO KEY UPDATE" if held == "contact" else "FOR KEY SHARE"
        other.execute(f"SELECT 1 FROM contacts_contact WHERE id = %s {lock}",
                      [contact.pk if held == "contact" else profile.pk])
    try:
        # when the worker runs the merge queue
        with mock.patch("contacts.merging._merge_retry_later") as retry:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '5s'")  # waiting would fail the test, not hang it
            assert profiles_merge_due() == 0
            # then it took nothing, left the merge queued, and asked to be run again
            assert ProfileMerge.objects.filter(profile_id=profile.pk).exists()
            assert Contact.all_objects.filter(pk=profile.pk).exists()
            assert retry.call_count == 1
    finally:
        other.rollback()
        other.close()
    # when the rows are free again, the next run merges the visitor once
    assert merge_queued() == 1
    assert Event.objects.filter(contact=contact, type="product_view").count() == 5
    assert ContactTag.objects.get(contact=contact, tag__key="kurtki").score == 6
    assert not ProfileMerge.objects.exists()
    assert not Contact.all_objects.filter(pk=profile.pk).exists()
