"""The Jobs pages: every area's background jobs, their progress and "run again"."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from core.htmx import render_page
from core.jobs import JOB_TASKS, job_field_label, job_restart, job_resumable, job_resume, user_may_start
from core.models import Job
from core.roles import ADMIN, MARKETER, STAFF, role_label, role_required

JOB_LIST_ROLES = (MARKETER, ADMIN)


@require_GET
@role_required(*JOB_LIST_ROLES)
def jobs(request: HttpRequest) -> HttpResponse:
    job_list = Job.objects.select_related("created_by").order_by("-created_at")
    status = request.GET.get("status", "")
    if status in Job.Status.values:
        job_list = job_list.filter(status=status)
    page = Paginator(job_list, 25).get_page(request.GET.get("page"))
    return render_page(request, "core/jobs.html", {
        "page_obj": page, "status": status, "statuses": Job.Status.choices,
    }, partial="results")


def _shown(value: object) -> object:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    return value


def _fields(values: dict, hidden: tuple[str, ...]) -> list[tuple[str, object]]:
    """A job's result or parameters as (label, value) lines, internal keys left out."""
    return [(job_field_label(key), _shown(value)) for key, value in values.items() if key not in hidden]


@require_GET
@role_required(*STAFF)
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    return render(request, "core/job_detail.html", {
        "job": job,
        "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk}),
        "can_restart": job.is_finished and user_may_start(request.user, job.kind),
        "can_resume": job_resumable(job) and user_may_start(request.user, job.kind),
        "rerun_roles": get_text_list([role_label(role) for role in getattr(JOB_TASKS.get(job.kind), "job_roles", ())], _("or")),
        "result_fields": _fields(job.result or {}, ("rule_id",)),
        "param_fields": _fields(job.params or {}, ("actions", "rule_id", "link")),
    })


@require_GET
@role_required(*STAFF)
def job_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """The progress fragment, polled every second; stops the polling once the job has finished."""
    job = get_object_or_404(Job, pk=job_id)
    response = render(request, "includes/job_progress.html", {
        "job": job, "poll_url": reverse("jobs:progress", kwargs={"job_id": job.pk}),
        "result_url": reverse("jobs:detail", kwargs={"job_id": job.pk}),
        "result_label": _("Details"),
    })
    if job.is_finished and request.htmx:
        # 286: htmx swaps this last render and stops polling; "<kind>-finished" lets the page
        # that started the job refresh what it changed (e.g. the Tags page after a recount)
        stop = HttpResponseStopPolling(response.content)
        stop["HX-Trigger"] = json.dumps({f"{job.kind}-finished": {"job": job.pk, "status": job.status}})
        return stop
    return response


@require_POST
@role_required(*JOB_LIST_ROLES)
def job_rerun(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    if job.kind in JOB_TASKS and not user_may_start(request.user, job.kind):
        # the roles that may start this kind of job (an Admin-only recompute stays Admin-only)
        raise PermissionDenied(_("Your role may not run this kind of job."))
    if not job.is_finished or job.kind not in JOB_TASKS:
        messages.error(request, _("Only a finished job of a known kind can be run again."))
        return redirect("jobs:detail", job_id=job.pk)
    new_job = job_restart(job, user=request.user)
    messages.success(request, _("Started again as job #%(number)s.") % {"number": new_job.pk})
    return redirect("jobs:detail", job_id=new_job.pk)


@require_POST
@role_required(*JOB_LIST_ROLES)
def job_continue(request: HttpRequest, job_id: int) -> HttpResponse:
    """"Continue" a failed job from its last committed chunk (same role rule as "Run again")."""
    job = get_object_or_404(Job, pk=job_id)
    if job.kind in JOB_TASKS and not user_may_start(request.user, job.kind):
        raise PermissionDenied(_("Your role may not run this kind of job."))
    if not job_resumable(job):
        messages.error(request, _("Only a failed job that got part of the way can continue."))
    elif job_resume(job):
        messages.success(request, _("Continuing from where it stopped."))
    return redirect("jobs:detail", job_id=job.pk)
