"""API v1: contacts (upsert, batch upsert, read, tags, GDPR erasure), exactly as docs/api-v1.md says."""

from __future__ import annotations

from typing import Any

from django.db import DataError, transaction
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict, StrictBool, StrictInt, field_validator

from contacts.models import Contact, normalize_email
from contacts.services import (
    MAX_TAG_SCORE_STEP,
    clean_birth_date,
    clean_channel,
    clean_country,
    clean_tag_name,
    clean_text,
    contact_erase,
    contact_representation,
    contacts_upsert,
    suppressed_emails,
)
from core.api import ApiError, DetailOut, Email, ingest_auth

router = Router(tags=["contacts"])

SUPPRESSED_MESSAGE = (
    "This email was erased at the contact's request (GDPR); it can only be re-created together with a "
    "granted consent, e.g. \"consents\": {\"email\": true}."
)


class ContactIn(Schema):
    model_config = ConfigDict(extra="forbid")

    email: Email
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = Field(None, description="ISO 3166-1 alpha-2")
    city: str | None = None
    birth_date: str | None = Field(None, description="YYYY-MM-DD")
    properties: dict[str, Any] | None = None
    consents: dict[str, StrictBool] | None = None

    @field_validator("first_name", "last_name", "phone", "city", mode="before")
    @classmethod
    def _text(cls, value: Any, info) -> str | None:
        return None if value is None else clean_text(value, info.field_name)

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> str | None:
        return None if value is None else clean_country(value)

    @field_validator("birth_date", mode="before")
    @classmethod
    def _birth_date(cls, value: Any):
        if value is None:
            return None
        date = clean_birth_date(value)
        return date.isoformat() if date else None

    @field_validator("consents", mode="after")
    @classmethod
    def _consents(cls, value: dict[str, bool] | None) -> dict[str, bool] | None:
        if value is None:
            return None
        return {clean_channel(channel): granted for channel, granted in value.items()}

    def clean(self) -> dict:
        import datetime as dt

        data = self.model_dump()
        if data["birth_date"]:
            data["birth_date"] = dt.date.fromisoformat(data["birth_date"])
        return data


class BatchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    contacts: list[ContactIn] = Field(..., min_length=1, max_length=1000)


class TagOut(Schema):
    name: str
    score: int


class ContactOut(Schema):
    email: str
    first_name: str
    last_name: str
    phone: str
    country: str
    city: str
    birth_date: str | None
    properties: dict[str, Any]
    consents: dict[str, bool]
    score: int
    temperature: str
    tags: list[TagOut]
    stages: dict[str, str]
    tiers: dict[str, str | None]
    # the ids the tracking libraries know the person by (the tracking area fills them)
    user_id: str | None = None
    anonymous_ids: list[str] = []


class BatchItemOut(Schema):
    index: int
    email: str
    created: bool


class BatchOut(Schema):
    created: int
    updated: int
    results: list[BatchItemOut]


class TagIn(Schema):
    model_config = ConfigDict(extra="forbid")

    tag: str
    score: StrictInt = Field(1, ge=-MAX_TAG_SCORE_STEP, le=MAX_TAG_SCORE_STEP)

    @field_validator("tag", mode="before")
    @classmethod
    def _tag(cls, value: Any) -> str:
        return clean_tag_name(value)


def _errors(errors: list[dict]) -> ApiError:
    return ApiError(errors)


def _find(email: str) -> Contact | None:
    return Contact.objects.filter(email=normalize_email(email)).first()


def _not_found(email: str) -> Status:
    return Status(404, {"detail": f"No contact with email {normalize_email(email)!r}."})


def _suppression_errors(items: list[dict], *, batch: bool) -> list[dict]:
    blocked = suppressed_emails([item["email"] for item in items])
    errors = []
    for index, item in enumerate(items):
        if item["email"] in blocked and not any((item.get("consents") or {}).values()):
            error = {"field": "email", "message": SUPPRESSED_MESSAGE}
            errors.append({"index": index, **error} if batch else error)
    return errors


