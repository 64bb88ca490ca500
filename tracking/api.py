"""API v1: sources (``POST|GET /api/v1/sources``, ``DELETE /api/v1/sources/{id}``), admin keys only."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict, field_validator

from tracking.models import Source
from tracking.services import clean_origin, source_issue, source_revoke, source_to_api

router = Router(tags=["tracking"])


class SourceIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100)
    kind: str = Field(..., description="server (a secret key) or browser (a public key, allowed origins only)")
    allowed_origins: list[str] = Field(default_factory=list, description="e.g. https://shop.example.com")

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in (Source.KIND_SERVER, Source.KIND_BROWSER):
            raise ValueError("must be server or browser")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [clean_origin(origin) for origin in value]


class DetailOut(Schema):
    detail: str


@router.post("/sources", response={201: dict, 400: dict})
def source_create(request: HttpRequest, payload: SourceIn) -> Status:
    """Create a source; the response holds its ``write_key``, shown this once (only its hash is kept)."""
    if payload.kind == Source.KIND_BROWSER and not payload.allowed_origins:
        return Status(400, {"errors": [{"field": "allowed_origins", "message": "a browser source needs at least one origin"}]})
    source, write_key = source_issue(name=payload.name, kind=payload.kind, allowed_origins=payload.allowed_origins)
    return Status(201, source_to_api(source, write_key=write_key))


@router.get("/sources", response=dict)
def source_list(request: HttpRequest) -> dict:
    sources = list(Source.objects.all()[:500])
    return {"results": [source_to_api(source) for source in sources], "count": len(sources)}


@router.delete("/sources/{source_id}", response={204: None, 404: DetailOut})
def source_delete(request: HttpRequest, source_id: int) -> Status:
    """Revoke the source's key (its log and counts stay); repeating it changes nothing."""
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return Status(404, {"detail": f"No source with id {source_id}."})
    source_revoke(source)
    return Status(204, None)
