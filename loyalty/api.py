"""Loyalty API (docs/api-v1.md, Loyalty). Mounted under /api/v1/ by marketing_hub.api.

Bodies are validated by ``loyalty.services`` (one set of rules for the API and the editor), so each
error names its field, e.g. ``{"field": "tiers.1.min", "message": "..."}``.

Bodies are parsed by the API (``core.api``) and documented by the models below.

``POST /loyalty/programs`` and ``PUT /loyalty/programs/{id}`` save and recompute in one transaction
before answering: a following ``GET /contacts/{email}`` shows the new tiers, and a failure leaves
nothing half-written. The response carries the recompute's numbers under ``recompute``. (The
browser editor runs the same recompute as a background Job with progress instead.)

``active`` is the programme's switch, as in the browser: ``false`` freezes every contact's tier (no
recompute, no refresh by events, no grace-period drops); switching it on again recomputes at once.
It goes through ``program_switch``, so the audit trail records it like the page's button.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pghistory
from django.db import transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict, StrictBool

from core.api import ApiError, CheckedBody, CleanStr, DetailOut, Id, text
from core.audit import api_actor
from loyalty.metrics import MAX_WITHIN_DAYS
from loyalty.models import Program
from loyalty.services import (
    MAX_MIN,
    program_delete,
    program_input_clean,
    program_recompute,
    program_save,
    program_switch,
    tiers_clean,
    tiers_preview,
)

router = Router(tags=["loyalty"])


# --- bodies: the models document them, ``loyalty.services`` (the editor's validator) checks them --
class TagScoreMetric(Schema):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tag_score"]
    tag: Annotated[CleanStr, Field(min_length=1, max_length=100)]


class PurchaseCountMetric(Schema):
    model_config = ConfigDict(extra="forbid")
    type: Literal["purchase_count"]
    within_days: Annotated[int, Field(ge=1, le=MAX_WITHIN_DAYS)] | None = Field(None, description="null: all time")


class PurchaseTotalMetric(Schema):
    model_config = ConfigDict(extra="forbid")
    type: Literal["purchase_total"]
    within_days: Annotated[int, Field(ge=1, le=MAX_WITHIN_DAYS)] | None = Field(None, description="null: all time")


class ScoreMetric(Schema):
    model_config = ConfigDict(extra="forbid")
    type: Literal["score"]


Metric = Annotated[TagScoreMetric | PurchaseCountMetric | PurchaseTotalMetric | ScoreMetric, Field(discriminator="type")]


BenefitText = text(500)


class Benefits(Schema):
    model_config = ConfigDict(extra="forbid")
    discount_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    free_shipping: StrictBool | None = None
    gift: BenefitText | None = None  # type: ignore[valid-type]
    text: BenefitText | None = None  # type: ignore[valid-type]


class TierIn(Schema):
    model_config = ConfigDict(extra="forbid")
    name: text(100, min_length=1)  # type: ignore[valid-type]
    min: Annotated[float, Field(ge=-float(MAX_MIN), le=float(MAX_MIN), description="at most 2 decimal places")]
    benefits: Benefits | None = None


Tiers = Annotated[list[TierIn], Field(min_length=1, description="lowest threshold first, each higher than the one before")]


def _checked_program(data: Any, program: Program | None) -> dict:
    """The programme's settings (``program_input_clean``) and, apart, its switch: ``active`` is
    absent from the result when the body leaves it out (a PUT keeps it; a POST creates it on)."""
    data = dict(data)
    errors = []
    has_active = "active" in data
    active = data.pop("active", None)
    if has_active and not isinstance(active, bool):
        errors.append({"field": "active", "message": "must be true or false"})
    cleaned, setting_errors = program_input_clean(data, program=program)
    errors += [error.as_dict() for error in setting_errors]
    if errors:
        raise ApiError(errors)
    if has_active:
        cleaned["active"] = active
    return cleaned


class ProgramIn(CheckedBody):
    name: text(100, min_length=1)  # type: ignore[valid-type]
    description: text(2000) = ""  # type: ignore[valid-type]
    metric: Metric
    tiers: Tiers
    downgrade_policy: Literal[tuple(Program.Downgrade.values)] = Program.Downgrade.IMMEDIATE  # type: ignore[valid-type]
    grace_days: Annotated[int, Field(ge=0, le=3650)] = 0
    active: StrictBool = Field(True, description="false: switched off, every contact's tier frozen (no recompute); "
                                                 "true again recomputes at once")

    @classmethod
    def check(cls, data: Any) -> Any:
        # The name's uniqueness and the update's merge need the database and the programme:
        # the view calls ``program_input_clean`` itself; this only refuses non-objects early.
        if not isinstance(data, dict):
            raise ApiError.field("body", "must be a JSON object")
        return data


class ProgramUpdate(ProgramIn):
    """Any subset of a programme's settings; the others keep their values."""

    name: text(100, min_length=1) | None = None  # type: ignore[valid-type]
    metric: Metric | None = None
    tiers: Tiers | None = None
    active: StrictBool | None = Field(None, description="absent: unchanged")


