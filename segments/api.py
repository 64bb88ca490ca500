"""API v1: segments — live preview, create, read, members (and, beyond the contract, list,
update and delete). Definitions are validated by ``segments.validation``: errors name the node
path, prefixed with ``definition.`` (``definition.all[1].any[0].value``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict, StrictBool

from contacts.models import EVENT_TYPES
from core.api import ApiError, CheckedBody, CleanStr, DetailOut, Id, text
from segments.models import Segment
from segments.services import (
    SegmentTooExpensive,
    segment_members_queryset,
    segment_preview,
    segment_save,
    statement_timeout,
)
from segments.validation import (
    ATTRIBUTE_COLUMNS,
    MAX_DAYS,
    MAX_NUMBER,
    NUMBER_OPS,
    OPS,
    TEMPERATURES,
    DefinitionError,
    segment_references,
    validate_definition,
)

router = Router(tags=["segments"])

MEMBERS_PAGE_SIZE = 100
NAME_MAX = 200


# --- the definition language, as the OpenAPI document shows it -----------------------------------
# The models describe every node; ``segments.validation`` (the builder's validator too) checks a
# definition's meaning and names each problem's node path.
Number = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]
NumberValue = Number | Annotated[list[Number], Field(min_length=1, max_length=500)]
Days = Annotated[int, Field(ge=1, le=MAX_DAYS)]
Name = Annotated[CleanStr, Field(min_length=1, max_length=200)]
Scalar = CleanStr | float | bool


class _Leaf(Schema):
    model_config = ConfigDict(extra="forbid")


class HasTagLeaf(_Leaf):
    type: Literal["has_tag"]
    tag: Name


class TagScoreLeaf(_Leaf):
    type: Literal["tag_score"]
    tag: Name
    op: Literal[NUMBER_OPS]  # type: ignore[valid-type]
    value: NumberValue


class ScoreLeaf(_Leaf):
    type: Literal["score"]
    op: Literal[NUMBER_OPS]  # type: ignore[valid-type]
    value: NumberValue


class TemperatureLeaf(_Leaf):
    type: Literal["temperature"]
    value: Literal[TEMPERATURES]  # type: ignore[valid-type]


class WhereCondition(Schema):
    property: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"]
    value: Scalar | list[Scalar]


class EventCountLeaf(_Leaf):
    type: Literal["event_count"]
    event_type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    where: list[WhereCondition] | None = None
    within_days: Days | None = Field(None, description="absent or null: all time")
    op: Literal[NUMBER_OPS]  # type: ignore[valid-type]
    value: NumberValue


class InactiveDaysLeaf(_Leaf):
    type: Literal["inactive_days"]
    value: Days


class PurchaseTotalLeaf(_Leaf):
    type: Literal["purchase_total"]
    within_days: Days | None = None
    op: Literal[NUMBER_OPS]  # type: ignore[valid-type]
    value: NumberValue


class AttributeLeaf(_Leaf):
    type: Literal["attribute"]
    name: Annotated[str, Field(description=f"{', '.join(ATTRIBUTE_COLUMNS)} or properties.<key>", max_length=75)]
    op: Literal[OPS]  # type: ignore[valid-type]
    value: Scalar | list[Scalar] | None = None


class AgeLeaf(_Leaf):
    type: Literal["age"]
    op: Literal[NUMBER_OPS]  # type: ignore[valid-type]
    value: Annotated[int, Field(ge=0, le=150)] | Annotated[list[Annotated[int, Field(ge=0, le=150)]], Field(min_length=1)]


class ConsentLeaf(_Leaf):
    type: Literal["consent"]
    channel: Annotated[CleanStr, Field(min_length=1, max_length=32)]
    value: StrictBool


class SegmentLeaf(_Leaf):
    type: Literal["segment"]
    segment_id: Id


class StageLeaf(_Leaf):
    type: Literal["stage"]
    funnel: Name
    stage: Name


class TierLeaf(_Leaf):
    type: Literal["tier"]
    program: Name
    tier: Name


Leaf = Annotated[
    HasTagLeaf | TagScoreLeaf | ScoreLeaf | TemperatureLeaf | EventCountLeaf | InactiveDaysLeaf | PurchaseTotalLeaf
    | AttributeLeaf | AgeLeaf | ConsentLeaf | SegmentLeaf | StageLeaf | TierLeaf,
    Field(discriminator="type"),
]


class AllGroup(Schema):
    model_config = ConfigDict(extra="forbid")
    all: list[Node] = Field(..., description="every child matches (empty: everyone)")


class AnyGroup(Schema):
    model_config = ConfigDict(extra="forbid")
    any: list[Node] = Field(..., description="at least one child matches (empty: nobody)")


class NotGroup(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    not_: Node = Field(..., alias="not")


Node = AllGroup | AnyGroup | NotGroup | Leaf
for _group in (AllGroup, AnyGroup, NotGroup):
    _group.model_rebuild()


def _definition_checked(data: Any, *, extra: tuple[str, ...] = ()) -> Any:
    """The definition of a body, checked by ``segments.validation``; other keys are the caller's."""
    if not isinstance(data, dict):
        raise ApiError.field("body", "must be a JSON object")
    unknown = sorted(set(data) - {"definition", *extra})
    if unknown:
        raise ApiError([{"field": key, "message": "is not a field of this request"} for key in unknown])
    return data


