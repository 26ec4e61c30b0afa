"""Plain typed data that travels through smsgate: no I/O here.

A :class:`Message` that can never be sent is refused when it is built, with an error that names the
field, so a bad number or an empty body never reaches a queue. Results and events keep the
provider's raw payload beside the normalized fields.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from smsgate.errors import InvalidMessage, SmsgateError
from smsgate.ids import MAX_ID, good_id, new_id
from smsgate.phone import normalize
from smsgate.slots import slot_setter

if TYPE_CHECKING:
    from smsgate.encoding import SegmentInfo

#: The longest body we accept, in characters. Twilio and most providers stop at 1,600 characters
#: (10 UCS-2 parts or about 10 GSM-7 parts); past that a message is refused, never truncated.
MAX_BODY_CHARS = 1600
#: Twilio's cap on media per MMS; the strictest of the providers that take MMS.
MAX_MEDIA = 10
MAX_IDEMPOTENCY_KEY = 200
#: the years a ``send_at`` may fall in, as written (in its own offset). A ``send_at`` in the past
#: sends now; one outside these years is refused: it is a mistake (year 1, a timestamp in
#: milliseconds), and every instant in them converts to and from epoch seconds on every engine.
SEND_AT_YEARS = (2000, 2099)
#: the same rule as a pattern on the ISO 8601 text (the HTTP API's schema states it)
SEND_AT_PATTERN = r"^20[0-9]{2}-"
#: what no stored text may contain: NUL (PostgreSQL refuses it) and lone surrogates (not
#: Unicode; they cannot be encoded as UTF-8 by either engine's driver)
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
#: the HTTP API's schema pattern for text: no NUL (its JSON parser already refuses lone
#: surrogates as invalid JSON)
TEXT_PATTERN = r"^[^\x00]*$"
#: an idempotency key: 1-200 characters, none a control character (C0, DEL, C1)
KEY_PATTERN = r"^[^\x00-\x1F\x7F-\x9F]{1,200}$"
_KEY_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: white space and control characters, spelled out: ``\s`` means different characters in
#: Python and in the JSON Schema (ECMAScript) patterns the API states
_SPACE = r"\x00-\x20\x7F-\x9F\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF"
#: a media URL: http(s), then no control character or white space (and 10 characters at least)
MEDIA_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[^{_SPACE}]*$"
_MEDIA = re.compile(MEDIA_PATTERN)
MIN_MEDIA_URL = 10
#: a sender: no control character, not only white space (and 64 characters at most)
SENDER_PATTERN = rf"^[^\x00-\x1F\x7F]*[^{_SPACE}][^\x00-\x1F\x7F]*$"
_SENDER = re.compile(SENDER_PATTERN)
#: the deepest nesting of metadata (a mapping of a list of a mapping ...)
MAX_METADATA_DEPTH = 8


class Purpose(enum.StrEnum):
    """Why a message is sent; routes, rate limits and opt-out rules differ by purpose."""

    TRANSACTIONAL = "transactional"
    OTP = "otp"
    MARKETING = "marketing"


class Status(enum.StrEnum):
    """Where a message is. Final statuses end the worker's attempts."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True for a state no later event can leave (delivered, failed, ...)."""
        return self in _FINAL

    @property
    def rank(self) -> int:
        """Progress order: an event may move a message only to an equal or higher rank."""
        return _RANK[self]

    def can_move_to(self, new: Status) -> bool:
        """Whether a late event may replace this status (a late "sent" never beats "delivered")."""
        return new.rank > self.rank


_FINAL = frozenset(
    {
        Status.DELIVERED,
        Status.UNDELIVERED,
        Status.FAILED,
        Status.REJECTED,
        Status.EXPIRED,
        Status.CANCELED,
        Status.UNKNOWN,
    }
)
# "unknown" is final for the worker (it stops trying) but ranks below "sent" so a late receipt
# from the provider can still resolve it.
_RANK = {
    Status.SCHEDULED: 0,
    Status.QUEUED: 1,
    Status.SENDING: 2,
    Status.UNKNOWN: 3,
    Status.SENT: 4,
    Status.DELIVERED: 5,
    Status.UNDELIVERED: 5,
    Status.FAILED: 5,
    Status.REJECTED: 5,
    Status.EXPIRED: 5,
    Status.CANCELED: 5,
}


