"""Segment's HTTP Tracking API messages: validate them all-or-nothing and map them to the events
``/api/v1/events`` takes. Pure functions over one request's input; storing is in ``services``.

The mapping follows Segment's e-commerce spec v2 names, so the shop's existing instrumentation
feeds the rules, segments and scores unchanged (see the "Tracking API" section of the contract).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from automation.ingestion import MAX_VALUE, CleanEvent, event_check
from contacts.services import clean_birth_date, clean_channel, clean_country, clean_email, clean_text
from core.validators import CONTROL_CHARACTERS_MESSAGE, has_control_characters

MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_ID_LENGTH = 200
# event_id is at most 128 characters; longer message ids are hashed into the namespace.
MAX_EVENT_ID = 128

MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")
# an event's fields by the names of the message they come from
_EVENT_FIELDS = {"occurred_at": "timestamp"}
EVENT_MESSAGE_TYPES = frozenset({"track", "page", "screen"})

TRACK_EVENT_TYPES = {
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Order Completed": "purchase",
    "Email Opened": "email_open",
    "Email Link Clicked": "email_click",
    "Form Submitted": "form_submit",
    "Newsletter Subscribed": "newsletter_signup",
    "Signed Up": "newsletter_signup",
}
# Traits that become contact fields; every other trait merges into the contact's properties.
FIELD_TRAITS = frozenset({"email", "firstName", "first_name", "lastName", "last_name", "phone", "birthday", "consents"})


class TrackValidationError(ValueError):
    def __init__(self, errors: list[dict]) -> None:
        super().__init__(f"{len(errors)} invalid message field(s)")
        self.errors = errors


class TooLarge(ValueError):
    pass


@dataclass
class Message:
    """One valid message. ``key`` is its idempotency key, namespaced by source."""

    index: int
    type: str
    message_id: str
    key: str
    user_id: str
    anonymous_id: str
    timestamp: dt.datetime
    event_type: str = ""
    label: str = ""
    properties: dict = field(default_factory=dict)
    contact_fields: dict = field(default_factory=dict)
    previous_id: str = ""
    group_id: str = ""
    # track/page/screen: the event it becomes, checked as ``/api/v1/events`` checks events (its
    # email is the contact's or profile's, named when the request is stored)
    event: CleanEvent | None = None

    @property
    def email(self) -> str:
        return self.contact_fields.get("email", "")


# the decoder's scanner: one JSON value at an index → (value, the index after it); StopIteration when none
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")


class _NotPlain(ValueError):
    """The body is not a plain JSON object read by ``body_load``'s walk (json.loads decides)."""


def _array_with_sizes(text: str, index: int) -> tuple[list, list[int], int]:
    """The JSON array starting at ``text[index]`` (``[``), each element's size in UTF-8 bytes as
    written, and the index after the array."""
    items: list = []
    sizes: list[int] = []
    index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", index):
        return items, sizes, index + 1
    while True:
        start = index
        try:
            item, index = _SCAN(text, index)
        except StopIteration:
            raise _NotPlain from None
        items.append(item)
        written = text[start:index]
        sizes.append(len(written) if written.isascii() else len(written.encode()))
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        separator = text[index:index + 1]
        index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
        if separator == "]":
            return items, sizes, index
        if separator != ",":
            raise _NotPlain


def _object_with_batch_sizes(text: str) -> tuple[dict, list[int] | None]:
    index = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", index):
        raise _NotPlain
    body: dict = {}
    sizes: list[int] | None = None
    index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
    if text.startswith("}", index):
        index += 1
    else:
        while True:
            if not text.startswith('"', index):
                raise _NotPlain
            key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if not text.startswith(":", index):
                raise _NotPlain
            index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
            if key == "batch" and text.startswith("[", index):
                body[key], sizes, index = _array_with_sizes(text, index)
            else:
                try:
                    body[key], index = _SCAN(text, index)
                except StopIteration:
                    raise _NotPlain from None
                if key == "batch":
                    sizes = None
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            separator = text[index:index + 1]
            index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
            if separator == "}":
                break
            if separator != ",":
                raise _NotPlain
    if index != len(text):
        raise _NotPlain
    return body, sizes


