"""A segment's CSV export as people get it: the segment page's button starts a job, the worker writes
the file, the job's page hands it out. Tests run the job's task in the test's own process."""

from __future__ import annotations

import re

from django.db import connection
from django.test import Client
from django.urls import reverse

from core.models import Job
from segments.models import Segment
from segments.tasks import segment_export_task
from tests.contacts.exports import export_download


def stored_member_ids(segment: Segment) -> list[int]:
    """The segment's stored membership, read straight from its table (not through the code under
    test), in contact id order; anonymous profiles are never listed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.id FROM segments_segmentmember m JOIN contacts_contact c ON c.id = m.contact_id
            WHERE m.segment_id = %s AND NOT c.is_anonymous ORDER BY c.id
            """,
            [segment.pk],
        )
        return [row[0] for row in cursor.fetchall()]


def segment_export_start(client: Client, segment: Segment) -> Job:
    """POST the segment page's export form without htmx; the job it started."""
    response = client.post(reverse("segments:export", kwargs={"segment_id": segment.pk}))
    assert response.status_code == 302, response.status_code
    match = re.fullmatch(r"/jobs/(\d+)/", response["Location"])
    assert match, response["Location"]
    return Job.objects.get(pk=int(match.group(1)))


def segment_export_run(job: Job) -> Job:
    segment_export_task.run(job.pk)
    job.refresh_from_db()
    return job


def segment_export_csv(client: Client, segment: Segment) -> bytes:
    """The file "Export CSV" on the segment's page gives: start the job, run it as the worker does,
    download it."""
    job = segment_export_run(segment_export_start(client, segment))
    assert job.status == Job.Status.DONE, job.error
    return export_download(client, job)
