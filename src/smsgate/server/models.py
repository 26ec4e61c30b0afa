"""Request and response bodies of API v1 (pydantic): the OpenAPI schema is generated from these.

Request models are strict about shape (types, lengths, unknown fields refused) and leave the
meaning (is this a phone number, is this body sendable) to the outbox's validation, which
answers per message with an error naming the field.

The messages submitted are typed dicts, not models: a batch has 10,000 of them, and pydantic
validates JSON into plain dicts in half the time it takes to build model instances, which are
also slower to read (see ``MESSAGE_IN`` and ``BATCH_IN``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from smsgate.message import MAX_BODY_CHARS, MAX_IDEMPOTENCY_KEY, MAX_MEDIA, Purpose, Status
from smsgate.server.settings import MAX_BATCH

Scalar = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------------------


class Problem(BaseModel):
    field: str | None
    message: str


class ErrorOut(BaseModel):
    """Every error answer: what went wrong, which field, and how to fix it."""

    error: str = Field(description="a short machine name, e.g. invalid_recipient, opted_out")
    message: str
    field: str | None = None
    fix: str | None = None
    errors: list[Problem] | None = None


# -- messages ----------------------------------------------------------------------------------


@with_config(ConfigDict(extra="forbid"))
class MessageIn(TypedDict):
    """One message to one recipient."""

    to: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="E.164, e.g. +15555550100",
            examples=["+15555550100"],
        ),
    ]
    body: NotRequired[Annotated[str, Field(max_length=MAX_BODY_CHARS, description="default empty")]]
    sender: NotRequired[
        Annotated[
            str | None,
            Field(
                min_length=1, max_length=64, description="a number of ours or an alphanumeric id"
            ),
        ]
    ]
    media: NotRequired[Annotated[list[str], Field(max_length=MAX_MEDIA)]]
    purpose: NotRequired[
        Annotated[Purpose | None, Field(description="transactional (default), otp or marketing")]
    ]
    idempotency_key: NotRequired[
        Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY,
                description="the same key twice returns the first message; the Idempotency-Key "
                "header sets it too",
            ),
        ]
    ]
    send_at: NotRequired[
        Annotated[datetime | None, Field(description="schedule: an ISO 8601 time with a zone")]
    ]
    validity: NotRequired[
        Annotated[int | None, Field(ge=1, le=7 * 86400, description="seconds to keep trying")]
    ]
    metadata: NotRequired[Annotated[dict[str, Scalar], Field(max_length=50)]]


class MessageAccepted(BaseModel):
    """A stored message (or, with ``created`` false, the earlier one with the same key)."""

    id: str
    status: Status
    to: str
    created: bool


class EventOut(BaseModel):
    id: int
    at: datetime
    from_status: Status | None = Field(None, serialization_alias="from")
    to_status: Status = Field(serialization_alias="to")
    source: str
    reason: str | None = None
    provider: str | None = None
    attempt: int | None = None


class MessageOut(BaseModel):
    id: str
    status: Status
    to: str
    body: str
    sender: str | None
    media: list[str]
    purpose: str
    idempotency_key: str | None
    metadata: dict[str, Any]
    attempts: int
    route: str | None
    provider: str | None
    provider_message_id: str | None
    send_at: datetime | None
    next_attempt_at: datetime | None
    last_error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    events: list[EventOut] | None = Field(None, description="the history (single-message reads)")


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = Field(description="pass as cursor for the next (older) page")


@with_config(ConfigDict(extra="forbid"))
class BatchIn(TypedDict):
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=MAX_BATCH)]


#: validate a request body (JSON bytes) into a :class:`MessageIn` or a :class:`BatchIn`
MESSAGE_IN: TypeAdapter[MessageIn] = TypeAdapter(MessageIn)
BATCH_IN: TypeAdapter[BatchIn] = TypeAdapter(BatchIn)


class BatchItem(BaseModel):
    index: int
    id: str | None
    status: Status | None
    created: bool
    error: ErrorOut | None


class BatchOut(BaseModel):
    accepted: int = Field(description="new messages stored")
    duplicates: int = Field(description="items that matched an earlier idempotency key")
    rejected: int
    results: list[BatchItem]


# -- tools -------------------------------------------------------------------------------------


class SegmentsOut(BaseModel):
    encoding: str
    units: int
    segments: int
    parts: list[str]
    part_units: list[int]
    ucs2_chars: list[str]
    replacements: list[list[str]]
    text: str


class LookupOut(BaseModel):
    e164: str
    region: str | None
    country_code: int
    national_number: str
    type: str
    valid: bool
    possible: bool
    carrier: str | None
    time_zones: list[str]
    location: str | None


class Health(BaseModel):
    status: Literal["ok", "ready", "unavailable"]
    store: str | None = None
    worker: str | None = None


# -- inbound and opt-outs ----------------------------------------------------------------------


class InboundOut(BaseModel):
    id: str
    provider: str
    provider_message_id: str
    sender: str = Field(serialization_alias="from")
    to: str
    body: str
    media: list[str]
    action: str | None = Field(description="opt_out, opt_out_all, opt_in, help or null")
    received_at: datetime


class InboundPage(BaseModel):
    items: list[InboundOut]
    next_cursor: str | None


class SuppressionIn(_Model):
    recipient: str = Field(min_length=1, max_length=64, examples=["+15555550100"])
    our_number: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the number of ours they opted out of; omitted: all of ours",
    )
    reason: str | None = Field(None, max_length=500)


class SuppressionOut(BaseModel):
    recipient: str
    our_number: str = Field(description='"*" means every number of ours')
    source: str
    keyword: str | None
    reason: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class Removed(BaseModel):
    removed: int


# -- user webhooks -----------------------------------------------------------------------------


class WebhookIn(_Model):
    url: AnyHttpUrl = Field(description="where to POST events (any 2xx answer is success)")
    events: list[str] = Field(
        min_length=1,
        max_length=50,
        description='event types: "*", a family such as "message.*", or e.g. "message.delivered"',
    )
    description: str | None = Field(None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_...: verify signatures with it; shown only now")


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    subscription_id: str
    event_type: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


# -- provider webhooks -------------------------------------------------------------------------


class WebhookReceipt(BaseModel):
    """What a provider webhook endpoint answers (providers only look at the status code)."""

    received: int = Field(description="events or messages in the request")
    stored: int = Field(description="how many were new (replays and duplicates are stored once)")