def body_load(raw: bytes) -> tuple[Any, list[int] | None]:
    """The request's JSON (as ``json.loads`` reads it, ValueError alike) and, for an object with a
    ``batch`` array, each message's size in bytes as the client wrote it: the 32 KB limit is
    checked on what was sent, without encoding every message again (a tenth of the intake's
    time). None when the sizes are not known (another body, or not plain UTF-8)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return json.loads(raw), None  # UTF-16/32 or a BOM: json.loads detects them, or says why not
    if text.startswith("\ufeff"):
        return json.loads(raw), None
    try:
        return _object_with_batch_sizes(text)
    except (_NotPlain, ValueError, IndexError):
        return json.loads(text), None  # not a plain object: whatever json.loads makes of it (or its error)


def message_key(source_id: int, message_id: str) -> str:
    """The idempotency key: per source, as Segment deduplicates per source."""
    key = f"trk:{source_id}:{message_id}"
    if len(key) > MAX_EVENT_ID:
        key = f"trk:{source_id}:#{hashlib.sha256(message_id.encode()).hexdigest()}"
    return key


def _parse_time(value: Any) -> dt.datetime | None | str:
    """A timezone-aware datetime, None when absent, or an error message."""
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be an ISO 8601 date-time"
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return "must be an ISO 8601 date-time"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # Segment's libraries always send UTC; a bare time is read as UTC as Segment does.
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError
    number = Decimal(value.strip()) if isinstance(value, str) else Decimal(repr(value) if isinstance(value, float) else value)
    if not number.is_finite():
        raise ValueError
    return number


def order_value(properties: dict) -> tuple[Decimal | None, str | None]:
    """An order's value: ``revenue``, else ``total``, else the sum of products' price × quantity."""
    for name in ("revenue", "total"):
        if properties.get(name) is not None:
            try:
                return _number(properties[name]), None
            except (ValueError, InvalidOperation):
                return None, f"properties.{name}"
    products = properties.get("products")
    if not isinstance(products, list) or not products:
        return None, None
    total = Decimal(0)
    for position, product in enumerate(products):
        if not isinstance(product, dict):
            return None, f"properties.products.{position}"
        try:
            price = _number(product.get("price", 0) if product.get("price") is not None else 0)
            quantity = _number(product.get("quantity", 1) if product.get("quantity") is not None else 1)
        except (ValueError, InvalidOperation):
            return None, f"properties.products.{position}"
        total += price * quantity
    return total, None


def _event_properties(event_name: str, event_type: str, properties: dict) -> tuple[dict, list[tuple[str, str]]]:
    """Segment's properties renamed to ours: ``name`` is the product's name, a custom event's
    ``name`` is the event's name, a purchase has ``value``."""
    errors: list[tuple[str, str]] = []
    mapped = dict(properties)
    if "name" in mapped:
        mapped.setdefault("product_name", mapped.pop("name"))
    if event_type == "custom":
        mapped["name"] = event_name
    elif event_type == "purchase":
        value, bad_field = order_value(properties)
        if bad_field:
            errors.append((bad_field, "must be a number"))
        elif value is not None:
            if abs(value) > MAX_VALUE:
                errors.append(("properties.revenue", f"must be at most {MAX_VALUE:,} in absolute value"))
            else:
                mapped["value"] = float(value.quantize(Decimal("0.01")))
    return mapped, errors


