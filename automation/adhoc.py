"""Ad-hoc rules: a set of actions run once over a saved segment or a contact-list filter
("add tag WINTER-PROMO +1 to these 12,000 contacts"), as a Job, set-based in chunks of contact ids.

Each chunk is one transaction that also records how far the job got (``job.result["last_contact_id"]``),
so a worker killed mid-way resumes after the last committed chunk when Celery redelivers the task:
every contact gets the actions exactly once per run. "Run again" starts a new run on purpose.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.http import QueryDict

from contacts.signals import contacts_changed_send
from core.jobs import Progress, job_start
from core.models import Job

CHUNK = 5000


def adhoc_target_sql(params: dict) -> tuple[str, list]:
    """SQL selecting the contact ids the run targets (one column), and its parameters."""
    if params.get("target") == "segment":
        return "SELECT contact_id FROM segments_segmentmember WHERE segment_id = %s", [int(params["segment_id"])]
    from contacts.filters import ContactFilterSet
    from contacts.models import Contact

    filterset = ContactFilterSet(QueryDict(params.get("query", "")), queryset=Contact.objects.all())
    queryset = filterset.qs.order_by().values_list("id", flat=True)
    sql, sql_params = queryset.query.sql_with_params()
    return sql, list(sql_params)


def adhoc_target_count(params: dict) -> int:
    sql, sql_params = adhoc_target_sql(params)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS target", sql_params)
        return cursor.fetchone()[0]


def adhoc_start(*, params: dict, title: str, user=None) -> Job:
    from automation.tasks import adhoc_actions_task

    return job_start(adhoc_actions_task, title=title, params=params, user=user)


def _apply_chunk(cursor, contact_ids: list[int], actions: list[dict], user_id: int | None, reason: str) -> None:
    from contacts.scoring import tag_remove, tag_scores_add, tags_ensure
    from leads.funnels import stages_set
    from leads.scoring import score_add

    count = len(contact_ids)
    add_names = [action["tag"] for action in actions if action["type"] == "add_tag"]
    tag_ids = tags_ensure(cursor, add_names) if add_names else {}
    for action in actions:
        kind = action["type"]
        if kind == "add_tag":
            tag_scores_add(cursor, contact_ids=contact_ids, tag_ids=[tag_ids[action["tag"]]] * count,
                           deltas=[action["score"]] * count, source="bulk", user_id=user_id)
        elif kind == "remove_tag":
            from contacts.models import tag_key

            cursor.execute("SELECT id FROM contacts_tag WHERE key = %s", [tag_key(action["tag"])])
            row = cursor.fetchone()
            if row:
                tag_remove(cursor, contact_ids=contact_ids, tag_ids=[row[0]] * count, source="bulk", user_id=user_id)
        elif kind == "add_score":
            score_add(cursor, contact_ids=contact_ids, deltas=[action["points"]] * count, user_id=user_id,
                      reason=reason)
        elif kind == "set_stage":
            stages_set(cursor, contact_ids=contact_ids, funnel_names=[action["funnel"]] * count,
                       stage_names=[action["stage"]] * count, cause="bulk", user_id=user_id)


def adhoc_run(job: Job, progress: Progress) -> dict:
    """The job's body: chunks of CHUNK contact ids in id order, resuming after a crash."""
    params = job.params
    actions = params["actions"]
    sql, sql_params = adhoc_target_sql(params)
    resume = (job.result or {}).get("last_contact_id", 0)
    done = (job.result or {}).get("done", 0)
    total = adhoc_target_count(params)
    progress.update(done, max(total, done))
    reason = f"Ad-hoc: {job.title}"[:200]
    last_id = resume
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT target.id FROM ({sql}) AS target(id) WHERE target.id > %s ORDER BY target.id LIMIT %s",
                [*sql_params, last_id, CHUNK],
            )
            contact_ids = [row[0] for row in cursor.fetchall()]
            if not contact_ids:
                break
            _apply_chunk(cursor, contact_ids, actions, job.created_by_id, reason)
            contacts_changed_send(contact_ids, sender=adhoc_run)
            last_id = contact_ids[-1]
            done += len(contact_ids)
            # the resume point commits with the chunk it describes
            Job.objects.filter(pk=job.pk).update(
                result={"last_contact_id": last_id, "done": done}, processed=done,
                progress=min(1.0, done / total) if total else 1.0,
            )
    return {"contacts": done}
