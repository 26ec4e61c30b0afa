"""Request and response bodies of API v1 (pydantic): the OpenAPI schema is generated from these.

Request models are strict about shape (types, lengths, unknown fields refused) and leave the
meaning (is this a phone number, is this body sendable) to the outbox's validation, which
answers per message with an error naming the field.

The schema states every rule the server enforces on a request, as patterns where the rule is
one (an E.164 number of a possible length, a time in the years 2000-2099, text without NUL, an
id's form): a request the schema allows is never refused for its shape. The items of a batch
are the exception by design: only their types are checked for the whole batch, and each item's
meaning is checked on its own, so one bad number is one refused item in a 200 answer.

The messages submitted are typed dicts, not models: a batch has 10,000 of them, and pydantic
validates JSON into plain dicts in half the time it takes to build model instances, which are
also slower to read (see ``MESSAGE_IN`` and ``BATCH_IN``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    with_config,
)
from typing_extensions import TypedDict

from smsgate.ids import ID_PATTERN, MAX_ID
from smsgate.message import (
    KEY_PATTERN,
    MAX_BODY_CHARS,
    MAX_IDEMPOTENCY_KEY,
    MAX_MEDIA,
    MEDIA_PATTERN,
    MIN_MEDIA_URL,
    SEND_AT_PATTERN,
    SEND_AT_YEARS,
    SENDER_PATTERN,
    TEXT_PATTERN,
    Purpose,
    Status,
)
from smsgate.outbox.records import RESERVED_METADATA
from smsgate.phone import e164_pattern
from smsgate.server.settings import MAX_BATCH

#: text as the stores keep it: no NUL (lone surrogates are not JSON pydantic parses)
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Scalar = Text | int | float | bool | None
#: a recipient as the API takes it: E.164 of a possible length, exactly (formatting and national
#: numbers are for the library and the CLI, which normalize them). Stated here, checked by
#: :func:`smsgate.server.submit.check_number` with the precise reason.
E164 = Annotated[
    str,
    Field(
        description="E.164: + and the country code, a possible length, e.g. +15555550100",
        examples=["+15555550100"],
        json_schema_extra={"pattern": e164_pattern(), "minLength": 4, "maxLength": 17},
    ),
]
#: an id in a path or a cursor; a malformed one is "not found" (path) or refused (cursor)
Id = Annotated[str, Field(json_schema_extra={"pattern": ID_PATTERN, "maxLength": MAX_ID})]


#: the inbound message a reply answers: the reply leaves from the number it was sent to, through
#: the provider it arrived on
InReplyTo = Annotated[
    str,
    Field(
        description="the id of an inbound message (GET /v1/inbound) this answers: the reply "
        "leaves from the number it was sent to, through the provider it arrived on",
        json_schema_extra={"pattern": ID_PATTERN, "maxLength": MAX_ID},
    ),
]


def _send_at(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError("send_at has no time zone; write e.g. 2030-05-01T09:00:00Z")
    first, last = SEND_AT_YEARS
    if not first <= value.year <= last:
        raise ValueError(f"send_at must be in the years {first}-{last}")
    return value


SendAt = Annotated[
    datetime,
    Field(
        strict=True,
        description=f"schedule: an ISO 8601 time with a zone in the years {SEND_AT_YEARS[0]}-"
        f"{SEND_AT_YEARS[1]}; a time in the past sends now",
    ),
    AfterValidator(_send_at),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": SEND_AT_PATTERN}),
]


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


@with_config(
    ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["body"], "properties": {"body": {"minLength": 1}}},
                {"required": ["media"], "properties": {"media": {"minItems": 1}}},
            ]
        },
    )
)
class MessageIn(TypedDict):
    """One message to one recipient: a body, media, or both."""

    to: E164
    body: NotRequired[
        Annotated[
            str,
            Field(max_length=MAX_BODY_CHARS, pattern=TEXT_PATTERN, description="default empty"),
        ]
    ]
    sender: NotRequired[
        Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=64,
                description="a number of ours or an alphanumeric id",
                json_schema_extra={"pattern": SENDER_PATTERN},
            ),
        ]
    ]
    media: NotRequired[
        Annotated[
            list[
                Annotated[
                    str,
                    Field(
                        min_length=MIN_MEDIA_URL,
                        description="a public http(s) URL",
                        json_schema_extra={"pattern": MEDIA_PATTERN},
                    ),
                ]
            ],
            Field(max_length=MAX_MEDIA),
        ]
    ]
    purpose: NotRequired[
        Annotated[Purpose | None, Field(description="transactional (default), otp or marketing")]
    ]
    idempotency_key: NotRequired[
        Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY,
                pattern=KEY_PATTERN,
                description="the same key twice returns the first message; the Idempotency-Key "
                "header sets it too",
            ),
        ]
    ]
    send_at: NotRequired[SendAt | None]
    validity: NotRequired[
        Annotated[int | None, Field(ge=1, le=7 * 86400, description="seconds to keep trying")]
    ]
    metadata: NotRequired[
        Annotated[
            dict[Text, Scalar],
            Field(
                max_length=50,
                # the keys' rule, stated so that a key outside it is not left to "any"
                json_schema_extra={
                    "propertyNames": {
                        "pattern": TEXT_PATTERN,
                        "not": {"enum": sorted(RESERVED_METADATA)},
                    },
                    "additionalProperties": False,
                },
            ),
        ]
    ]
    in_reply_to: NotRequired[InReplyTo | None]


@with_config(ConfigDict(extra="forbid"))
class BatchMessageIn(TypedDict):
    """One message of a batch: the types are checked here, the meaning (number, body, sender,
    times) per item, answered in that item's result."""

    to: Annotated[str, Field(min_length=1, max_length=64, examples=["+15555550100"])]
    body: NotRequired[Annotated[str, Field(max_length=MAX_BODY_CHARS)]]
    sender: NotRequired[Annotated[str | None, Field(min_length=1, max_length=64)]]
    media: NotRequired[Annotated[list[str], Field(max_length=MAX_MEDIA)]]
    purpose: NotRequired[Purpose | None]
    idempotency_key: NotRequired[
        Annotated[str | None, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]
    ]
    send_at: NotRequired[
        Annotated[
            datetime | None,
            Field(strict=True, description="an ISO 8601 time with a zone (checked per item)"),
        ]
    ]
    validity: NotRequired[Annotated[int | None, Field(ge=1, le=7 * 86400)]]
    metadata: NotRequired[
        Annotated[dict[str, str | int | float | bool | None], Field(max_length=50)]
    ]


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
    messages: Annotated[list[BatchMessageIn], Field(min_length=1, max_length=MAX_BATCH)]


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


