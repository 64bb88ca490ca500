"""Ad-hoc rules: a set of actions run once over a saved segment or a contact-list filter
("add tag WINTER-PROMO +1 to these 12,000 contacts"), as a Job on the resumable chunk runner:
chunks of contact ids in id order, each chunk's effects committed together with the job's resume
point, so a worker killed mid-way resumes after the last committed chunk when the job is
delivered again — every contact gets the actions exactly once per run. "Run again" starts a new
run on purpose.
"""

from __future__ import annotations

from django.db import connection
from django.http import QueryDict

from contacts.filters import ContactFilterSet
from contacts.models import Contact, tag_key
from contacts.scoring import tag_remove, tag_scores_add, tags_ensure
from contacts.signals import CHANGED_SCORE, CHANGED_STAGE, TAG_CHANGES, contacts_changed_send
from core.jobs import CHUNK_SIZE, Progress, id_chunks, job_run_chunks, job_start
from core.models import Job
from leads.funnels import stages_set
from leads.scoring import score_add

CHUNK = CHUNK_SIZE


def adhoc_target_sql(params: dict) -> tuple[str, list]:
    """SQL selecting the contact ids the run targets (one column), and its parameters."""
    if params.get("target") == "segment":
        return "SELECT contact_id FROM segments_segmentmember WHERE segment_id = %s", [int(params["segment_id"])]
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
    from automation.tasks import adhoc_actions_task  # local import: the tasks module imports this one

    return job_start(adhoc_actions_task, title=title, params=params, user=user)


def _apply_chunk(cursor, contact_ids: list[int], actions: list[dict], user_id: int | None, reason: str) -> None:
    count = len(contact_ids)
    add_names = [action["tag"] for action in actions if action["type"] == "add_tag"]
    tag_ids = tags_ensure(cursor, add_names) if add_names else {}
    for action in actions:
        kind = action["type"]
        if kind == "add_tag":
            tag_scores_add(cursor, contact_ids=contact_ids, tag_ids=[tag_ids[action["tag"]]] * count,
                           deltas=[action["score"]] * count, source="bulk", user_id=user_id)
        elif kind == "remove_tag":
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
    reason = f"Ad-hoc: {job.title}"[:200]

    def apply(cursor, contact_ids: list[int]) -> dict:
        _apply_chunk(cursor, contact_ids, actions, job.created_by_id, reason)
        # what rule actions move: tags (and tiers), score, stages
        contacts_changed_send(contact_ids, sender=adhoc_run, changes=[*TAG_CHANGES, CHANGED_SCORE, CHANGED_STAGE])
        return {"contacts": len(contact_ids)}

    counts = job_run_chunks(job, id_chunks(sql, sql_params, apply, size=CHUNK), total=lambda: adhoc_target_count(params))
    return {"contacts": counts.get("contacts", 0)}
