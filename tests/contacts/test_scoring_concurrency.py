"""Concurrent increments of the same tag score never lose an update."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection, connections, transaction

from contacts.models import ContactTag, TagScoreChange
from contacts.scoring import tag_scores_add, tags_ensure
from tests.factories import ContactFactory

INCREMENTS_PER_THREAD = 40


@pytest.mark.django_db(transaction=True)
def test_two_threads_incrementing_the_same_pair_lose_nothing():
    # given a contact and a tag, and two threads that each add 1 forty times, each in its own transaction
    contact = ContactFactory()
    with connection.cursor() as cursor:
        tag_id = tags_ensure(cursor, ["kurtki"])["kurtki"]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(INCREMENTS_PER_THREAD):
                with transaction.atomic(), connection.cursor() as cursor:
                    tag_scores_add(cursor, contact_ids=[contact.pk], tag_ids=[tag_id], deltas=[1], source="rule")
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    # when both run at once
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    close_old_connections()
    # then every increment counted, and each history row saw a distinct score
    assert not errors
    assert ContactTag.objects.get(contact=contact, tag_id=tag_id).score == 2 * INCREMENTS_PER_THREAD
    after = sorted(TagScoreChange.objects.values_list("score_after", flat=True))
    assert after == list(range(1, 2 * INCREMENTS_PER_THREAD + 1))


@pytest.mark.django_db(transaction=True)
def test_a_blocked_increment_adds_to_the_committed_score():
    # given a transaction that has incremented the pair and not yet committed
    contact = ContactFactory()
    with connection.cursor() as cursor:
        tag_id = tags_ensure(cursor, ["sukienki"])["sukienki"]
    first_incremented = threading.Event()
    release_first = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                tag_scores_add(cursor, contact_ids=[contact.pk], tag_ids=[tag_id], deltas=[5], source="rule")
                first_incremented.set()
                release_first.wait(10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            first_incremented.wait(10)
            with transaction.atomic(), connection.cursor() as cursor:
                # blocks on the row lock until the first commits, then adds to 5
                tag_scores_add(cursor, contact_ids=[contact.pk], tag_ids=[tag_id], deltas=[3], source="manual")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    # when the second increments while the first holds the row, then the first commits
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_incremented.wait(10)
    threads[1].join(0.5)
    assert threads[1].is_alive(), "the second increment should wait for the first transaction"
    release_first.set()
    for thread in threads:
        thread.join(30)
    close_old_connections()
    # then the score is 8 and the history says 5 then 8
    assert not errors
    assert ContactTag.objects.get(contact=contact, tag_id=tag_id).score == 8
    assert list(TagScoreChange.objects.order_by("id").values_list("delta", "score_after")) == [(5, 5), (3, 8)]
