"""A real worker is SIGKILLed in the middle of a bulk job over 20,000 contacts; after a restart the
job resumes after its last committed chunk and every contact got the effect exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, connections

from contacts.models import Contact, ContactTag, TagScoreChange
from core import locks
from core.jobs import CHUNK_SIZE, jobs_sweep
from core.models import Job
from leads.models import ScoreChange
from tests.conftest import wait_for

TARGETED = 20_000  # contacts in Poland: the bulk action's target
TAG = "PROMO"


@pytest.fixture
def shop(transactional_db):
    """20,000 contacts in Poland (the target) and 100 in Germany; halfway the id sequence jumps by
    30,000, as deletions leave it, so the targeted ids span more than their number. Every other
    Polish contact already has PROMO at 2. Returns the Polish contacts' ids in order."""
    def create(count: int, country: str, prefix: str) -> None:
        # one INSERT … SELECT: 20,000 ORM objects take a dozen seconds on a busy box
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO contacts_contact (email, first_name, last_name, phone, country, city, properties, score,
                                              lead_status, lead_status_reason, created_at, updated_at)
                SELECT %s || g || '@example.com', '', '', '', %s, '', '{}', 0, 'new', '', now(), now()
                FROM generate_series(1, %s) AS g ORDER BY g
                """,
                [prefix, country, count],
            )

    create(TARGETED // 2, "PL", "a")
    create(100, "DE", "de")
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('contacts_contact', 'id'), "
                       "(SELECT max(id) FROM contacts_contact) + 30000)")
    create(TARGETED // 2, "PL", "b")
    polish = list(Contact.objects.filter(country="PL").order_by("pk").values_list("pk", flat=True))
    Contact.objects.filter(pk__in=polish[::2]).add_tag(TAG, 2, source="import")
    return polish


def _tag_scores() -> dict[int, int]:
    return dict(ContactTag.objects.filter(tag__key=TAG.lower()).values_list("contact_id", "score"))


def _waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _hold_tag_row(contact_id: int):
    """Another session locks one contact's PROMO row: the chunk that reaches it blocks inside its
    transaction, after the chunks before it committed."""
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM contacts_contacttag ct JOIN contacts_tag t ON t.id = ct.tag_id "
            "WHERE ct.contact_id = %s AND t.key = %s FOR UPDATE OF ct",
            [contact_id, TAG.lower()],
        )
    return blocker


def _kill_mid_job(worker, job: Job, blocked_contact: int, committed: int) -> Job:
    """Wait until the job committed ``committed`` contacts and blocks on the next chunk, SIGKILL
    the worker, release the row. Returns the job as the dead worker left it."""
    blocker = _hold_tag_row(blocked_contact)
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).processed == committed and _waiting_on_lock(), timeout=60,
                 message="the job to block inside a chunk")
        worker.kill()
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(lambda: not _waiting_on_lock() and not _job_lock_held(job), timeout=30,
             message="the killed worker's session to end")
    return Job.objects.get(pk=job.pk)


def _job_lock_held(job: Job) -> bool:
    held, params = locks.held_sql(locks.JOB)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {held} AND objid = %s)", [*params, job.pk])
        return cursor.fetchone()[0]


def _resume(worker, job: Job, task) -> Job:
    """Restart the worker; the beat's sweeper finds the job nobody runs and enqueues it, and the
    message is delivered again too (as a broker does for an unacknowledged one): two deliveries,
    one resumed run."""
    worker.start()
    assert jobs_sweep(running_after=timedelta(0)) == {"revived": 1, "failed": 0}
    task.delay(job.pk)
    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=60, message="the resumed job to finish")
    return Job.objects.get(pk=job.pk)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_bulk_add_tag_killed_mid_way_adds_exactly_once(celery_worker_process, shop, marketer):
    from contacts.tasks import contacts_bulk_task
    from core.jobs import job_start

    # given the tag scores before, and a bulk "add PROMO +1" over the Polish contacts started
    before = _tag_scores()
    blocked = shop[2 * CHUNK_SIZE + 10]  # in the third chunk; it has PROMO (an even position)
    assert blocked in before
    job = job_start(contacts_bulk_task, title="Add PROMO (+1) to all contacts matching the filters", user=marketer,
                    params={"action": "add_tag", "tag": TAG, "score": 1, "owner": "", "query": "country=PL"})
    # when the worker is SIGKILLed while the third chunk waits on a row
    left = _kill_mid_job(celery_worker_process, job, blocked, committed=2 * CHUNK_SIZE)
    # then two chunks are committed, with the resume point after the last contact of the second
    assert (left.status, left.chunks_done, left.resume_after) == ("running", 2, shop[2 * CHUNK_SIZE - 1])
    # when the worker comes back
    job = _resume(celery_worker_process, job, contacts_bulk_task)
    # then every Polish contact's score went up by exactly 1, and nobody else's changed
    assert job.status == Job.Status.DONE, job.error
    after = _tag_scores()
    assert after == {contact_id: before.get(contact_id, 0) + 1 for contact_id in shop}
    assert TagScoreChange.objects.filter(source="bulk").count() == TARGETED
    assert job.result == {"matched": TARGETED, "changed": TARGETED}
    assert (job.processed, job.progress, job.attempts) == (TARGETED, 1.0, 1)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_adhoc_rule_killed_mid_way_applies_exactly_once(celery_worker_process, shop, marketer):
    from automation.adhoc import adhoc_start
    from automation.tasks import adhoc_actions_task

    # given an ad-hoc rule "PROMO +1 and 5 points" over the Polish contacts
    before = _tag_scores()
    blocked = shop[3 * CHUNK_SIZE + 2]  # in the fourth chunk
    job = adhoc_start(title="Winter promo", user=marketer, params={
        "target": "filter", "query": "country=PL",
        "actions": [{"type": "add_tag", "tag": TAG, "score": 1}, {"type": "add_score", "points": 5}],
    })
    # when the worker is SIGKILLed while the fourth chunk waits on a row
    left = _kill_mid_job(celery_worker_process, job, blocked, committed=3 * CHUNK_SIZE)
    assert (left.status, left.chunks_done) == ("running", 3)
    # and comes back
    job = _resume(celery_worker_process, job, adhoc_actions_task)
    # then every targeted contact got the tag point and the 5 points exactly once
    assert job.status == Job.Status.DONE, job.error
    assert _tag_scores() == {contact_id: before.get(contact_id, 0) + 1 for contact_id in shop}
    assert ScoreChange.objects.count() == TARGETED
    scores = dict(Contact.objects.values_list("pk", "score"))
    assert {scores[contact_id] for contact_id in shop} == {5}
    assert sum(scores.values()) == 5 * TARGETED
    assert job.result == {"contacts": TARGETED}
