"""API v1: events (ingest, status), rules (CRUD, run on past events) and jobs — see spec/api-v1.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pghistory
from django.db import transaction
from django.http import HttpRequest
from ninja import Body, Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BaseModel

from automation.engine import events_status
from automation.ingestion import (
    MAX_EVENTS_PER_REQUEST,
    IngestValidationError,
    events_ingest,
    ingest_max_body_bytes,
    ingest_rate_check,
)
from automation.models import Rule
from automation.rules import RuleError, rule_save, rule_to_api, validate_rule
from contacts.models import EVENT_TYPES
from core.audit import api_actor
from core.models import ApiKey, Job
from marketing_hub.api import ApiKeyAuth, api

router = Router(tags=["automation"])


# --- events ---------------------------------------------------------------------------------------
class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests; retry after {retry_after} s.")
        self.retry_after = retry_after


def _rate_limited(request: HttpRequest, exc: RateLimited):
    response = api.create_response(request, {"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


api.add_exception_handler(RateLimited, _rate_limited)


class EventsIngestAuth(ApiKeyAuth):
    """The ingest key, then the request's size and the key's rate — all before the body is read."""

    def authenticate(self, request: HttpRequest, token: str):
        api_key = super().authenticate(request, token)
        if api_key is None:
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = ingest_max_body_bytes()
        if length > limit:
            raise HttpError(413, f"The request body may be at most {limit // 1024} KB ({MAX_EVENTS_PER_REQUEST} events).")
        retry_after = ingest_rate_check(api_key.pk)
        if retry_after is not None:
            raise RateLimited(retry_after)
        return api_key


events_auth = EventsIngestAuth(ApiKey.SCOPE_INGEST)


class EventIn(BaseModel):
    # plain pydantic (not ninja.Schema): ninja's per-object resolver hook costs ~15 ms per 1,000 events
    event_id: str = Field(..., description="1–128 characters; the idempotency key")
    email: str
    type: str = Field(..., description=", ".join(EVENT_TYPES))
    occurred_at: datetime = Field(..., description="ISO 8601 with a timezone, at most 5 minutes in the future")
    properties: dict[str, Any] | None = None


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(..., min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class IngestOut(Schema):
    accepted: int
    duplicates: int
    suppressed: int = Field(0, description="events of erased (GDPR) emails with no contact: dropped")


class ErrorItem(Schema):
    index: int | None = None
    field: str
    message: str


class ErrorsOut(Schema):
    errors: list[ErrorItem]


class DetailOut(Schema):
    detail: str


class StatusOut(Schema):
    pending: int = Field(..., description="accepted events whose effects are not applied yet (waiting + failed)")
    waiting: int = Field(..., description="pending events the worker has still to process")
    failed: int = Field(..., description="events that failed repeatedly; retry them on the Events page")


@router.post("/events", auth=events_auth, response={202: IngestOut, 400: ErrorsOut, 413: DetailOut, 429: DetailOut},
             exclude_none=True)
def events_post(request: HttpRequest, payload: EventBatchIn):
    """Accept 1–1000 events. Any invalid item stores nothing; known event_ids count as duplicates."""
    try:
        result = events_ingest(payload.events)
    except IngestValidationError as exc:
        return Status(400, {"errors": exc.errors})
    return Status(202, {"accepted": result.accepted, "duplicates": result.duplicates, "suppressed": result.suppressed})


@router.get("/events/status", response=StatusOut)
def events_status_get(request: HttpRequest):
    """``pending`` is 0 only when every accepted event's tags, scores, stages and tiers are applied."""
    return events_status()