def _traits_to_fields(traits: dict, *, browser: bool) -> tuple[dict, list[tuple[str, str]]]:
    """Contact fields from identify traits (clean, as ``contacts_upsert`` takes them)."""
    errors: list[tuple[str, str]] = []
    fields: dict[str, Any] = {}

    def attempt(name: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except ValueError as exc:
            errors.append((f"traits.{name}", str(exc)))
            return None

    if traits.get("email") not in (None, ""):
        email = attempt("email", clean_email, traits["email"])
        if email:
            fields["email"] = email
    for field_name, names in (("first_name", ("firstName", "first_name")), ("last_name", ("lastName", "last_name"))):
        for name in names:
            if traits.get(name) is not None:
                value = attempt(name, clean_text, traits[name], field_name)
                if value is not None:
                    fields[field_name] = value
                break
    if traits.get("phone") is not None:
        phone = traits["phone"]
        value = attempt("phone", clean_text, str(phone) if isinstance(phone, int) and not isinstance(phone, bool) else phone, "phone")
        if value is not None:
            fields["phone"] = value
    if traits.get("birthday") not in (None, ""):
        birthday = traits["birthday"]
        # Segment's libraries send a date as a full ISO date-time; its date part is the birthday.
        if isinstance(birthday, str) and len(birthday) > 10 and birthday[10] in "T ":
            birthday = birthday[:10]
        value = attempt("birthday", clean_birth_date, birthday)
        if value is not None:
            fields["birth_date"] = value
    address = traits.get("address")
    if isinstance(address, dict):
        if address.get("city") is not None:
            value = attempt("address.city", clean_text, address["city"], "city")
            if value is not None:
                fields["city"] = value
        if isinstance(address.get("country"), str):
            # Only an ISO code fits the column; a country's name stays in properties.address.
            try:
                fields["country"] = clean_country(address["country"])
            except ValueError:
                pass
    consents = traits.get("consents")
    if consents is not None:
        if browser:
            errors.append(("traits.consents", "a browser source may not set consents"))
        elif not isinstance(consents, dict) or not all(isinstance(v, bool) for v in consents.values()):
            errors.append(("traits.consents", "must be an object of channel: true/false"))
        else:
            try:
                fields["consents"] = {clean_channel(channel): granted for channel, granted in consents.items()}
            except ValueError as exc:
                errors.append(("traits.consents", str(exc)))
    properties = {name: value for name, value in traits.items() if name not in FIELD_TRAITS}
    if properties:
        fields["properties"] = properties
    return fields, errors


def _text_id(value: Any) -> str | None:
    """A user/anonymous/group id: Segment accepts strings and numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def messages_validate(
    raw_messages: list[Any], *, source_id: int, browser: bool, received_at: dt.datetime,
    request_sent_at: Any = None, endpoint_type: str | None = None, sizes: list[int] | None = None,
) -> list[Message]:
    """Check every message; raise TrackValidationError listing every problem with its index,
    TooLarge when one message is above 32 KB (``sizes``: each message's size as sent, from
    ``body_load``; else the size of its JSON)."""
    errors: list[dict] = []
    clean: list[Message] = []
    batch_sent_at = _parse_time(request_sent_at)
    if isinstance(batch_sent_at, str):
        errors.append({"field": "sentAt", "message": batch_sent_at})
        batch_sent_at = None
    for index, raw in enumerate(raw_messages):
        item_errors: list[dict] = []

        def fail(name: str, message: str, _errors: list = item_errors, _index: int = index) -> None:
            _errors.append({"index": _index, "field": name, "message": message})

        if not isinstance(raw, dict):
            errors.append({"index": index, "field": "body", "message": "must be an object"})
            continue
        size = sizes[index] if sizes is not None else len(json.dumps(raw, ensure_ascii=False, default=str).encode())
        if size > MAX_MESSAGE_BYTES:
            raise TooLarge(f"A message may be at most {MAX_MESSAGE_BYTES // 1024} KB (message {index}).")
        message_type = raw.get("type", endpoint_type)
        if endpoint_type and message_type != endpoint_type:
            fail("type", f"must be {endpoint_type} on this endpoint")
        elif message_type not in MESSAGE_TYPES:
            fail("type", f"must be one of {', '.join(MESSAGE_TYPES)}")
        message_id = raw.get("messageId")
        if not isinstance(message_id, str) or not 1 <= len(message_id.strip()) <= MAX_ID_LENGTH:
            fail("messageId", f"is required: a text of 1 to {MAX_ID_LENGTH} characters (the idempotency key)")
            message_id = ""
        elif has_control_characters(message_id):
            fail("messageId", CONTROL_CHARACTERS_MESSAGE)
        message_id = message_id.strip()
        user_id = _text_id(raw.get("userId")) if raw.get("userId") is not None else ""
        anonymous_id = _text_id(raw.get("anonymousId")) if raw.get("anonymousId") is not None else ""
        if user_id is None or len(user_id) > MAX_ID_LENGTH or has_control_characters(user_id):
            fail("userId", f"must be a text or number of at most {MAX_ID_LENGTH} characters")
            user_id = ""
        if anonymous_id is None or len(anonymous_id) > MAX_ID_LENGTH or has_control_characters(anonymous_id):
            fail("anonymousId", f"must be a text or number of at most {MAX_ID_LENGTH} characters")
            anonymous_id = ""
        if not user_id and not anonymous_id and not any(e["field"] in ("userId", "anonymousId") for e in item_errors):
            fail("userId", "is required when there is no anonymousId")
        timestamp = _parse_time(raw.get("timestamp"))
        sent_at = _parse_time(raw.get("sentAt"))
        if isinstance(timestamp, str):
            fail("timestamp", timestamp)
        if isinstance(sent_at, str):
            fail("sentAt", sent_at)
        raw_context = raw.get("context")
        if raw_context is not None and not isinstance(raw_context, dict):
            fail("context", "must be an object")
        context: dict = raw_context if isinstance(raw_context, dict) else {}
        properties = raw.get("properties")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            fail("properties", "must be an object")
            properties = {}
        if item_errors:
            errors.extend(item_errors)
            continue
        # Clock skew: the client's clock is off by (its sentAt - our receivedAt); move the
        # timestamp by the same amount. No timestamp means "now".
        client_time = timestamp if isinstance(timestamp, dt.datetime) else None
        client_sent = sent_at if isinstance(sent_at, dt.datetime) else batch_sent_at
        if client_time is None:
            occurred_at = received_at
        elif client_sent is not None:
            occurred_at = client_time + (received_at - client_sent)
        else:
            occurred_at = client_time
        message = Message(
            index=index, type=str(message_type), message_id=message_id, key=message_key(source_id, message_id),
            user_id=user_id, anonymous_id=anonymous_id, timestamp=occurred_at.astimezone(dt.UTC),
        )
        if message_type == "track":
            raw_event = raw.get("event")
            if not isinstance(raw_event, str) or not 1 <= len(raw_event.strip()) <= MAX_ID_LENGTH:
                fail("event", f"is required: a text of 1 to {MAX_ID_LENGTH} characters")
            else:
                event_name = raw_event.strip()
                message.label = event_name
                message.event_type = TRACK_EVENT_TYPES.get(event_name, "custom")
                message.properties, mapping_errors = _event_properties(event_name, message.event_type, properties)
                for name, text in mapping_errors:
                    fail(name, text)
        elif message_type in ("page", "screen"):
            raw_name = raw.get("name")
            if raw_name is not None and not isinstance(raw_name, str):
                fail("name", "must be a text")
            page_name = raw_name if isinstance(raw_name, str) else ""
            mapped = dict(properties)
            page_context = context.get("page")
            page: dict = page_context if isinstance(page_context, dict) else {}
            url = properties.get("url") or page.get("url")
            if url is not None:
                mapped["url"] = url
            if page_name:
                mapped.setdefault("name", page_name)
            message.label = page_name or (url if isinstance(url, str) else "") or message_type
            message.event_type = "page_view"
            message.properties = mapped
        elif message_type == "identify":
            traits = raw.get("traits")
            if traits is None:
                traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
            if not isinstance(traits, dict):
                fail("traits", "must be an object")
            else:
                message.contact_fields, trait_errors = _traits_to_fields(traits, browser=browser)
                for name, text in trait_errors:
                    fail(name, text)
                message.label = message.contact_fields.get("email", "")
        elif message_type == "alias":
            previous_id = _text_id(raw.get("previousId"))
            if not previous_id or len(previous_id) > MAX_ID_LENGTH:
                fail("previousId", f"is required: a text of 1 to {MAX_ID_LENGTH} characters")
            elif not user_id:
                fail("userId", "is required on alias (the id previousId becomes)")
            else:
                message.previous_id = previous_id
                message.label = previous_id
        elif message_type == "group":
            group_id = _text_id(raw.get("groupId"))
            traits = raw.get("traits")
            if not group_id or len(group_id) > MAX_ID_LENGTH:
                fail("groupId", f"is required: a text or number of at most {MAX_ID_LENGTH} characters")
            elif traits is not None and not isinstance(traits, dict):
                fail("traits", "must be an object")
            else:
                message.group_id = group_id
                message.properties = traits or {}
                message.label = group_id
        if not item_errors and message_type in EVENT_MESSAGE_TYPES:
            message.event, problems = event_check(event_id=message.key, email="", event_type=message.event_type,
                                                  occurred_at=message.timestamp, properties=message.properties,
                                                  now=received_at)
            for name, text in problems:
                fail(_EVENT_FIELDS.get(name, name), text)
        if item_errors:
            errors.extend(item_errors)
            continue
        clean.append(message)
    if errors:
        raise TrackValidationError(errors)
    return clean


def received_now() -> dt.datetime:
    return timezone.now()
