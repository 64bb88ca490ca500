"""API v1: temperature thresholds, funnels and their report, and moving a contact's stage."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict, StrictInt

from contacts.models import Contact, normalize_email
from contacts.services import contact_representation
from core.api import ApiError, CleanStr, DetailOut, Id, text
from leads.funnels import contact_stage_set, funnel_find, funnel_report
from leads.models import Funnel, Stage, TemperatureSettings
from leads.temperature import THRESHOLD_LIMIT, thresholds_errors, thresholds_save

router = Router(tags=["scoring and funnels"])


class TemperatureIn(Schema):
    model_config = ConfigDict(extra="forbid")

    warm: StrictInt = Field(..., ge=0, le=THRESHOLD_LIMIT, description="warm from this score; at least 0")
    hot: StrictInt = Field(..., ge=1, le=THRESHOLD_LIMIT, description="hot from this score; greater than warm")


class TemperatureOut(Schema):
    warm: int
    hot: int


@router.get("/settings/temperature", response=TemperatureOut)
def temperature_get(request: HttpRequest):
    thresholds = TemperatureSettings.current()
    return {"warm": thresholds.warm, "hot": thresholds.hot}


@router.put("/settings/temperature", response={200: TemperatureOut})
def temperature_put(request: HttpRequest, payload: TemperatureIn):
    errors = thresholds_errors(payload.warm, payload.hot)
    if errors:
        raise ApiError(errors)
    saved = thresholds_save(warm=payload.warm, hot=payload.hot)
    return Status(200, {"warm": saved.warm, "hot": saved.hot})


# --- funnels -------------------------------------------------------------------------------------
# Lengths and counts are checked by ``funnel_errors`` (the funnel form's validator too).
StageName = Annotated[CleanStr, Field(json_schema_extra={"maxLength": 100})]


class FunnelIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[CleanStr, Field(json_schema_extra={"maxLength": 100})]
    stages: Annotated[list[StageName], Field(json_schema_extra={"maxItems": 50})]
    description: text(2000) = ""  # type: ignore[valid-type]


class FunnelOut(Schema):
    id: int
    name: str
    description: str
    stages: list[str]


class FunnelList(Schema):
    results: list[FunnelOut]
    count: int


def funnel_payload(funnel: Funnel) -> dict:
    return {
        "id": funnel.pk,
        "name": funnel.name,
        "description": funnel.description,
        "stages": [stage.name for stage in funnel.stages.all()],
    }


def funnel_errors(name: str, stages: list[str], *, exclude_pk: int | None = None) -> list[dict]:
    """Validation shared by the API and the funnel form."""
    errors: list[dict] = []
    clean_name = (name or "").strip()
    if not clean_name:
        errors.append({"field": "name", "message": _("A funnel needs a name.")})
    elif len(clean_name) > 100:
        errors.append({"field": "name", "message": _("At most 100 characters.")})
    else:
        clash = Funnel.objects.filter(name__iexact=clean_name)
        if exclude_pk is not None:
            clash = clash.exclude(pk=exclude_pk)
        if clash.exists():
            errors.append({"field": "name", "message": _("A funnel named “%(name)s” already exists.") % {"name": clean_name}})
    if not stages:
        errors.append({"field": "stages", "message": _("A funnel needs at least one stage.")})
    elif len(stages) > 50:
        errors.append({"field": "stages", "message": _("At most 50 stages.")})
    seen: set[str] = set()
    for index, stage in enumerate(stages or []):
        clean = (stage or "").strip()
        if not clean:
            errors.append({"field": f"stages.{index}", "message": _("A stage needs a name.")})
        elif len(clean) > 100:
            errors.append({"field": f"stages.{index}", "message": _("At most 100 characters.")})
        elif clean.lower() in seen:
            errors.append({"field": f"stages.{index}", "message": _("“%(name)s” appears twice.") % {"name": clean}})
        seen.add(clean.lower())
    return errors


def funnel_create(*, name: str, stages: list[str], description: str = "") -> Funnel:
    with transaction.atomic():
        funnel = Funnel.objects.create(name=name.strip(), description=(description or "").strip())
        Stage.objects.bulk_create(
            [Stage(funnel=funnel, name=stage.strip(), position=index) for index, stage in enumerate(stages)]
        )
    return funnel


@router.get("/funnels", response=FunnelList)
def funnels_list(request: HttpRequest):
    funnels = list(Funnel.objects.prefetch_related("stages").order_by("name")[:1000])
    return {"results": [funnel_payload(funnel) for funnel in funnels], "count": len(funnels)}


@router.post("/funnels", response={201: FunnelOut})
def funnels_create(request: HttpRequest, payload: FunnelIn):
    errors = funnel_errors(payload.name, payload.stages)
    if errors:
        raise ApiError(errors)
    try:
        funnel = funnel_create(name=payload.name, stages=payload.stages, description=payload.description)
    except IntegrityError:  # a concurrent create with the same name won the race
        raise ApiError.field("name", "A funnel with this name already exists.") from None
    return Status(201, funnel_payload(Funnel.objects.prefetch_related("stages").get(pk=funnel.pk)))


@router.get("/funnels/{funnel_id}", response={200: FunnelOut, 404: DetailOut})
def funnels_get(request: HttpRequest, funnel_id: Id):
    funnel = Funnel.objects.prefetch_related("stages").filter(pk=funnel_id).first()
    if funnel is None:
        return Status(404, {"detail": f"No funnel with id {funnel_id}."})
    return Status(200, funnel_payload(funnel))


@router.delete("/funnels/{funnel_id}", response={204: None, 404: DetailOut})
def funnels_delete(request: HttpRequest, funnel_id: Id):
    deleted, _ = Funnel.objects.filter(pk=funnel_id).delete()
    if not deleted:
        return Status(404, {"detail": f"No funnel with id {funnel_id}."})
    return Status(204, None)


class StageReport(Schema):
    name: str
    count: int
    entered: int
    conversion_to_next: float | None
    median_days_in_stage: float | None


class FunnelReportOut(Schema):
    id: int
    name: str
    start: date | None
    end: date | None
    stages: list[StageReport]


def day_range(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive calendar days in the site's time zone → a half-open [start, end) instant range."""
    zone = timezone.get_current_timezone()
    start_at = datetime.combine(start, time.min, tzinfo=zone) if start else None
    end_at = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone) if end else None
    return start_at, end_at


