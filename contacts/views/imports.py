"""CSV import (/contacts/import/): upload a file, map its columns, import it as a Job, and read
the row-error report."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language, pgettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from contacts.csvio import (
    IMPORT_FIELDS,
    MAX_FILE_BYTES,
    csv_lines,
    decode_upload,
    guess_mapping,
    read_header_and_preview,
)
from contacts.forms import ImportMappingForm, ImportUploadForm
from contacts.models import ContactImport
from contacts.tasks import contacts_import_task
from core.jobs import job_start
from core.models import Job
from core.roles import MARKETER, role_required


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            text = decode_upload(upload.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES])
            header, _preview = read_header_and_preview(text)
        except ValueError as exc:
            form.add_error("file", str(exc))
        else:
            contact_import = ContactImport.objects.create(
                filename=upload.name[:255], content=text, header=header, mapping=guess_mapping(header),
                created_by_id=request.user.pk,
            )
            return redirect("contacts:import_detail", import_id=contact_import.pk)
    recent = ContactImport.objects.only("pk", "filename", "status", "created_at", "total_rows", "imported_rows",
                                        "error_rows").order_by("-created_at")[:10]
    return render(request, "contacts/import.html", {"form": form, "recent": recent, "fields": IMPORT_FIELDS})


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    contact_import = get_object_or_404(ContactImport, pk=import_id)
    header = contact_import.header
    if request.method == "POST" and contact_import.status == ContactImport.Status.UPLOADED:
        form = ImportMappingForm(request.POST, header=header)
        if form.is_valid():
            contact_import.mapping = form.mapping()
            contact_import.status = ContactImport.Status.QUEUED
            # the row-error report is stored: the worker writes it in the uploader's language
            job = job_start(contacts_import_task, title=_("Import %(file)s") % {"file": contact_import.filename},
                            params={"import_id": contact_import.pk, "language": get_language()}, user=request.user)
            contact_import.job_id = job.pk
            contact_import.save(update_fields=["mapping", "status", "job_id"])
            return redirect("contacts:import_detail", import_id=contact_import.pk)
    else:
        form = ImportMappingForm(initial=contact_import.mapping, header=header)
    _header, preview = read_header_and_preview(contact_import.content)
    return render(request, "contacts/import_detail.html", {
        "contact_import": contact_import, "form": form, "header": header, "preview": preview,
        **_import_status_context(contact_import),
    })


def _import_status_context(contact_import: ContactImport) -> dict:
    job = Job.objects.filter(pk=contact_import.job_id).first() if contact_import.job_id else None
    return {"contact_import": contact_import, "job": job,
            "poll_url": reverse("contacts:import_status", kwargs={"import_id": contact_import.pk}),
            "errors_preview": contact_import.errors[:20] if contact_import.status == ContactImport.Status.DONE else []}


@require_GET
@role_required(MARKETER)
def import_status(request: HttpRequest, import_id: int) -> HttpResponse:
    contact_import = get_object_or_404(ContactImport.objects.defer("content"), pk=import_id)
    return render(request, "contacts/import_detail.html#status", _import_status_context(contact_import))


@require_GET
@role_required(MARKETER)
def import_errors(request: HttpRequest, import_id: int) -> StreamingHttpResponse:
    contact_import = get_object_or_404(ContactImport.objects.defer("content"), pk=import_id)
    # the report is read by people: its header in their language (the problems were written in the uploader's)
    header = [pgettext("csv header", "row"), pgettext("csv header", "column"), pgettext("csv header", "problem")]
    rows = [header, *contact_import.errors]
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{contact_import.pk}-errors.csv"'
    return response