class PreviewIn(CheckedBody):
    model_config = ConfigDict(extra="forbid")
    tiers: Tiers

    @classmethod
    def check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ApiError.field("body", "must be a JSON object with tiers")
        unknown = set(data) - {"tiers"}
        if unknown:
            raise ApiError.field(sorted(unknown)[0], "is not a preview setting; send {\"tiers\": [...]}")
        if "tiers" not in data:
            raise ApiError.field("tiers", "is required")
        specs, errors = tiers_clean(data["tiers"])
        if errors:
            raise ApiError([error.as_dict() for error in errors])
        return specs


class TierOut(Schema):
    id: int
    name: str
    min: float
    benefits: dict[str, Any]


class ProgramOut(Schema):
    id: int
    name: str
    description: str
    metric: dict[str, Any]
    downgrade_policy: str
    grace_days: int
    active: bool
    tiers: list[TierOut]
    version: int
    recomputed_at: str | None


class ProgramSavedOut(ProgramOut):
    recompute: dict[str, Any]


class ProgramList(Schema):
    results: list[ProgramOut]
    count: int


class PreviewOut(Schema):
    up: int
    down: int
    unchanged: int
    pending_down: int = Field(0, description="drops postponed by a grace period")
    no_tier: int = Field(0, description="contacts below the lowest tier")
    distribution: dict[str, int]


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
        "active": program.active,
        "tiers": [
            {"id": tier.pk, "name": tier.name, "min": float(tier.min), "benefits": tier.benefits}
            for tier in program.tiers.active().order_by("min")
        ],
        "version": program.version,
        "recomputed_at": program.recomputed_at.isoformat() if program.recomputed_at else None,
    }


@router.get("/loyalty/programs", response=ProgramList)
def programs_list(request: HttpRequest):
    programs = [program_representation(program) for program in Program.objects.prefetch_related("tiers")]
    return {"results": programs, "count": len(programs)}


@router.post("/loyalty/programs", response={201: ProgramSavedOut})
def program_create(request: HttpRequest, payload: ProgramIn):
    cleaned = _checked_program(payload.cleaned, None)
    return Status(201, _save_and_recompute(request, None, cleaned, reason="Programme created"))


def _save_and_recompute(request: HttpRequest, program: Program | None, cleaned: dict, *, reason: str) -> dict:
    """Save and recompute in one transaction, so a following GET is current and a failure writes nothing."""
    tiers = cleaned.pop("tiers", None)
    active = cleaned.pop("active", None)
    with transaction.atomic(), pghistory.context(**api_actor(request)):
        program = program_save(program, tiers=tiers, **cleaned)
        # the page's switch: switched off, the recompute below reports the frozen tiers and moves
        # nobody; switched on, it catches up at once
        if active is not None:
            program_switch(program, active=active)
        result = program_recompute(program, reason=reason)
    program.refresh_from_db()
    return {**program_representation(program), "recompute": result}


@router.get("/loyalty/programs/{program_id}", response={200: ProgramOut, 404: DetailOut})
def program_get(request: HttpRequest, program_id: Id):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    return Status(200, program_representation(program))


@router.put("/loyalty/programs/{program_id}", response={200: ProgramSavedOut, 404: DetailOut})
def program_update(request: HttpRequest, program_id: Id, payload: ProgramUpdate):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    cleaned = _checked_program(payload.cleaned, program)
    return Status(200, _save_and_recompute(request, program, cleaned, reason="Programme changed through the API"))


@router.delete("/loyalty/programs/{program_id}", response={204: None, 404: DetailOut})
def program_remove(request: HttpRequest, program_id: Id):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    with pghistory.context(**api_actor(request)):
        program_delete(program)
    return Status(204, None)


@router.post("/loyalty/programs/{program_id}/preview", response={200: PreviewOut, 404: DetailOut})
def program_preview(request: HttpRequest, program_id: Id, payload: PreviewIn):
    program = Program.objects.filter(pk=program_id).first()
    if program is None:
        return _not_found(program_id)
    return Status(200, tiers_preview(program, payload.cleaned))
