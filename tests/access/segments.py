"""Who may use the segment pages: Marketers build and change segments; every role may read
them (Sales see memberships on the contact card and in the list)."""

from core.roles import ADMIN, MARKETER, SALES


def _segment_id() -> int:
    from segments.models import Segment

    return Segment.objects.create(name="Matrix", definition={"type": "score", "op": "gte", "value": 1}).pk


def _contact_id() -> int:
    from tests.factories import ContactFactory

    return ContactFactory().pk


def _segment_job() -> dict:
    from core.models import Job

    segment_id = _segment_id()
    job = Job.objects.create(kind="segment_refresh", params={"segment_id": segment_id})
    return {"segment_id": segment_id, "job_id": job.pk}


READERS = {MARKETER, SALES, ADMIN}
WRITERS = {MARKETER, ADMIN}

ACCESS = {
    "segments:list": {"roles": READERS},
    "segments:create": {"roles": WRITERS},
    "segments:templates": {"roles": WRITERS},
    "segments:overlap": {"roles": READERS},
    "segments:builder_editor": {"roles": WRITERS, "method": "post"},
    "segments:builder_preview": {"roles": WRITERS, "method": "post"},
    "segments:tag_options": {"roles": WRITERS},
    "segments:card_panel": {"roles": READERS, "kwargs": lambda: {"contact_id": _contact_id()}},
    "segments:detail": {"roles": READERS, "kwargs": lambda: {"segment_id": _segment_id()}},
    "segments:edit": {"roles": WRITERS, "kwargs": lambda: {"segment_id": _segment_id()}},
    "segments:refresh": {"roles": WRITERS, "method": "post", "kwargs": lambda: {"segment_id": _segment_id()}},
    "segments:job": {"roles": READERS, "kwargs": _segment_job},
    # starts the CSV export job (the file is downloaded from the job's page: jobs:download)
    "segments:export": {"roles": WRITERS, "method": "post", "kwargs": lambda: {"segment_id": _segment_id()}},
    "segments:delete": {"roles": WRITERS, "method": "post", "kwargs": lambda: {"segment_id": _segment_id()}},
}
