"""Concurrent score increments never lose an update (real transactions, real threads)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from contacts.models import Contact
from leads.models import ScoreChange
from leads.scoring import score_add, score_recompute_all
from tests.factories import ContactFactory


@pytest.mark.django_db(transaction=True)
def test_parallel_batches_on_the_same_contacts_add_up():
    # given three contacts
    contacts = [ContactFactory() for _ in range(3)]
    ids = [contact.pk for contact in contacts]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(order: list[int]) -> None:
        try:
            barrier.wait()
            for _ in range(10):
                with transaction.atomic(), connection.cursor() as cursor:
                    score_add(cursor, contact_ids=order, deltas=[1] * len(order))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when six threads add points to them in different orders at the same time
    threads = [threading.Thread(target=worker, args=(order,)) for order in (ids, ids[::-1], ids, ids[::-1], ids[1:] + ids[:1], ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then no batch failed (no deadlock) and no increment was lost
    assert not errors
    assert sorted(Contact.objects.filter(pk__in=ids).values_list("score", flat=True)) == [60, 60, 60]
    assert ScoreChange.objects.count() == 180
    with connection.cursor() as cursor:
        assert score_recompute_all(cursor) == 0
