"""The Jobs pages: every area's background jobs, their progress, "run again", and the download of
the file a job wrote (a CSV export) by whoever started it."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from core.htmx import render_page
from core.jobs import JOB_TASKS, job_field_label, job_restart, job_resumable, job_resume, user_may_start
from core.jobs.files import job_file
from core.models import Job
from core.roles import ADMIN, MARKETER, STAFF, has_role, role_label, role_required

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
    """A job's result or parameters as (label, value) lines, internal keys left out; a list's
    filters (``query``) as people read them (``city=gdańsk``, not ``city=gda%C5%84sk``)."""
    return [(job_field_label(key), unquote_plus(value) if key == "query" and isinstance(value, str) else _shown(value))
            for key, value in values.items() if key not in hidden]


def may_download(user: object, job: Job) -> bool:
    """A job's file (contacts' data) is for whoever started the job, while their role may still
    start such jobs, and for admins; everyone else may see the job's page but not its file."""
    if has_role(user, ADMIN):
        return True
    return job.created_by_id is not None and job.created_by_id == getattr(user, "pk", None) and user_may_start(
        user, job.kind)


def _file_context(request: HttpRequest, job: Job) -> dict:
    return {"job_file": job_file(job), "can_download": may_download(request.user, job)}


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
        "result_fields": _fields(job.result or {}, ("rule_id", "file")),
        "param_fields": _fields(job.params or {}, ("actions", "rule_id", "link")),
        **_file_context(request, job),
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
        **_file_context(request, job),
    })
    if job.is_finished and request.htmx:
        # 286: htmx swaps this last render and stops polling; "<kind>-finished" lets the page
        # that started the job refresh what it changed (e.g. the Tags page after a recount)
        stop = HttpResponseStopPolling(response.content)
        stop["HX-Trigger"] = json.dumps({f"{job.kind}-finished": {"job": job.pk, "status": job.status}})
        return stop
    return response


@require_GET
@role_required(*STAFF)
def job_download(request: HttpRequest, job_id: int) -> HttpResponse:
    """The file the job wrote, as an attachment: 404 for anyone but its starter and admins (the
    page does not say whose file exists); back to the job's page once the file has expired."""
    job = get_object_or_404(Job, pk=job_id)
    found = job_file(job)
    if found is None or not may_download(request.user, job):
        raise Http404
    try:
        if not found.available:
            raise FileNotFoundError(found.path)
        handle = found.path.open("rb")
    except FileNotFoundError:
        messages.warning(request, _("The file has expired; run the job again for a new one."))
        return redirect("jobs:detail", job_id=job.pk)
    response = FileResponse(handle, as_attachment=True, filename=found.name, content_type=found.content_type)
    patch_cache_control(response, private=True, no_store=True)
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
