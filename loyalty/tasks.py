"""Loyalty background work: the full recompute (a Job with progress) and due downgrades (beat)."""

from __future__ import annotations

from celery import shared_task
from django.utils.translation import gettext_lazy

from core.jobs import Progress, job_run_chunks, job_task, single_chunk
from core.models import Job
from core.roles import ADMIN
from loyalty.models import Program
from loyalty.services import program_recompute, tiers_apply_due


@job_task("loyalty_recompute", roles=(ADMIN,), label=gettext_lazy("Loyalty tier recompute"))
def program_recompute_task(job: Job, progress: Progress) -> dict:
    """One set-based statement for the programme, as a single chunk of the job runner: its result
    commits with the job's resume point, so a redelivery after the commit only reports it."""
    program = Program.objects.filter(pk=job.params["program_id"]).first()
    if program is None:
        return {"skipped": "the programme was deleted"}
    if not program.active:
        return {"skipped": "the programme is switched off; its tiers are frozen"}

    def recompute(cursor) -> dict:
        return program_recompute(program, user=job.created_by, reason=job.params.get("reason") or "Full recompute")

    return job_run_chunks(job, single_chunk(recompute), total=1)


@shared_task(name="loyalty.tasks.tiers_apply_due_task")
def tiers_apply_due_task() -> int:
    """Downgrades whose grace period ended, and pins past their date."""
    return tiers_apply_due()


@shared_task(name="loyalty.tasks.programs_recompute_daily_task")
def programs_recompute_daily_task() -> int:
    """Rolling windows ("purchases in the last 365 days") change with time alone, and manual tag
    edits do not go through the rules engine: a daily full recompute catches both (it writes only
    the rows that change)."""
    count = 0
    for program in Program.objects.filter(active=True):
        program_recompute(program, reason="Daily recompute")
        count += 1
    return count