# --- rules ----------------------------------------------------------------------------------------
RULE_SCHEMA = {
    "type": "object",
    "required": ["name", "trigger", "actions"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "description": {"type": "string"},
        "active": {"type": "boolean", "default": True},
        "trigger": {
            "type": "object",
            "required": ["event_type"],
            "properties": {
                "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                "where": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["property", "op", "value"],
                        "properties": {
                            "property": {"type": "string"},
                            "op": {"type": "string", "enum": ["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"]},
                            "value": {},
                        },
                    },
                },
            },
        },
        "actions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string", "enum": ["add_tag", "remove_tag", "add_score", "set_stage"]},
                    "tag": {"type": "string"},
                    "score": {"type": "integer"},
                    "points": {"type": "integer"},
                    "funnel": {"type": "string"},
                    "stage": {"type": "string"},
                },
            },
        },
        "once_per_contact": {"type": "boolean", "default": False},
        "max_points_per_contact": {"type": ["integer", "null"], "minimum": 1},
    },
}
_RULE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": RULE_SCHEMA}}}}


def _rule_or_404(rule_id: int) -> Rule | None:
    return Rule.objects.filter(pk=rule_id).first()


def _rule_not_found(rule_id: int) -> Status:
    return Status(404, {"detail": f"No rule with id {rule_id}."})


def _rule_errors(exc: RuleError) -> Status:
    return Status(400, exc.as_api())


@router.post("/rules", response={201: dict, 400: ErrorsOut}, openapi_extra=_RULE_BODY)
def rule_create(request: HttpRequest, payload: Any = Body(...)):  # noqa: B008
    try:
        cleaned = validate_rule(payload)
        cleaned.setdefault("active", True)
        with transaction.atomic(), pghistory.context(**api_actor(request)):
            rule = rule_save(Rule(), cleaned)
    except RuleError as exc:
        return _rule_errors(exc)
    return Status(201, rule_to_api(rule))


@router.get("/rules", response=dict)
def rule_list(request: HttpRequest, active: bool | None = None, limit: int = 100, offset: int = 0):
    rules = Rule.objects.order_by("pk")
    if active is not None:
        rules = rules.filter(active=active)
    limit = max(1, min(limit, 500))
    offset = max(0, offset)
    return {"results": [rule_to_api(rule) for rule in rules[offset : offset + limit]], "count": rules.count()}


@router.get("/rules/{rule_id}", response={200: dict, 404: DetailOut})
def rule_get(request: HttpRequest, rule_id: int):
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    return Status(200, rule_to_api(rule))


@router.patch("/rules/{rule_id}", response={200: dict, 400: ErrorsOut, 404: DetailOut}, openapi_extra=_RULE_BODY)
def rule_patch(request: HttpRequest, rule_id: int, payload: Any = Body(...)):  # noqa: B008
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    try:
        cleaned = validate_rule(payload, partial=True)
        with transaction.atomic(), pghistory.context(**api_actor(request)):
            rule = rule_save(rule, cleaned)
    except RuleError as exc:
        return _rule_errors(exc)
    return Status(200, rule_to_api(rule))


@router.delete("/rules/{rule_id}", response={204: None, 404: DetailOut})
def rule_delete(request: HttpRequest, rule_id: int):
    """Deleting a rule keeps what it did (tags, points and their history name the rule's id)."""
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    with pghistory.context(**api_actor(request)):
        rule.delete()
    return Status(204, None)


class RunIn(Schema):
    since: datetime = Field(..., description="ISO date-time with a timezone: apply to events from then on")


class JobRef(Schema):
    job: int


@router.post("/rules/{rule_id}/run", response={202: JobRef, 400: ErrorsOut, 404: DetailOut})
def rule_run(request: HttpRequest, rule_id: int, payload: RunIn):
    """Apply the rule to past events since ``since`` as a background job; applied pairs are skipped."""
    rule = _rule_or_404(rule_id)
    if rule is None:
        return _rule_not_found(rule_id)
    if payload.since.tzinfo is None or payload.since.utcoffset() is None:
        return Status(400, {"errors": [{"field": "since", "message": "must include a timezone"}]})
    from automation.services import rule_backfill_start

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


@router.get("/jobs/{job_id}", response={200: dict, 404: DetailOut})
def job_get(request: HttpRequest, job_id: int):
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return Status(404, {"detail": f"No job with id {job_id}."})
    return Status(200, job_to_api(job))
