"""Loyalty API (spec/api-v1.md, Loyalty). Mounted under /api/v1/ by marketing_hub.api.

Bodies are validated by ``loyalty.services`` (one set of rules for the API and the editor), so each
error names its field, e.g. ``{"field": "tiers.1.min", "message": "..."}``.

``POST /loyalty/programs`` and ``PUT /loyalty/programs/{id}`` save and recompute in one transaction
before answering: a following ``GET /contacts/{email}`` shows the new tiers, and a failure leaves
nothing half-written. The response carries the recompute's numbers under ``recompute``. (The
browser editor runs the same recompute as a background Job with progress instead.)
"""

from __future__ import annotations

import json

import pghistory
from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Status

from core.audit import api_actor
from loyalty.models import Program
from loyalty.services import (
    program_delete,
    program_input_clean,
    program_recompute,
    program_save,
    tiers_clean,
    tiers_preview,
)

router = Router(tags=["loyalty"])


def _body(request: HttpRequest):
    try:
        return json.loads(request.body or b"null"), None
    except (ValueError, UnicodeDecodeError):
        return None, Status(400, {"errors": [{"field": "body", "message": "is not valid JSON"}]})


def _errors(errors) -> Status:
    return Status(400, {"errors": [error.as_dict() for error in errors]})


def _not_found(program_id: int) -> Status:
    return Status(404, {"detail": f"No loyalty programme with id {program_id}."})


def program_representation(program: Program) -> dict:
    return {
        "id": program.pk,
        "name": program.name,
        "description": program.description,
        "metric": program.metric,
        "downgrade_policy": program.downgrade_policy,
        "grace_days": program.grace_days,
        "tiers": [
            {"id": tier.pk, "name": tier.name, "min": float(tier.min), "benefits": tier.benefits}
            for tier in program.tiers.active().order_by("min")
        ],
        "version": program.version,
        "recomputed_at": program.recomputed_at.isoformat() if program.recomputed_at else None,
    }


@router.get("/loyalty/programs")
def programs_list(request: HttpRequest):
    return {"results": [program_representation(program) for program in Program.objects.prefetch_related("tiers")]}


@router.post("/loyalty/programs", response={201: dict, 400: dict})
def program_create(request: HttpRequest):
    data, error = _body(request)
    if error:
        return error
    cleaned, errors = program_input_clean(data)
    if errors:
        return _errors(errors)
    return Status(201, _save_and_recompute(request, None, cleaned, reason="Programme created"))


def _save_and_recompute(request: HttpRequest, program: Program | None, cleaned: dict, *, reason: str) -> dict:
    """Save and recompute in one transaction, so a following GET is current and a failure writes nothing."""
    tiers = cleaned.pop("tiers", None)
    with transaction.atomic(), pghistory.context(**api_actor(request)):
        program = program_save(program, tiers=tiers, **cleaned)
        result = program_recompute(program, reason=reason)
    program.refresh_from_db()
    return {**program_representation(program), "recompute": result}


@router.get("/loyalty/programs/{program_id}", response={200: dict, 404: dict})
def program_get(request: HttpRequest, program_id: int):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    return Status(200, program_representation(program))


@router.put("/loyalty/programs/{program_id}", response={200: dict, 400: dict, 404: dict})
def program_update(request: HttpRequest, program_id: int):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    data, error = _body(request)
    if error:
        return error
    cleaned, errors = program_input_clean(data, program=program)
    if errors:
        return _errors(errors)
    return Status(200, _save_and_recompute(request, program, cleaned, reason="Programme changed through the API"))


@router.delete("/loyalty/programs/{program_id}", response={204: None, 404: dict})
def program_remove(request: HttpRequest, program_id: int):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    with pghistory.context(**api_actor(request)):
        program_delete(program)
    return Status(204, None)


@router.post("/loyalty/programs/{program_id}/preview", response={200: dict, 400: dict, 404: dict})
def program_preview(request: HttpRequest, program_id: int):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    data, error = _body(request)
    if error:
        return error
    if not isinstance(data, dict):
        return Status(400, {"errors": [{"field": "body", "message": "must be a JSON object with tiers"}]})
    unknown = set(data) - {"tiers"}
    if unknown:
        return Status(400, {"errors": [{"field": sorted(unknown)[0], "message": "is not a preview setting; send {\"tiers\": [...]}"}]})
    if "tiers" not in data:
        return Status(400, {"errors": [{"field": "tiers", "message": "is required"}]})
    specs, errors = tiers_clean(data["tiers"])
    if errors:
        return _errors(errors)
    return Status(200, tiers_preview(program, specs))