class PreviewIn(CheckedBody):
    definition: Node

    @classmethod
    def check(cls, data: Any) -> dict:
        data = _definition_checked(data)
        if "definition" not in data:
            raise ApiError.field("definition", "is required")
        try:
            validate_definition(data["definition"])
        except DefinitionError as exc:
            raise ApiError(exc.as_api_errors()) from None
        return data


class PreviewOut(Schema):
    count: int
    sample: list[str]


class SegmentIn(CheckedBody):
    name: text(NAME_MAX, min_length=1)  # type: ignore[valid-type]
    definition: Node
    description: text(2000) = ""  # type: ignore[valid-type]
    for_sending: StrictBool = False

    @classmethod
    def check(cls, data: Any) -> dict:
        data = _definition_checked(data, extra=("name", "description", "for_sending"))
        errors = _name_errors(data.get("name"))
        if "definition" not in data:
            errors.append({"field": "definition", "message": "is required"})
        else:
            try:
                validate_definition(data["definition"])
            except DefinitionError as exc:
                errors += exc.as_api_errors()
        errors += _meta_errors(data)
        if errors:
            raise ApiError(errors)
        return data


class SegmentPatch(CheckedBody):
    name: text(NAME_MAX, min_length=1) | None = None  # type: ignore[valid-type]
    definition: Node | None = None
    description: text(2000) | None = None  # type: ignore[valid-type]
    for_sending: StrictBool | None = None

    @classmethod
    def check(cls, data: Any) -> dict:
        # The definition is checked by the view, which knows the segment (a cycle back to it).
        data = _definition_checked(data, extra=("name", "description", "for_sending"))
        errors = _name_errors(data["name"]) if "name" in data else []
        errors += _meta_errors(data)
        if errors:
            raise ApiError(errors)
        return data


class SegmentOut(Schema):
    id: int
    name: str
    definition: Any
    count: int | None = Field(..., description="members as of the last count; null while unknown")
    refreshed_at: str | None
    for_sending: bool
    description: str


class SegmentList(Schema):
    results: list[SegmentOut]
    count: int


class MembersOut(Schema):
    count: int
    results: list[str]
    next: str | None


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


def _name_errors(name: Any) -> list[dict]:
    clean = name.strip() if isinstance(name, str) else ""
    if not clean:
        return [{"field": "name", "message": "A segment needs a name."}]
    if len(clean) > NAME_MAX:
        return [{"field": "name", "message": f"At most {NAME_MAX} characters."}]
    return []


def _meta_errors(data: dict) -> list[dict]:
    errors = []
    description = data.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 2000):
        errors.append({"field": "description", "message": "must be text of at most 2000 characters"})
    if "for_sending" in data and not isinstance(data["for_sending"], bool) and data["for_sending"] is not None:
        errors.append({"field": "for_sending", "message": "must be true or false"})
    return errors


def _not_found(segment_id: int):
    return Status(404, {"detail": f"No segment with id {segment_id}."})


def _too_expensive(exc: SegmentTooExpensive) -> ApiError:
    return ApiError.field("definition", str(exc))


