"""The contact list's CSV export as people get it: the button starts a job, the worker writes the
file, the job's page hands it out. Tests run the job's task in the test's own process."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from contacts.tasks import contacts_export_task
from core.models import Job


def export_start(client: Client, data: dict | None = None) -> Job:
    """POST the export form (``query``: the list's parameters, or ``ids``) without htmx; the job it started."""
    response = client.post(reverse("contacts:export"), data or {})
    assert response.status_code == 302, response.status_code
    match = re.fullmatch(r"/jobs/(\d+)/", response["Location"])
    assert match, response["Location"]
    return Job.objects.get(pk=int(match.group(1)))


def export_download(client: Client, job: Job) -> bytes:
    response = client.get(reverse("jobs:download", kwargs={"job_id": job.pk}))
    assert response.status_code == 200, response.status_code
    # read to the end: the test client then closes the file (closing the response again would
    # fire request_finished and close the test's database connection)
    return b"".join(response.streaming_content)


def export_csv(client: Client, data: dict | None = None) -> bytes:
    """The file "Export CSV" gives for ``data``: start the job, run it as the worker does, download it."""
    job = export_start(client, data)
    contacts_export_task.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.error
    return export_download(client, job)