#: one of our numbers or sender ids as the suppression list keys it, or "*": no control
#: character, not only white space
OURS_PATTERN = SENDER_PATTERN


class SuppressionIn(_Model):
    recipient: E164
    our_number: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the number of ours they opted out of; omitted: all of ours",
        json_schema_extra={"pattern": OURS_PATTERN},
    )
    reason: str | None = Field(None, max_length=500, pattern=TEXT_PATTERN)


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


def _event_patterns() -> list[str]:
    from smsgate.server.webhooks_out import EVENT_TYPES

    families = sorted({t.split(".", 1)[0] + ".*" for t in EVENT_TYPES})
    return ["*", *families, *EVENT_TYPES]


def _event_pattern(value: str) -> str:
    if value not in _event_patterns():
        raise ValueError(
            f"unknown event type {value!r}; use '*', a family such as 'message.*', or one of "
            + ", ".join(_event_patterns()[1:])
        )
    return value


EventPattern = Annotated[
    str,
    AfterValidator(_event_pattern),
    WithJsonSchema({"type": "string", "enum": _event_patterns()}),
]


class WebhookIn(_Model):
    url: AnyHttpUrl = Field(description="where to POST events (any 2xx answer is success)")
    events: list[EventPattern] = Field(
        min_length=1,
        max_length=50,
        description='event types: "*", a family such as "message.*", or e.g. "message.delivered"',
    )
    description: str | None = Field(None, max_length=500, pattern=TEXT_PATTERN)


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