#: what an absent or empty mapping becomes; read-only, so every message can share it
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen_mapping(value: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    # Most messages carry no metadata: the shared empty view spares the ABC checks and copies
    # (a tenth of a message's construction cost, which bulk and SMPP sends pay per message).
    if value is None or (value.__class__ is dict and not value):
        return _EMPTY
    if not isinstance(value, Mapping):
        raise InvalidMessage(f"{name} must be a mapping, got {type(value).__name__}", field=name)
    check_json(value, name)
    return MappingProxyType(dict(value))


def is_bad_text(value: str) -> bool:
    """Whether ``value`` holds what no store can hold and read back: NUL, or a lone surrogate
    (what ``"\\xff"`` becomes when undecodable bytes are read with ``surrogateescape``)."""
    # ASCII text (most bodies) holds no surrogate: a NUL is then one memchr away, where the
    # pattern's character class takes as long as the text.
    if value.isascii():
        return "\x00" in value
    return BAD_TEXT.search(value) is not None


def check_text(value: str, name: str) -> None:
    """Refuse text :func:`is_bad_text` finds bad, naming the field and the position."""
    if not is_bad_text(value):
        return
    bad = BAD_TEXT.search(value)
    assert bad is not None  # is_bad_text found one
    what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (not valid Unicode)"
    raise InvalidMessage(
        f"{name} contains {what} at position {bad.start()}; remove it "
        "(or read the input with the right encoding)",
        field=name,
    )


def check_json(value: Any, name: str, depth: int = 0) -> None:
    """Metadata and provider options are stored as JSON and read back: JSON types only, finite
    numbers, text that :func:`check_text` accepts, keys included."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidMessage(f"{name} is nested deeper than {MAX_METADATA_DEPTH}", field=name)
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        check_text(value, name)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMessage(f"{name} holds {value}; JSON has only finite numbers", field=name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMessage(
                    f"{name} has a key {key!r} that is not text; JSON keys are strings", field=name
                )
            check_text(key, name)
            check_json(item, f"{name}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{name}[{index}]", depth + 1)
    else:
        raise InvalidMessage(
            f"{name} holds a {type(value).__name__}; only text, numbers, true/false, null, "
            "lists and mappings are stored",
            field=name,
        )


def check_send_at(value: Any) -> None:
    """``send_at`` is an aware datetime in :data:`SEND_AT_YEARS`."""
    if not isinstance(value, datetime):
        raise InvalidMessage("send_at must be a datetime", field="send_at")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidMessage(
            "send_at has no time zone; pass an aware datetime such as datetime.now(timezone.utc)",
            field="send_at",
        )
    first, last = SEND_AT_YEARS
    if not first <= value.year <= last:
        raise InvalidMessage(
            f"send_at {value.isoformat()} is outside the years {first}-{last}; give a time in "
            "that range (a time in the past sends now)",
            field="send_at",
        )


def good_key(key: Any) -> bool:
    """Whether ``key`` is a valid idempotency key (see :data:`KEY_PATTERN`)."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_IDEMPOTENCY_KEY
        and _KEY_BAD.search(key) is None
    )


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Message:
    """One SMS or MMS to one recipient.

    ``to`` is normalized to E.164 on construction (possible numbers are accepted, so test ranges
    work; route-level checks may be stricter). ``send_at`` must be timezone-aware. ``validity`` is
    how long the network should keep trying, in seconds or as a ``timedelta``. ``via`` pins the
    provider (no failover), as a reply to an inbound message needs. ``id`` is made when not given.
    """

    to: str
    body: str = ""
    sender: str | None = None
    media: tuple[str, ...] = ()
    purpose: Purpose = Purpose.TRANSACTIONAL
    idempotency_key: str | None = None
    send_at: datetime | None = None
    validity: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    #: the one provider that must send this message, with no failover: a reply leaves through
    #: the provider (and number) the message it answers arrived on
    via: str | None = None
    id: str = field(default_factory=new_id)

    # Checks every field, then writes each slot once (smsgate.slots says why not the dataclass's
    # own __init__): every send and every submission to the outbox builds one.
    def __init__(
        self,
        *,
        to: str,
        body: str = "",
        sender: str | None = None,
        media: Iterable[str] = (),
        purpose: Purpose | str = Purpose.TRANSACTIONAL,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
        validity: int | timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        via: str | None = None,
        id: str | None = None,
    ) -> None:
        to = normalize(to, strict=False, field="to")
        if not isinstance(body, str):
            raise InvalidMessage(f"body must be text, got {type(body).__name__}", field="body")
        if media.__class__ is not tuple:
            media = (media,) if isinstance(media, str) else tuple(media or ())
        if not body and not media:
            raise InvalidMessage(
                "body is empty and there is no media; give a body or a media URL", field="body"
            )
        if len(body) > MAX_BODY_CHARS:
            raise InvalidMessage(
                f"body is {len(body)} characters; the limit is {MAX_BODY_CHARS} "
                "(split it into several messages or shorten it)",
                field="body",
            )
        check_text(body, "body")
        if media:
            _check_media(media)
        if sender is not None:
            _check_sender(sender)
        if purpose.__class__ is not Purpose:
            try:
                purpose = Purpose(purpose)
            except ValueError:
                raise InvalidMessage(
                    f"purpose {purpose!r} is not one of {', '.join(p.value for p in Purpose)}",
                    field="purpose",
                ) from None
        if idempotency_key is not None and not good_key(idempotency_key):
            raise InvalidMessage(
                f"idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} characters without control "
                "characters",
                field="idempotency_key",
            )
        if send_at is not None:
            check_send_at(send_at)
        if validity is not None:
            validity = _seconds(validity)
        if via is not None and (not isinstance(via, str) or not good_id(via)):
            raise InvalidMessage(
                f"via {via!r} is not a provider name (letters, digits, '_', '-')", field="via"
            )
        if id is None:
            id = new_id()
        elif not isinstance(id, str) or not good_id(id):
            raise InvalidMessage(
                f"id {id!r} is not an id: 1-{MAX_ID} letters, digits, '_', '-', '.' or ':'",
                field="id",
            )
        fill_message(
            self,
            to=to,
            body=body,
            sender=sender,
            media=media,
            purpose=purpose,
            idempotency_key=idempotency_key,
            send_at=send_at,
            validity=validity,
            metadata=_frozen_mapping(metadata, "metadata"),
            provider_options=_frozen_mapping(provider_options, "provider_options"),
            via=via,
            id=id,
        )

    @property
    def is_mms(self) -> bool:
        """True when the message carries media."""
        return bool(self.media)

    def segments(self) -> SegmentInfo:
        """The encoding and parts this body will need (see :func:`smsgate.segments`)."""
        from smsgate.encoding import segments

        return segments(self.body)

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed (validated again)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return Message(**values)


