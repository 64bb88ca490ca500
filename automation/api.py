from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import pghistory
from django.db import transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import BaseModel, ConfigDict, StrictBool

from automation.engine import events_status
from automation.ingestion import (
    MAX_EVENTS_PER_REQUEST,
    IngestValidationError,
    events_ingest,
    ingest_max_body_bytes,
    ingest_rate_check,
)
from automation.models import Rule
from automation.rules import (
    MAX_ACTIONS,
    MAX_AMOUNT,
    MAX_CONDITIONS,
    RuleError,
    rule_save,
    rule_to_api,
    validate_rule,
)
from automation.services import rule_backfill_start
from contacts.models import EVENT_TYPES
from core.api import (
    PG_INT_MAX,
    ApiError,
    ApiKeyAuth,
    BoundedDateTime,
    CheckedBody,
    CleanStr,
    DetailOut,
    Id,
    RateLimited,
    text,
)
from core.audit import api_actor
from core.conditions import OPS as CONDITION_OPS
from core.models import ApiKey, Job

router = Router(tags=["automation"])


# --- events ---------------------------------------------------------------------------------------
class EventsIngestAuth(ApiKeyAuth):
    """The ingest key, then the request's size (its own, larger limit) and the key's rate — all
    before the body is read."""

    def max_body_bytes(self) -> int:
        return ingest_max_body_bytes()

    def authenticate(self, request: HttpRequest, token: str):
        api_key = super().authenticate(request, token)
        if api_key is None:
            return None
        retry_after = ingest_rate_check(api_key.pk)
        if retry_after is not None:
            raise RateLimited(retry_after)
        return api_key


events_auth = EventsIngestAuth(ApiKey.SCOPE_INGEST)


class EventIn(BaseModel):
    # plain pydantic (not ninja.Schema): ninja's per-object resolver hook costs ~15 ms per 1,000
    # events. Lengths, formats and the type list are documented here and checked by
    # ``events_validate``, which reports every problem of the batch with its index at once.
    event_id: str = Field(..., description="1–128 characters; the idempotency key",
                          json_schema_extra={"minLength": 1, "maxLength": 128})
    email: str = Field(..., json_schema_extra={"format": "email", "maxLength": 254})
    type: str = Field(..., description=", ".join(EVENT_TYPES), json_schema_extra={"enum": list(EVENT_TYPES)})
    occurred_at: datetime = Field(..., description="ISO 8601 with a timezone, at most 5 minutes in the future")
    properties: dict[str, Any] | None = None


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(..., min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class IngestOut(Schema):
    accepted: int
    duplicates: int
    suppressed: int = Field(0, description="events of erased (GDPR) emails with no contact: dropped")


class StatusOut(Schema):
    pending: int = Field(..., description="waiting + failed + memberships_waiting: 0 means every accepted event's "
                                          "effects are applied, saved-segment memberships included")
    waiting: int = Field(..., description="pending events the worker has still to process")
    failed: int = Field(..., description="events that failed repeatedly; retry them on the Events page")
    memberships_waiting: int = Field(..., description="contacts whose saved-segment memberships wait to be "
                                                     "re-evaluated after their events were applied")


@router.post("/events", auth=events_auth, response={202: IngestOut, 429: DetailOut})
def events_post(request: HttpRequest, payload: EventBatchIn):
    """Accept 1–1000 events. Any invalid item stores nothing; known event_ids count as duplicates."""
    try:
        result = events_ingest(payload.events)
    except IngestValidationError as exc:
        raise ApiError(exc.errors) from None
    return Status(202, {"accepted": result.accepted, "duplicates": result.duplicates, "suppressed": result.suppressed})


@router.get("/events/status", response=StatusOut)
def events_status_get(request: HttpRequest):
    """``pending`` is 0 only when every accepted event's tags, scores, stages, tiers and saved-segment
    memberships are applied."""
    return events_status()


# --- rules ----------------------------------------------------------------------------------------
Scalar = str | float | bool


class ConditionIn(Schema):
    property: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]
    op: Literal[CONDITION_OPS]  # type: ignore[valid-type]
    value: Scalar | list[Scalar] = Field(..., description="a number for gt/gte/lt/lte, a list for in, text for contains")


class TriggerIn(Schema):
    model_config = ConfigDict(extra="forbid")

    event_type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    where: list[ConditionIn] = Field(default_factory=list, max_length=MAX_CONDITIONS,
                                     description="all must hold; a missing property fails the condition")


