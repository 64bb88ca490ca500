"""API v1: segments — live preview, create, read, members (and, beyond the contract, list,
update and delete). Definitions are validated by ``segments.validation``: errors name the node
path, prefixed with ``definition.`` (``definition.all[1].any[0].value``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import StrictBool

from segments.models import Segment
from segments.services import (
    segment_members_queryset,
    segment_preview,
    segment_save,
)
from segments.validation import DefinitionError, validate_definition

router = Router(tags=["segments"])

MEMBERS_PAGE_SIZE = 100
NAME_MAX = 200


class PreviewIn(Schema):
    definition: Any


class PreviewOut(Schema):
    count: int
    sample: list[str]


class SegmentIn(Schema):
    name: str
    definition: Any
    description: str = ""
    for_sending: StrictBool = False


class SegmentPatch(Schema):
    name: str | None = None
    definition: Any = None
    description: str | None = None
    for_sending: StrictBool | None = None


class SegmentOut(Schema):
    id: int
    name: str
    definition: Any
    count: int | None
    refreshed_at: Any
    for_sending: bool
    description: str


class SegmentList(Schema):
    results: list[SegmentOut]
    count: int


class MembersOut(Schema):
    count: int
    results: list[str]
    next: str | None


class ErrorItem(Schema):
    field: str
    message: str


class ErrorsOut(Schema):
    errors: list[ErrorItem]


class DetailOut(Schema):
    detail: str


def segment_payload(segment: Segment) -> dict:
    return {
        "id": segment.pk,
        "name": segment.name,
        "definition": segment.definition,
        "count": segment.count,
        "refreshed_at": segment.refreshed_at.isoformat() if segment.refreshed_at else None,
        "for_sending": segment.for_sending,
        "description": segment.description,
    }


def _name_errors(name: str | None) -> list[dict]:
    clean = (name or "").strip()
    if not clean:
        return [{"field": "name", "message": "A segment needs a name."}]
    if len(clean) > NAME_MAX:
        return [{"field": "name", "message": f"At most {NAME_MAX} characters."}]
    return []


def _not_found(segment_id: int):
    return Status(404, {"detail": f"No segment with id {segment_id}."})


@router.post("/segments/preview", response={200: PreviewOut, 400: ErrorsOut})
def segments_preview(request: HttpRequest, payload: PreviewIn):
    """Count and up to 20 emails of a definition, live (nothing is saved)."""
    try:
        validate_definition(payload.definition)
    except DefinitionError as exc:
        return Status(400, {"errors": exc.as_api_errors()})
    preview = segment_preview(payload.definition, timeout_ms=None)
    return Status(200, {"count": preview.count, "sample": preview.emails})


@router.get("/segments", response=SegmentList)
def segments_list(request: HttpRequest):
    segments = list(Segment.objects.order_by("name", "pk")[:1000])
    return {"results": [segment_payload(segment) for segment in segments], "count": len(segments)}


@router.post("/segments", response={201: SegmentOut, 400: ErrorsOut})
def segments_create(request: HttpRequest, payload: SegmentIn):
    errors = _name_errors(payload.name)
    try:
        validate_definition(payload.definition)
    except DefinitionError as exc:
        errors += exc.as_api_errors()
    if errors:
        return Status(400, {"errors": errors})
    segment = segment_save(
        name=payload.name, definition=payload.definition, description=payload.description,
        for_sending=payload.for_sending,
    )
    return Status(201, segment_payload(segment))


@router.get("/segments/{segment_id}", response={200: SegmentOut, 404: DetailOut})
def segments_get(request: HttpRequest, segment_id: int):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    return Status(200, segment_payload(segment))


@router.patch("/segments/{segment_id}", response={200: SegmentOut, 400: ErrorsOut, 404: DetailOut})
def segments_patch(request: HttpRequest, segment_id: int, payload: SegmentPatch):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    fields = payload.model_fields_set
    name = payload.name if "name" in fields else segment.name
    definition = payload.definition if "definition" in fields else segment.definition
    errors = _name_errors(name)
    try:
        validate_definition(definition, segment_id=segment.pk)
    except DefinitionError as exc:
        errors += exc.as_api_errors()
    if errors:
        return Status(400, {"errors": errors})
    segment = segment_save(
        segment=segment,
        name=name,
        definition=definition,
        description=payload.description if payload.description is not None else segment.description,
        for_sending=payload.for_sending if payload.for_sending is not None else segment.for_sending,
    )
    return Status(200, segment_payload(segment))


@router.delete("/segments/{segment_id}", response={204: None, 400: ErrorsOut, 404: DetailOut})
def segments_delete(request: HttpRequest, segment_id: int):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    users = segments_referring_to(segment.pk)
    if users:
        names = ", ".join(f"“{other.name}” (#{other.pk})" for other in users)
        return Status(400, {"errors": [{"field": "id", "message": f"Used by other segments: {names}."}]})
    segment.delete()
    return Status(204, None)


def segments_referring_to(segment_id: int) -> list[Segment]:
    """Saved segments whose definitions nest ``segment_id`` (jsonb containment would miss
    nested groups, so the small table is scanned in Python — it holds definitions, not contacts)."""
    from segments.validation import segment_references

    return [
        other for other in Segment.objects.exclude(pk=segment_id).only("pk", "name", "definition")
        if segment_id in segment_references(other.definition)
    ]


@router.get("/segments/{segment_id}/members", response={200: MembersOut, 400: ErrorsOut, 404: DetailOut})
def segments_members(request: HttpRequest, segment_id: int, page: int = 1):
    """Members' emails, sorted, 100 a page; ``next`` is the URL of the next page or null."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    if page < 1 or page > 10**9:
        return Status(400, {"errors": [{"field": "page", "message": "Must be a page number from 1."}]})
    members = segment_members_queryset(segment)
    count = members.count()
    offset = (page - 1) * MEMBERS_PAGE_SIZE
    emails = list(members.order_by("email").values_list("email", flat=True)[offset:offset + MEMBERS_PAGE_SIZE])
    has_next = offset + MEMBERS_PAGE_SIZE < count
    next_url = request.build_absolute_uri(f"{request.path}?page={page + 1}") if has_next else None
    return Status(200, {"count": count, "results": emails, "next": next_url})

