"""The HTTP API v1 root (django-ninja). Each app adds its router in ``register_routers``."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from core.models import ApiKey


class ApiKeyAuth(HttpBearer):
    """Bearer key auth. ``scope`` is the scope the operation needs; admin keys may do everything."""

    def __init__(self, scope: str = ApiKey.SCOPE_ADMIN) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str):
        api_key = ApiKey.objects.active().filter(key_hash=ApiKey.hash_key(token)).first()
        if api_key is None:
            return None
        if self.scope == ApiKey.SCOPE_ADMIN and api_key.scope != ApiKey.SCOPE_ADMIN:
            raise HttpError(403, "This API key lacks the admin scope.")
        if api_key.last_used_at is None or (timezone.now() - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
        request.api_key = api_key
        return api_key


admin_auth = ApiKeyAuth(ApiKey.SCOPE_ADMIN)
ingest_auth = ApiKeyAuth(ApiKey.SCOPE_INGEST)

api = NinjaAPI(
    title="Marketing Hub API",
    version="1",
    urls_namespace="api-1",
    auth=admin_auth,
    openapi_url="/openapi.json",
    docs_url="/docs",
)


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError):
    """Pydantic errors in the contract's shape: {"errors": [{"index"?, "field", "message"}]}."""
    errors = []
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "payload", "query", "path")]
        item: dict = {}
        # batch items: ("events", 3, "email") -> index 3, field "email"
        if len(loc) >= 2 and loc[0] in {"events", "contacts"} and loc[1].isdigit():
            item["index"] = int(loc[1])
            loc = loc[2:]
        item["field"] = ".".join(loc) or "body"
        item["message"] = error.get("msg", "invalid")
        errors.append(item)
    return api.create_response(request, {"errors": errors}, status=400)


@api.exception_handler(AuthenticationError)
def auth_error(request: HttpRequest, exc: AuthenticationError):
    return api.create_response(request, {"detail": "Missing, unknown or revoked API key."}, status=401)


@api.get("/", auth=None, tags=["meta"])
def api_root(request: HttpRequest):
    return {"name": "Marketing Hub API", "version": "1", "openapi": "/api/v1/openapi.json", "docs": "/api/v1/docs"}


@api.get("/whoami", auth=ingest_auth, tags=["meta"])
def whoami(request: HttpRequest):
    """Which key this is and what it may do: a cheap way for a client to check its key."""
    return {"name": request.api_key.name, "scope": request.api_key.scope}


@api.get("/keys", tags=["meta"])
def api_keys_list(request: HttpRequest):
    """The API keys (never the keys themselves): admin scope only."""
    keys = ApiKey.objects.all()[:500]
    results = [
        {"id": k.pk, "name": k.name, "scope": k.scope, "prefix": k.prefix, "created_at": k.created_at,
         "last_used_at": k.last_used_at, "revoked_at": k.revoked_at}
        for k in keys
    ]
    return {"results": results, "count": len(results)}


def register_routers() -> None:
    """Each app's ``api.router`` is mounted if the app has one (apps land independently)."""
    import importlib

    for app_label in ("contacts", "automation", "leads", "segments", "loyalty"):
        try:
            module = importlib.import_module(f"{app_label}.api")
        except ModuleNotFoundError as exc:
            if exc.name == f"{app_label}.api":
                continue
            raise
        router = getattr(module, "router", None)
        if router is not None:
            api.add_router("/", router)


register_routers()