@router.post("/contacts", auth=ingest_auth, response={200: ContactOut, 201: ContactOut})
def contact_upsert(request: HttpRequest, payload: ContactIn):
    """Create or update a contact by email (case-insensitive). 201 when created, 200 when updated."""
    item = payload.clean()
    errors = _suppression_errors([item], batch=False)
    if errors:
        raise _errors(errors)
    [result] = contacts_upsert([item], source="api")
    contact = Contact.objects.get(pk=result.contact_id)
    return Status(201 if result.created else 200, contact_representation(contact))


@router.post("/contacts/batch", auth=ingest_auth, response={200: BatchOut})
def contacts_batch(request: HttpRequest, payload: BatchIn):
    """Upsert up to 1000 contacts; any invalid item stores nothing (errors carry the item's index)."""
    items = [contact.clean() for contact in payload.contacts]
    errors = _suppression_errors(items, batch=True)
    if errors:
        raise _errors(errors)
    results = contacts_upsert(items, source="api")
    created = len({result.contact_id for result in results if result.created})
    return Status(200, {
        "created": created,
        "updated": len({result.contact_id for result in results}) - created,
        "results": [{"index": index, "email": item["email"], "created": result.created}
                    for index, (item, result) in enumerate(zip(items, results, strict=True))],
    })


# The same operations addressed by a query parameter: an email may hold "/" (a valid address
# character), which a path segment cannot carry — "%2F" is decoded before routing.
EmailQuery = Query(..., description="the contact's email (any case)", max_length=254)


@router.get("/contacts/by-email", response={200: ContactOut, 404: DetailOut})
def contact_get_by_email(request: HttpRequest, email: str = EmailQuery):
    """``GET /contacts/{email}`` for any email, ``/`` included."""
    return contact_get(request, email)


@router.post("/contacts/by-email/tags", response={200: ContactOut, 404: DetailOut})
def contact_tag_add_by_email(request: HttpRequest, payload: TagIn, email: str = EmailQuery):
    return contact_tag_add(request, email, payload)


@router.delete("/contacts/by-email/tags/{path:tag}", response={200: ContactOut, 404: DetailOut})
def contact_tag_remove_by_email(request: HttpRequest, tag: str, email: str = EmailQuery):
    return contact_tag_remove(request, email, tag)


@router.delete("/contacts/by-email", response={204: None, 404: DetailOut})
def contact_delete_by_email(request: HttpRequest, email: str = EmailQuery):
    """GDPR erasure of any email, ``/`` included."""
    return contact_delete(request, email)


@router.get("/contacts/{email}", response={200: ContactOut, 404: DetailOut})
def contact_get(request: HttpRequest, email: str):
    contact = _find(email)
    if contact is None:
        return _not_found(email)
    return Status(200, contact_representation(contact))


@router.post("/contacts/{email}/tags", response={200: ContactOut, 404: DetailOut})
def contact_tag_add(request: HttpRequest, email: str, payload: TagIn):
    """Add the tag or add ``score`` to it; a result ≤ 0 removes it."""
    contact = _find(email)
    if contact is None:
        return _not_found(email)
    try:
        with transaction.atomic():
            contact.add_tag(payload.tag, payload.score, source="api")
    except DataError:
        raise _errors([{"field": "score", "message": "The tag's score would leave the allowed range."}]) from None
    return Status(200, contact_representation(contact))


@router.delete("/contacts/{email}/tags/{path:tag}", response={200: ContactOut, 404: DetailOut})
def contact_tag_remove(request: HttpRequest, email: str, tag: str):
    contact = _find(email)
    if contact is None:
        return _not_found(email)
    if not contact.remove_tag(tag, source="api"):
        return Status(404, {"detail": f"Contact {contact.email!r} has no tag {tag.strip()!r}."})
    return Status(200, contact_representation(contact))


@router.delete("/contacts/{email}", response={204: None, 404: DetailOut})
def contact_delete(request: HttpRequest, email: str):
    """GDPR erasure: the contact and its personal data go; a hash of the email stays as suppression."""
    contact = _find(email)
    if contact is None:
        return _not_found(email)
    contact_erase(contact)
    return Status(204, None)
