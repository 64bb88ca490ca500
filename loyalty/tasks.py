"""Loyalty background work: the full recompute (a Job with progress) and due downgrades (beat)."""

from __future__ import annotations

from celery import shared_task

from core.jobs import Progress, job_task
from core.models import Job
from loyalty.models import Program
from loyalty.services import program_recompute, tiers_apply_due
from marketing_hub.celery import app


@job_task("loyalty_recompute")
def program_recompute_task(job: Job, progress: Progress) -> dict:
    """One set-based statement for the programme; progress goes 0 → 1 around it."""
    program = Program.objects.filter(pk=job.params["program_id"]).first()
    if program is None:
        return {"skipped": "the programme was deleted"}
    progress.update(0, 1)
    result = program_recompute(program, user=job.created_by, reason=job.params.get("reason") or "Full recompute")
    progress.update(1, 1)
    return result


@shared_task(name="loyalty.tasks.tiers_apply_due_task")
def tiers_apply_due_task() -> int:
    """Downgrades whose grace period ended, and pins past their date."""
    return tiers_apply_due()


app.conf.beat_schedule["loyalty-apply-due-downgrades"] = {
    "task": "loyalty.tasks.tiers_apply_due_task",
    "schedule": 15 * 60.0,
}


@shared_task(name="loyalty.tasks.programs_recompute_daily_task")
def programs_recompute_daily_task() -> int:
    """Rolling windows ("purchases in the last 365 days") change with time alone, and manual tag
    edits do not go through the rules engine: a daily full recompute catches both (it writes only
    the rows that change)."""
    count = 0
    for program in Program.objects.all():
        program_recompute(program, reason="Daily recompute")
        count += 1
    return count


app.conf.beat_schedule["loyalty-daily-recompute"] = {
    "task": "loyalty.tasks.programs_recompute_daily_task",
    "schedule": 24 * 60 * 60.0,
}
