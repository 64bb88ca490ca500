"""What every API router shares: key auth, the one error shape, the exception handlers, the body
parser with its limits, and the pydantic types inputs are built from.

The contract (docs/api-v1.md) promises one error shape for bad input —
``400 {"errors": [{"index"?, "field", "message"}]}`` — and never a 500. Every way input can be bad
ends up there: a schema violation (``ValidationError``), a check a view makes (``ApiError``),
malformed JSON and control characters anywhere in the body or the query (``ApiParser``), a body
over the size limit (413, same shape). Unknown resources answer ``404 {"detail"}``, a missing key
401, a key without the scope 403, and a database that is down ``503`` with ``Retry-After`` and no
internals. ``HubApi``'s OpenAPI document lists each of those statuses on the operations that can
answer them, so a fuzzer checking the document against the answers finds no surprise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.parser import Parser
from ninja.security import HttpBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from core.models import ApiKey
from core.validators import (
    CONTROL_CHARACTERS_MESSAGE,
    NO_CONTROL_PATTERN,
    control_character_paths,
    email_is_valid,
    has_control_characters,
)

logger = logging.getLogger(__name__)

# Batch bodies whose list items are reported by index rather than by path.
BATCH_FIELDS = frozenset({"events", "contacts"})
# The escapes JSON text must use for the characters ``core.validators`` refuses: when none occurs
# in the raw body (the usual case), walking the parsed document is skipped.
_CONTROL_ESCAPES = re.compile(rb"\\u00[01][0-9a-fA-F]|\\[bf]")
RETRY_AFTER_SECONDS = 5


# --- the error shapes --------------------------------------------------------------------------
class ErrorItem(Schema):
    index: int | None = Field(None, description="the item's position, for batch requests")
    field: str = Field(..., description="dotted path of the offending field, e.g. trigger.where.0.value")
    message: str


class ErrorsOut(Schema):
    errors: list[ErrorItem]


class DetailOut(Schema):
    detail: str


class ApiError(Exception):
    """Raise anywhere under a view to answer 400 ``{"errors": [...]}`` (nothing is stored: views
    raise it before writing, or inside the transaction that it then rolls back)."""

    def __init__(self, errors: list[dict], status: int = 400) -> None:
        super().__init__("; ".join(f"{error.get('field')}: {error.get('message')}" for error in errors))
        self.errors = errors
        self.status = status

    @classmethod
    def field(cls, field: str, message: str) -> ApiError:
        return cls([{"field": field, "message": message}])


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body may be at most {limit // 1024} KB.")
        self.limit = limit


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests; retry after {retry_after} s.")
        self.retry_after = retry_after


def api_max_body_bytes() -> int:
    """The body limit of every operation that sets none of its own (events set theirs)."""
    return int(settings.API_MAX_BODY_BYTES)


def error_item(loc: tuple | list, message: str) -> dict:
    """A location (``("events", 3, "email")``) as the contract's item: batch items carry their
    index, the rest is the dotted field path."""
    parts = [str(part) for part in loc]
    item: dict = {}
    if len(parts) >= 2 and parts[0] in BATCH_FIELDS and parts[1].isdigit():
        item["index"] = int(parts[1])
        parts = parts[2:]
    item["field"] = ".".join(parts) or "body"
    item["message"] = message
    return item


def _pydantic_message(error: dict) -> str:
    message = error.get("msg", "is invalid")
    # "Value error, X" is pydantic's wrapping of a ValueError raised by our own validators.
    return message.removeprefix("Value error, ")


# --- auth ----------------------------------------------------------------------------------------
class ApiKeyAuth(HttpBearer):
    """Bearer key auth. ``scope`` is the scope the operation needs; admin keys may do everything.

    It runs before the body is read, so it also refuses what no operation should parse: a body
    over ``max_body_bytes`` (413, from Content-Length) and control characters in the URL path.
    """

    def __init__(self, scope: str = ApiKey.SCOPE_ADMIN, *, max_body_bytes: int | None = None) -> None:
        super().__init__()
        self.scope = scope
        self._max_body_bytes = max_body_bytes

    def max_body_bytes(self) -> int:
        return self._max_body_bytes or api_max_body_bytes()

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        if has_control_characters(token):
            return None
        api_key = ApiKey.objects.active().filter(key_hash=ApiKey.hash_key(token)).first()
        if api_key is None:
            return None
        if self.scope == ApiKey.SCOPE_ADMIN and api_key.scope != ApiKey.SCOPE_ADMIN:
            raise HttpError(403, "This API key lacks the admin scope.")
        if api_key.last_used_at is None or (timezone.now() - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
        request.api_key = api_key  # type: ignore[attr-defined]  # the key is what API views act as
        limit = self.max_body_bytes()
        request.api_max_body_bytes = limit  # type: ignore[attr-defined]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise BodyTooLarge(limit)
        if has_control_characters(request.path):
            raise ApiError.field("path", CONTROL_CHARACTERS_MESSAGE)
        return api_key


admin_auth = ApiKeyAuth(ApiKey.SCOPE_ADMIN)
ingest_auth = ApiKeyAuth(ApiKey.SCOPE_INGEST)


# --- parsing -------------------------------------------------------------------------------------
class ApiParser(Parser):
    """JSON bodies and query strings, refused with the contract's errors when they are too large,
    not JSON, or hold control characters (in a value or a key, at any depth)."""

    def parse_body(self, request: HttpRequest) -> Any:
        limit = getattr(request, "api_max_body_bytes", None) or api_max_body_bytes()
        try:
            body = request.body
        except RequestDataTooBig:
            raise BodyTooLarge(limit) from None
        if len(body) > limit:  # a chunked request has no Content-Length to refuse it earlier
            raise BodyTooLarge(limit)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError.field("body", f"is not valid JSON ({exc})") from None
        if _CONTROL_ESCAPES.search(body):
            paths = control_character_paths(data)
            if paths:
                raise ApiError([error_item(path, CONTROL_CHARACTERS_MESSAGE) for path in paths])
        return data

    def parse_querydict(self, data: Any, list_fields: list[str], request: HttpRequest) -> dict:
        result = super().parse_querydict(data, list_fields, request)
        problems = [key for key, values in data.lists()
                    if has_control_characters(key) or any(has_control_characters(value) for value in values)]
        if problems:
            raise ApiError([{"field": key, "message": CONTROL_CHARACTERS_MESSAGE} for key in problems])
        return result


# --- the API object ------------------------------------------------------------------------------
def _operation_scope(operation: Any) -> str | None:
    scopes = [getattr(auth, "scope", None) for auth in operation.auth_callbacks or ()]
    if not scopes:
        return None
    return ApiKey.SCOPE_INGEST if ApiKey.SCOPE_INGEST in scopes else ApiKey.SCOPE_ADMIN


class HubOpenAPISchema(OpenAPISchema):
    """Ninja's document plus the statuses the shared machinery answers on every operation."""

    def responses(self, operation: Any) -> dict:
        result = super().responses(operation)
        errors_ref = self._component(ErrorsOut)
        detail_ref = self._component(DetailOut)
        scope = _operation_scope(operation)
        has_input = bool(operation.models)
        has_path = any(model.__ninja_param_source__ == "path" for model in operation.models)
        extra: dict[int, tuple[str, dict]] = {}
        if has_input:
            extra[400] = ("Invalid input: every problem with its field", errors_ref)
        if scope is not None:
            extra[401] = ("Missing, unknown or revoked API key", detail_ref)
            if scope == ApiKey.SCOPE_ADMIN:
                extra[403] = ("The API key lacks the admin scope", detail_ref)
            extra[413] = ("The request body is too large", errors_ref)
            extra[503] = ("The database is unavailable; retry after Retry-After seconds", detail_ref)
        if has_path:
            extra[404] = ("No such resource", detail_ref)
        for status, (description, ref) in extra.items():
            if status not in result:
                result[status] = {"description": description,
                                  "content": {"application/json": {"schema": ref}}}
        return result

    def _component(self, model: type[Schema]) -> dict:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, definition)
        self.schemas.setdefault(model.__name__, schema)
        return {"$ref": f"#/components/schemas/{model.__name__}"}


class HubApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict | None = None) -> Any:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return HubOpenAPISchema(self, path_prefix)


def api_create(**kwargs: Any) -> HubApi:
    """The API object with the shared parser and exception handlers installed."""
    api = HubApi(parser=ApiParser(), auth=admin_auth, **kwargs)
    install_exception_handlers(api)
    return api


def install_exception_handlers(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, body: dict, status: int) -> HttpResponse:
        return api.create_response(request, body, status=status)

    def too_large(request: HttpRequest, exc: BodyTooLarge) -> HttpResponse:
        return respond(request, {"errors": [{"field": "body", "message": str(exc)}]}, 413)

    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return respond(request, {"errors": exc.errors}, exc.status)

    def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = []
        for error in exc.errors:
            loc = [part for part in error.get("loc", ()) if part not in ("body", "payload", "query", "path")]
            errors.append(error_item(loc, _pydantic_message(error)))
        return respond(request, {"errors": errors}, 400)

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        # Ninja wraps whatever the parser raises into "400 Cannot parse request body"; answer
        # with what the parser meant instead.
        cause = exc.__cause__
        if isinstance(cause, BodyTooLarge):
            return too_large(request, cause)
        if isinstance(cause, ApiError):
            return api_error(request, cause)
        if exc.status_code == 400:
            return respond(request, {"errors": [{"field": "body", "message": str(exc)}]}, 400)
        return respond(request, {"detail": str(exc)}, exc.status_code)

    def auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return respond(request, {"detail": "Missing, unknown or revoked API key."}, 401)

    def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
        response = respond(request, {"detail": str(exc)}, 429)
        response["Retry-After"] = str(exc.retry_after)
        return response

    def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.warning("API answered 503: %s", exc)
        response = respond(request, {"detail": "The database is unavailable; retry shortly."}, 503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
        # A value the schemas let through but a column refuses: still the client's input, so a
        # 400 without internals; logged, because the schema should have caught it.
        logger.warning("API input reached the database invalid: %s", exc)
        return respond(request, {"errors": [{"field": "body", "message": "a value is outside what can be stored"}]}, 400)

    handlers: list[tuple[type[Exception], Callable[..., HttpResponse]]] = [
        (BodyTooLarge, too_large),
        (ApiError, api_error),
        (ValidationError, validation_error),
        (HttpError, http_error),
        (AuthenticationError, auth_error),
        (RateLimited, rate_limited),
        (OperationalError, database_unavailable),
        (InterfaceError, database_unavailable),
        (DataError, data_error),
    ]
    for exception_class, handler in handlers:
        api.add_exception_handler(exception_class, handler)


# --- input types ---------------------------------------------------------------------------------
def _no_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError(CONTROL_CHARACTERS_MESSAGE)
    return value


# Every string input: control characters refused, and said so in the schema.
CleanStr = Annotated[str, AfterValidator(_no_control_characters), Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN})]


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A trimmed string of at most ``max_length`` characters, without control characters."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_control_characters),
        Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN}),
    ]


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    email = value.strip().lower()
    if not email:
        raise ValueError("is required")
    if not email_is_valid(email):
        raise ValueError(f"{value.strip()[:254]!r} is not a valid email address")
    return email