Amount = Annotated[int, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
TagTemplate = Annotated[CleanStr, Field(min_length=1, max_length=100,
                                         description="a tag name, or a template such as {category}")]


class AddTagAction(Schema):
    type: Literal["add_tag"]
    tag: TagTemplate
    score: Amount = Field(1, description="not 0")


class RemoveTagAction(Schema):
    type: Literal["remove_tag"]
    tag: TagTemplate


class AddScoreAction(Schema):
    type: Literal["add_score"]
    points: Amount = Field(..., description="not 0; negative takes points away")


class SetStageAction(Schema):
    type: Literal["set_stage"]
    funnel: Annotated[CleanStr, Field(min_length=1, max_length=100)]
    stage: Annotated[CleanStr, Field(min_length=1, max_length=100)]


class SendWebhookAction(Schema):
    """Contributed by the webhooks area (``automation.rules.action_register``); documented here
    because the contract lists it."""

    type: Literal["send_webhook"]
    webhook_id: Annotated[int, Field(ge=1, le=PG_INT_MAX)]


Action = Annotated[AddTagAction | RemoveTagAction | AddScoreAction | SetStageAction | SendWebhookAction,
                   Field(discriminator="type")]


class RuleIn(CheckedBody):
    """A rule; checked by ``automation.rules.validate_rule`` (the editor's validator)."""

    model_config = ConfigDict(extra="forbid")

    name: text(200, min_length=1)  # type: ignore[valid-type]
    description: text(2000) = ""  # type: ignore[valid-type]
    active: StrictBool = True
    trigger: TriggerIn
    actions: list[Action] = Field(..., min_length=1, max_length=MAX_ACTIONS)
    once_per_contact: StrictBool = False
    max_points_per_contact: Annotated[int, Field(ge=1, le=PG_INT_MAX)] | None = None

    partial: ClassVar[bool] = False

    @classmethod
    def check(cls, data: Any) -> dict:
        try:
            return validate_rule(data, partial=cls.partial)
        except RuleError as exc:
            raise ApiError(exc.as_api()["errors"]) from None


class RulePatch(RuleIn):
    """Any subset of a rule's writable fields."""

    name: text(200, min_length=1) | None = None  # type: ignore[valid-type]
    trigger: TriggerIn | None = None
    actions: list[Action] | None = Field(None, min_length=1, max_length=MAX_ACTIONS)

    partial: ClassVar[bool] = True


class RuleOut(Schema):
    id: int
    name: str
    description: str
    active: bool
    trigger: dict[str, Any]
    actions: list[dict[str, Any]]
    once_per_contact: bool
    max_points_per_contact: int | None
    activated_at: str | None
    created_at: str
    updated_at: str
    summary: str


class RuleList(Schema):
    results: list[RuleOut]
    count: int


def _rule_or_404(rule_id: int) -> Rule | None:
    return Rule.objects.filter(pk=rule_id).first()


def _rule_not_found(rule_id: int) -> Status:
    return Status(404, {"detail": f"No rule with id {rule_id}."})


def _rule_saved(request: HttpRequest, rule: Rule, cleaned: dict) -> Rule:
    try:
        with transaction.atomic(), pghistory.context(**api_actor(request)):
            return rule_save(rule, cleaned)
    except RuleError as exc:  # checks across fields, after a partial update is merged
        raise ApiError(exc.as_api()["errors"]) from None


@router.post("/rules", response={201: RuleOut})
def rule_create(request: HttpRequest, payload: RuleIn):
    cleaned = payload.cleaned
    cleaned.setdefault("active", True)
    return Status(201, rule_to_api(_rule_saved(request, Rule(), cleaned)))


@router.get("/rules", response={200: RuleList})
def rule_list(request: HttpRequest, active: bool | None = None,
              limit: Annotated[int, Field(ge=1, le=500)] = 100,
              offset: Annotated[int, Field(ge=0, le=PG_INT_MAX)] = 0):
    rules = Rule.objects.order_by("pk")
    if active is not None:
        rules = rules.filter(active=active)
    return {"results": [rule_to_api(rule) for rule in rules[offset : offset + limit]], "count": rules.count()}


@router.get("/rules/{rule_id}", response={200: RuleOut, 404: DetailOut})
def rule_get(request: HttpRequest, rule_id: Id):
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    return Status(200, rule_to_api(rule))


@router.patch("/rules/{rule_id}", response={200: RuleOut, 404: DetailOut})
def rule_patch(request: HttpRequest, rule_id: Id, payload: RulePatch):
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    return Status(200, rule_to_api(_rule_saved(request, rule, payload.cleaned)))


@router.delete("/rules/{rule_id}", response={204: None, 404: DetailOut})
def rule_delete(request: HttpRequest, rule_id: Id):
    """Deleting a rule keeps what it did (tags, points and their history name the rule's id)."""
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    with pghistory.context(**api_actor(request)):
        rule.delete()
    return Status(204, None)


class RunIn(Schema):
    since: BoundedDateTime = Field(..., description="ISO date-time with a timezone: apply to events from then on")


class JobRef(Schema):
    job: int


@router.post("/rules/{rule_id}/run", response={202: JobRef, 404: DetailOut})
def rule_run(request: HttpRequest, rule_id: Id, payload: RunIn):
    """Apply the rule to past events since ``since`` as a background job; applied pairs are skipped."""
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    job = rule_backfill_start(rule, since=payload.since, user=None)
    return Status(202, {"job": job.pk})


# --- jobs -----------------------------------------------------------------------------------------
def job_to_api(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "title": job.title,
        "status": job.status,
        "progress": round(float(job.progress or 0.0), 4),
        "error": job.error or None,
        "result": job.result or {},
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


class JobOut(Schema):
    id: int
    kind: str
    title: str
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(..., ge=0, le=1)
    error: str | None
    result: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None


@router.get("/jobs/{job_id}", response={200: JobOut, 404: DetailOut})
def job_get(request: HttpRequest, job_id: Id):
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return Status(404, {"detail": f"No job with id {job_id}."})
    return Status(200, job_to_api(job))