@router.get("/funnels/{funnel_id}/report", response={200: FunnelReportOut, 404: DetailOut})
def funnels_report(request: HttpRequest, funnel_id: Id, start: date | None = None, end: date | None = None):
    """Per stage, in order: ``count`` (contacts in it now), ``entered`` (distinct contacts who
    moved into it between ``start`` and ``end``, inclusive days; all time by default),
    ``conversion_to_next`` (entered of the next stage / entered of this one; null for the last
    stage or when nobody entered), ``median_days_in_stage`` (median length of the stays that began
    in the range, measured to the next move in this funnel or to now)."""
    funnel = Funnel.objects.filter(pk=funnel_id).first()
    if funnel is None:
        return Status(404, {"detail": f"No funnel with id {funnel_id}."})
    if start and end and start > end:
        raise ApiError.field("end", "The end date is before the start date.")
    start_at, end_at = day_range(start, end)
    return Status(200, {
        "id": funnel.pk,
        "name": funnel.name,
        "start": start,
        "end": end,
        "stages": funnel_report(funnel, start=start_at, end=end_at),
    })


# --- a contact's stage ---------------------------------------------------------------------------
class StageIn(Schema):
    model_config = ConfigDict(extra="forbid")

    funnel: Annotated[CleanStr, Field(max_length=100)]
    stage: Annotated[CleanStr, Field(max_length=100)]


@router.put("/contacts/by-email/stages", response={200: dict, 404: DetailOut})
def contact_stage_put_by_email(request: HttpRequest, payload: StageIn,
                               email: str = Query(..., max_length=254, description="the contact's email (any case)")):
    """``PUT /contacts/{email}/stages`` for any email, ``/`` included."""
    return contact_stage_put(request, email, payload)


@router.put("/contacts/{email}/stages", response={200: dict, 404: DetailOut})
def contact_stage_put(request: HttpRequest, email: str, payload: StageIn):
    contact = Contact.objects.filter(email=normalize_email(email)).first()
    if contact is None:
        return Status(404, {"detail": f"No contact with email {normalize_email(email)}."})
    funnel = funnel_find(payload.funnel)
    if funnel is None:
        raise ApiError.field("funnel", f"No funnel named “{payload.funnel.strip()}”.")
    stage = funnel.stages.filter(name__iexact=payload.stage.strip()).first()
    if stage is None:
        names = ", ".join(funnel.stages.values_list("name", flat=True))
        raise ApiError.field("stage", f"Funnel “{funnel.name}” has no stage “{payload.stage.strip()}” (stages: {names}).")
    stage.funnel = funnel
    contact_stage_set(contact_id=contact.pk, stage=stage, cause="api")
    contact.refresh_from_db()
    return Status(200, contact_representation(contact))