# The one email type: trimmed, lower-cased, valid by ``core.validators.email_is_valid``.
Email = Annotated[str, BeforeValidator(_email), WithJsonSchema({"type": "string", "format": "email", "maxLength": 254})]

PG_INT_MAX = 2**31 - 1
PG_BIGINT_MAX = 2**63 - 1
# Whole numbers that fit an ``integer`` column; ids (path parameters too, hence not strict) fit ``bigint``.
Int32 = Annotated[StrictInt, Field(ge=-PG_INT_MAX, le=PG_INT_MAX)]
Id = Annotated[int, Field(ge=1, le=PG_BIGINT_MAX)]

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _bounded_datetime(value: dt.datetime) -> dt.datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


# A date-time with a timezone, within years a database column and a time window can hold.
BoundedDateTime = Annotated[AwareDatetime, AfterValidator(_bounded_datetime)]


class CheckedBody(Schema):
    """A request body whose fields document the shape (the OpenAPI document is generated from
    them) and whose meaning is checked by the area's own validator — the one the browser editor
    uses too, so a form and the API can never disagree on what is valid.

    Subclasses implement ``check(data) -> cleaned`` raising ``ApiError``; the view reads
    ``payload.cleaned``. ``partial`` is True for PATCH-style bodies.
    """

    _cleaned: Any = PrivateAttr(None)

    @classmethod
    def check(cls, data: Any) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        # ApiError is not a ValueError: pydantic lets it through to the API's handler, which
        # answers with the validator's own field paths and messages.
        cleaned = cls.check(data)
        instance = cls.model_construct()
        instance._cleaned = cleaned
        return instance

    @property
    def cleaned(self) -> Any:
        return self._cleaned
