"""Who may open the loyalty pages: Marketers read, Admins write; the card panel is for everyone
who sees contact cards."""

from __future__ import annotations

from core.roles import ADMIN, MARKETER, SALES


def _program_id() -> dict:
    from tests.loyalty.factories import make_program

    return {"program_id": make_program(recompute=False).pk}


def _job() -> dict:
    from core.models import Job
    from tests.loyalty.factories import make_program

    program = make_program(recompute=False)
    job = Job.objects.create(kind="loyalty_recompute", params={"program_id": program.pk})
    return {"program_id": program.pk, "job_id": job.pk}


def _contact() -> dict:
    from tests.factories import ContactFactory

    return {"contact_id": ContactFactory().pk}


def _program_contact() -> dict:
    from tests.factories import ContactFactory

    return {**_program_id(), "contact_id": ContactFactory().pk}


ACCESS = {
    "loyalty:programs": {"roles": {MARKETER, ADMIN}},
    "loyalty:program_detail": {"roles": {MARKETER, ADMIN}, "kwargs": _program_id},
    "loyalty:program_job": {"roles": {MARKETER, ADMIN}, "kwargs": _job},
    "loyalty:program_create": {"roles": {ADMIN}},
    "loyalty:program_edit": {"roles": {ADMIN}, "kwargs": _program_id},
    "loyalty:preview": {"roles": {ADMIN}, "method": "post"},
    "loyalty:program_recompute": {"roles": {ADMIN}, "method": "post", "kwargs": _program_id},
    "loyalty:program_switch": {"roles": {ADMIN}, "method": "post", "kwargs": _program_id},
    "loyalty:program_delete": {"roles": {ADMIN}, "method": "post", "kwargs": _program_id},
    "loyalty:card_panel": {"roles": {MARKETER, SALES, ADMIN}, "kwargs": _contact},
    "loyalty:pin": {"roles": {ADMIN}, "method": "post", "kwargs": _program_contact},
    "loyalty:unpin": {"roles": {ADMIN}, "method": "post", "kwargs": _program_contact},
}