def _check_media(media: Iterable[Any]) -> None:
    items = list(media)
    if len(items) > MAX_MEDIA:
        raise InvalidMessage(
            f"{len(items)} media URLs; at most {MAX_MEDIA} per message", field="media"
        )
    for url in items:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise InvalidMessage(
                f"media URL {url!r} is not an http(s) URL; providers fetch media from a public URL",
                field="media",
            )
        check_text(url, "media")
        if len(url) < MIN_MEDIA_URL or _MEDIA.fullmatch(url) is None:
            raise InvalidMessage(
                f"media URL {url!r} is too short or contains spaces or control characters",
                field="media",
            )


def _check_sender(sender: Any) -> None:
    if not isinstance(sender, str) or not sender.strip():
        raise InvalidMessage(
            "sender must be a non-empty string (a number or an alphanumeric id)", field="sender"
        )
    if len(sender) > 64:
        raise InvalidMessage("sender is longer than 64 characters", field="sender")
    if _SENDER.fullmatch(sender) is None:
        raise InvalidMessage(
            "sender contains control characters (CR, LF, ...); remove them", field="sender"
        )
    check_text(sender, "sender")


def _seconds(validity: Any) -> int:
    if isinstance(validity, timedelta):
        validity = int(validity.total_seconds())
    if isinstance(validity, bool) or not isinstance(validity, int) or validity <= 0:
        raise InvalidMessage("validity must be a positive number of seconds", field="validity")
    return validity


_set_message_to = slot_setter(Message, "to")
_set_message_body = slot_setter(Message, "body")
_set_message_sender = slot_setter(Message, "sender")
_set_message_media = slot_setter(Message, "media")
_set_message_purpose = slot_setter(Message, "purpose")
_set_message_idempotency_key = slot_setter(Message, "idempotency_key")
_set_message_send_at = slot_setter(Message, "send_at")
_set_message_validity = slot_setter(Message, "validity")
_set_message_metadata = slot_setter(Message, "metadata")
_set_message_provider_options = slot_setter(Message, "provider_options")
_set_message_via = slot_setter(Message, "via")
_set_message_id = slot_setter(Message, "id")


def fill_message(
    message: Message,
    *,
    to: str,
    body: str,
    sender: str | None,
    media: tuple[str, ...],
    purpose: Purpose,
    idempotency_key: str | None,
    send_at: datetime | None,
    validity: int | None,
    metadata: Mapping[str, Any],
    provider_options: Mapping[str, Any],
    via: str | None,
    id: str,
) -> Message:
    """Write every slot of ``message`` once, past the frozen ``__setattr__`` (smsgate.slots), and
    return it. :class:`Message` checks the fields first; the outbox fills
    ``object.__new__(Message)`` with the fields of a stored row, which were checked when it was
    submitted, so nothing is checked or copied again."""
    _set_message_to(message, to)
    _set_message_body(message, body)
    _set_message_sender(message, sender)
    _set_message_media(message, media)
    _set_message_purpose(message, purpose)
    _set_message_idempotency_key(message, idempotency_key)
    _set_message_send_at(message, send_at)
    _set_message_validity(message, validity)
    _set_message_metadata(message, metadata)
    _set_message_provider_options(message, provider_options)
    _set_message_via(message, via)
    _set_message_id(message, id)
    return message


