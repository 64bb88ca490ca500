"""Workflows of the automation area that the views and the API share: starting jobs, previews,
rule counts for the list."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from automation.models import Rule
from automation.rules import rule_points, rule_save, template_sql
from automation.tasks import rule_backfill_task
from core.conditions import compile_conditions
from core.jobs import job_start
from core.models import Job


def rule_backfill_start(rule: Rule, *, since: datetime, user=None) -> Job:
    local = timezone.localtime(since)
    return job_start(
        rule_backfill_task,
        title=gettext("Run rule “%(name)s” on events since %(since)s") % {"name": rule.name, "since": f"{local:%Y-%m-%d %H:%M}"},
        params={"rule_id": rule.pk, "since": since.isoformat()},
        user=user,
        link=(gettext("Rule"), rule.name, reverse("automation:rule_edit", kwargs={"rule_id": rule.pk})),
    )


def rule_fired_counts(rule_ids: list[int]) -> dict[int, dict[str, int]]:
    """How many times each rule fired in the last 7 and 30 days (one grouped query)."""
    if not rule_ids:
        return {}
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT rule_id,
                   count(*) FILTER (WHERE applied_at >= %s),
                   count(*)
            FROM automation_ruleapplication
            WHERE rule_id = ANY(%s::bigint[]) AND applied_at >= %s
            GROUP BY rule_id
            """,
            [now - timedelta(days=7), rule_ids, now - timedelta(days=30)],
        )
        counts = {rule_id: {"days7": d7, "days30": d30} for rule_id, d7, d30 in cursor.fetchall()}
    return {rule_id: counts.get(rule_id, {"days7": 0, "days30": 0}) for rule_id in rule_ids}


def rule_preview(
    *,
    event_type: str,
    conditions: list[dict],
    actions: list[dict],
    once_per_contact: bool = False,
    max_points_per_contact: int | None = None,
    days: int = 30,
) -> dict:
    """What the rule would have done over the last ``days`` days — events it would fire on,
    contacts, points handed out and the top tags — computed read-only (nothing is written)."""
    since = timezone.now() - timedelta(days=days)
    conditions_sql, condition_params = compile_conditions(conditions, properties_sql="e.properties")
    points = rule_points(actions)
    cap = max_points_per_contact if points > 0 else None
    distinct = "DISTINCT ON (e.contact_id)" if once_per_contact else ""
    order = "ORDER BY e.contact_id, e.occurred_at, e.id" if once_per_contact else ""
    candidates = f"""
        cand AS (
            SELECT {distinct} e.id, e.contact_id, e.occurred_at, e.properties
            FROM automation_event e
            WHERE e.type = %s AND e.occurred_at >= %s AND {conditions_sql}
            {order}
        )
    """
    params = [event_type, since, *condition_params]
    per_contact_points = f"LEAST(n * {points}, {cap})" if cap else f"n * {points}"
    result = {"days": days, "events": 0, "contacts": 0, "points": 0, "top_tags": [], "timed_out": False,
              "webhook_calls": 0}
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '15s'")
            cursor.execute(
                f"""
                WITH {candidates}, per_contact AS (SELECT contact_id, count(*) AS n FROM cand GROUP BY contact_id)
                SELECT coalesce(sum(n), 0), count(*), coalesce(sum({per_contact_points}), 0) FROM per_contact
                """,
                params,
            )
            events, contacts, total_points = cursor.fetchone()
            result.update(events=int(events), contacts=int(contacts), points=int(total_points))
            # one call per firing and send_webhook action
            result["webhook_calls"] = int(events) * sum(1 for action in actions if action.get("type") == "send_webhook")
            tag_counts: dict[str, int] = {}
            for action in actions:
                if action.get("type") != "add_tag":
                    continue
                name_sql = template_sql(action["tag"], properties_sql="properties")
                cursor.execute(
                    f"""
                    WITH {candidates}
                    SELECT name, count(*) FROM (SELECT {name_sql} AS name FROM cand) t
                    WHERE name IS NOT NULL GROUP BY name ORDER BY count(*) DESC, name LIMIT 10
                    """,
                    params,
                )
                for name, count in cursor.fetchall():
                    tag_counts[name] = tag_counts.get(name, 0) + int(count) * int(action.get("score", 1))
            result["top_tags"] = sorted(tag_counts.items(), key=lambda item: (-item[1], item[0]))[:8]
    except Exception as exc:  # a statement timeout on a huge table: say so instead of failing the page
        if "statement timeout" not in str(exc):
            raise
        result["timed_out"] = True
    return result


def rule_set_active(rule: Rule, active: bool) -> Rule:
    with transaction.atomic():
        return rule_save(rule, {"active": active})

