"""The HTTP API v1 root (django-ninja): each area's router, mounted by name.

Auth, the error shape, the body parser and the exception handlers come from ``core.api``; each
area's ``api.py`` holds its operations.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import Schema

from automation.api import router as automation_router
from contacts.api import router as contacts_router
from core.api import api_create, ingest_auth
from core.models import ApiKey
from core.validators import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from leads.api import router as leads_router
from loyalty.api import router as loyalty_router
from segments.api import router as segments_router
from tracking.api import router as tracking_router
from webhooks.api import router as webhooks_router

api = api_create(
    title="Marketing Hub API",
    version="1",
    urls_namespace="api-1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


class RootOut(Schema):
    name: str
    version: str
    openapi: str
    docs: str


class WhoAmIOut(Schema):
    name: str
    scope: str


class ApiKeyOut(Schema):
    id: int
    name: str
    scope: str
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyList(Schema):
    results: list[ApiKeyOut]
    count: int


@api.get("/", auth=None, tags=["meta"], response=RootOut)
def api_root(request: HttpRequest):
    return {"name": "Marketing Hub API", "version": "1", "openapi": "/api/v1/openapi.json", "docs": "/api/v1/docs"}


@api.get("/whoami", auth=ingest_auth, tags=["meta"], response=WhoAmIOut)
def whoami(request: HttpRequest):
    """Which key this is and what it may do: a cheap way for a client to check its key."""
    return {"name": request.api_key.name, "scope": request.api_key.scope}


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


@api.get("/keys", tags=["meta"], response=ApiKeyList)
def api_keys_list(request: HttpRequest):
    """The API keys (never the keys themselves): admin scope only."""
    keys = ApiKey.objects.order_by("pk")[:500]
    results = [
        {"id": k.pk, "name": k.name, "scope": k.scope, "prefix": k.prefix, "created_at": k.created_at.isoformat(),
         "last_used_at": _iso(k.last_used_at), "revoked_at": _iso(k.revoked_at)}
        for k in keys
    ]
    return {"results": results, "count": len(results)}


api.add_router("/", contacts_router)
api.add_router("/", automation_router)
api.add_router("/", leads_router)
api.add_router("/", segments_router)
api.add_router("/", loyalty_router)
api.add_router("/", tracking_router)
api.add_router("/", webhooks_router)


@csrf_exempt  # key-authenticated API: no session, so no cross-site request to forge
def api_unrouted(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any /api/v1/ URL no operation matches: the API's own shapes, never the site's HTML page
    (a path an operation would refuse only for its characters gets that operation's 400)."""
    if has_control_characters(request.path):
        return JsonResponse({"errors": [{"field": "path", "message": CONTROL_CHARACTERS_MESSAGE}]}, status=400)
    return JsonResponse({"detail": "No such API resource."}, status=404)