class JsonObject(dict[str, Any]):
    """A JSON object parsed from a provider's response, with ``body``, the bytes it came from.

    A result's ``raw`` is often one. Storing it stores ``body``, the provider's own bytes, rather
    than encoding the mapping again.
    """

    __slots__ = ("body",)
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What happened to one message: normalized fields plus the provider's raw response."""

    id: str
    to: str
    status: Status
    provider: str | None = None
    provider_message_id: str | None = None
    segments: int | None = None
    encoding: str | None = None
    price: str | None = None
    price_unit: str | None = None
    error: SmsgateError | None = None
    raw: Any = None
    #: each part's id, when the provider gave the parts of a long message ids of their own
    #: (SMPP); a receipt then comes per part (docs/smpp.md)
    part_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the provider accepted the message and nothing has failed it since."""
        return self.error is None and self.status not in (
            Status.FAILED,
            Status.REJECTED,
            Status.UNDELIVERED,
        )

    def to_dict(self) -> dict[str, Any]:
        """The normalized fields as JSON-safe values (``raw`` left out)."""
        return {
            "id": self.id,
            "to": self.to,
            "status": self.status.value,
            "provider": self.provider,
            "provider_message_id": self.provider_message_id,
            "segments": self.segments,
            "encoding": self.encoding,
            "price": self.price,
            "price_unit": self.price_unit,
            "error": None if self.error is None else self.error.to_dict(),
        }


# A provider's answer to each send becomes a result slot by slot (smsgate.slots says why).
_set_result_id = slot_setter(SendResult, "id")
_set_result_to = slot_setter(SendResult, "to")
_set_result_status = slot_setter(SendResult, "status")
_set_result_provider = slot_setter(SendResult, "provider")
_set_result_provider_message_id = slot_setter(SendResult, "provider_message_id")
_set_result_segments = slot_setter(SendResult, "segments")
_set_result_encoding = slot_setter(SendResult, "encoding")
_set_result_price = slot_setter(SendResult, "price")
_set_result_price_unit = slot_setter(SendResult, "price_unit")
_set_result_error = slot_setter(SendResult, "error")
_set_result_raw = slot_setter(SendResult, "raw")
_set_result_part_ids = slot_setter(SendResult, "part_ids")


def accepted_result(
    *,
    id: str,
    to: str,
    status: Status,
    provider: str,
    provider_message_id: str | None,
    segments: int | None,
    encoding: str | None,
    price: str | None,
    price_unit: str | None,
    raw: Any,
) -> SendResult:
    """``SendResult(...)`` with these fields, no error and no part ids, built faster."""
    result: SendResult = object.__new__(SendResult)
    _set_result_id(result, id)
    _set_result_to(result, to)
    _set_result_status(result, status)
    _set_result_provider(result, provider)
    _set_result_provider_message_id(result, provider_message_id)
    _set_result_segments(result, segments)
    _set_result_encoding(result, encoding)
    _set_result_price(result, price)
    _set_result_price_unit(result, price_unit)
    _set_result_error(result, None)
    _set_result_raw(result, raw)
    _set_result_part_ids(result, ())
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryEvent:
    """A normalized delivery receipt or status callback from a provider.

    ``event_id`` identifies this event for de-duplication (a provider's idempotency token where it
    sends one, else a digest of the payload). ``message_id`` is our id when the provider echoes a
    client reference. Multi-part receipts carry ``part`` and ``parts``.
    """

    provider: str
    provider_message_id: str
    status: Status
    event_id: str
    occurred_at: datetime | None = None
    message_id: str | None = None
    to: str | None = None
    error_code: str | None = None
    reason: str | None = None
    opted_out: bool = False
    part: int | None = None
    parts: int | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True)
class InboundPart:
    """Where a fragment of a concatenated inbound message belongs: the sender's ``reference``
    shared by every part, this part's ``number`` (1-based) and the ``total``."""

    reference: str
    number: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A message a person sent to one of our numbers (``part``: a fragment of a longer one,
    which the server stores until every part has arrived)."""

    provider: str
    provider_message_id: str
    sender: str
    to: str
    body: str
    media: tuple[str, ...] = ()
    received_at: datetime | None = None
    raw: Any = None
    part: InboundPart | None = None