def _saved(**kwargs: Any) -> Segment:
    """Save; a definition too expensive to count while the client waits is saved with
    ``count: null``, and the worker's refresh counts it."""
    try:
        return segment_save(**kwargs)
    except DefinitionError as exc:
        raise ApiError(exc.as_api_errors()) from None


@router.post("/segments/preview", response={200: PreviewOut})
def segments_preview(request: HttpRequest, payload: PreviewIn):
    """Count and up to 20 emails of a definition, live (nothing is saved), within the live-count
    time limit: a definition too expensive to count answers 400 saying so."""
    definition = payload.cleaned["definition"]
    preview = segment_preview(definition)
    if preview.timed_out:
        raise _too_expensive(SegmentTooExpensive(settings.SEGMENT_PREVIEW_TIMEOUT_MS))
    return Status(200, {"count": preview.count, "sample": preview.emails})


@router.get("/segments", response=SegmentList)
def segments_list(request: HttpRequest):
    segments = list(Segment.objects.order_by("name", "pk")[:1000])
    return {"results": [segment_payload(segment) for segment in segments], "count": len(segments)}


@router.post("/segments", response={201: SegmentOut})
def segments_create(request: HttpRequest, payload: SegmentIn):
    data = payload.cleaned
    segment = _saved(
        name=data["name"], definition=data["definition"], description=(data.get("description") or "").strip(),
        for_sending=bool(data.get("for_sending")),
    )
    return Status(201, segment_payload(segment))


@router.get("/segments/{segment_id}", response={200: SegmentOut, 404: DetailOut})
def segments_get(request: HttpRequest, segment_id: Id):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    return Status(200, segment_payload(segment))


@router.patch("/segments/{segment_id}", response={200: SegmentOut, 404: DetailOut})
def segments_patch(request: HttpRequest, segment_id: Id, payload: SegmentPatch):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    data = payload.cleaned
    definition = data["definition"] if "definition" in data else segment.definition
    try:
        validate_definition(definition, segment_id=segment.pk)
    except DefinitionError as exc:
        raise ApiError(exc.as_api_errors()) from None
    description = data.get("description")
    for_sending = data.get("for_sending")
    segment = _saved(
        segment=segment,
        name=data.get("name") or segment.name,
        definition=definition,
        description=description.strip() if description is not None else segment.description,
        for_sending=for_sending if for_sending is not None else segment.for_sending,
    )
    return Status(200, segment_payload(segment))


@router.delete("/segments/{segment_id}", response={204: None, 404: DetailOut})
def segments_delete(request: HttpRequest, segment_id: Id):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    users = segments_referring_to(segment.pk)
    if users:
        names = ", ".join(f"“{other.name}” (#{other.pk})" for other in users)
        raise ApiError.field("id", f"Used by other segments: {names}.")
    segment.delete()
    return Status(204, None)


def segments_referring_to(segment_id: int) -> list[Segment]:
    """Saved segments whose definitions nest ``segment_id`` (jsonb containment would miss
    nested groups, so the small table is scanned in Python — it holds definitions, not contacts)."""
    return [
        other for other in Segment.objects.exclude(pk=segment_id).only("pk", "name", "definition")
        if segment_id in segment_references(other.definition)
    ]


@router.get("/segments/{segment_id}/members", response={200: MembersOut, 404: DetailOut})
def segments_members(request: HttpRequest, segment_id: Id, page: Annotated[int, Field(ge=1, le=10**9)] = 1):
    """Members' emails, sorted, 100 a page; ``next`` is the URL of the next page or null. The
    count is bounded like every live count (a saved segment not yet refreshed is evaluated live)."""
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return _not_found(segment_id)
    members = segment_members_queryset(segment)
    try:
        with statement_timeout(settings.SEGMENT_PREVIEW_TIMEOUT_MS):
            count = members.count()
            offset = (page - 1) * MEMBERS_PAGE_SIZE
            emails = list(members.order_by("email").values_list("email", flat=True)[offset:offset + MEMBERS_PAGE_SIZE])
    except SegmentTooExpensive as exc:
        raise _too_expensive(exc) from None
    has_next = offset + MEMBERS_PAGE_SIZE < count
    next_url = request.build_absolute_uri(f"{request.path}?page={page + 1}") if has_next else None
    return Status(200, {"count": count, "results": emails, "next": next_url})
