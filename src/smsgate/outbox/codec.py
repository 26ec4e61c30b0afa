"""Messages to rows and back, and the validation that happens before anything is stored.

A submitted item is either a :class:`~smsgate.message.Message` (validated when it was built) or a
mapping of its fields, which is validated here so that a bad row becomes a per-recipient error
rather than an exception in the caller's loop.

Bulk submissions are dominated by phone-number parsing, so mappings whose number is already in
E.164 form take a fast path: the country code is looked up, the national number must not start
with a national prefix, and its length must be possible for that country, which is exactly the
check :func:`smsgate.phone.normalize` makes with ``strict=False``; anything else goes through
``normalize`` itself. Messages read back from the store were validated when they were submitted,
so the worker rebuilds them without validating again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from smsgate import jsonscan
from smsgate.errors import InvalidMessage, InvalidRecipient, SmsgateError
from smsgate.ids import good_id, new_id
from smsgate.message import (
    MAX_BODY_CHARS,
    SEND_AT_YEARS,
    Message,
    Purpose,
    fill_message,
    good_key,
    is_bad_text,
)
from smsgate.outbox.store import NewEvent, NewMessageRow, State, StoredMessage, dumps
from smsgate.phone import fast_e164, normalize

MESSAGE_FIELDS = frozenset(Message.__dataclass_fields__)
#: fields the fast path handles itself; any other field sends the item through ``Message``
_FAST_FIELDS = frozenset({"to", "body", "sender", "purpose", "idempotency_key", "id", "send_at"})


def row_for(message: Message, now: float, source: str = "submit") -> tuple[NewMessageRow, NewEvent]:
    """The row and the "submitted" event for a validated message."""
    payload: dict[str, Any] = {"body": message.body}
    if message.media:
        payload["media"] = list(message.media)
    if message.validity is not None:
        payload["validity"] = message.validity
    if message.metadata:
        payload["metadata"] = dict(message.metadata)
    if message.provider_options:
        payload["provider_options"] = dict(message.provider_options)
    if message.via is not None:
        payload["via"] = message.via
    send_at = message.send_at.timestamp() if message.send_at is not None else None
    return _row(
        message.id,
        message.to,
        message.sender,
        message.purpose.value,
        message.idempotency_key,
        dumps(payload),
        send_at,
        message.validity,
        now,
        source,
    )


def _row(
    message_id: str,
    to: str,
    sender: str | None,
    purpose: str,
    key: str | None,
    payload: str,
    send_at: float | None,
    validity: int | None,
    now: float,
    source: str,
) -> tuple[NewMessageRow, NewEvent]:
    if send_at is not None and send_at > now:
        state = State.SCHEDULED
        due = send_at
        reason = f"submitted; scheduled for {_iso(send_at)}"
    else:
        state = State.QUEUED
        due = now
        reason = "submitted"
    expires = None if validity is None else max(send_at or now, now) + validity
    row = NewMessageRow(
        message_id, state.value, purpose, to, sender, key, payload, send_at, expires, due, now
    )
    return row, NewEvent(message_id, now, None, state.value, source, reason)


def _iso(ts: float) -> str:
    from smsgate.outbox.store import to_datetime

    return to_datetime(ts).isoformat()


class Validator:
    """Validates submitted items and turns them into rows, caching what repeats in bulk sends
    (senders, purposes) so a million rows cost one check of each distinct value."""

    def __init__(self, *, region: str | None = None, ids: Callable[[], str] = new_id) -> None:
        self.region = region
        self._ids = ids

    def build(
        self, item: Message | Mapping[str, Any], now: float, source: str = "submit"
    ) -> tuple[NewMessageRow, NewEvent, bool]:
        """Row, event, and whether the id was generated here (so it cannot be stored yet).

        Raises :class:`~smsgate.errors.SmsgateError` naming the field at fault.
        """
        if type(item) is not dict:  # a plain dict is by far the most common item
            if isinstance(item, Message):
                row, event = row_for(item, now, source)
                return row, event, False
            if not isinstance(item, Mapping):
                raise InvalidMessage(
                    "each item must be a Message or a mapping of its fields, "
                    f"got {type(item).__name__}",
                    field="item",
                )
        fresh = "id" not in item
        if item.keys() <= _FAST_FIELDS:
            if self.region is None:
                fast = self._fast(item, now, source, fresh)
                if fast is not None:
                    return fast
        else:
            unknown = item.keys() - MESSAGE_FIELDS
            if unknown:
                raise InvalidMessage(
                    f"unknown field(s) {', '.join(map(repr, sorted(unknown)))}; "
                    f"known: {', '.join(sorted(MESSAGE_FIELDS))}",
                    field=str(sorted(unknown)[0]),
                )
        values = dict(item)
        if self.region is not None and isinstance(values.get("to"), str):
            values["to"] = normalize(values["to"], self.region, strict=False, field="to")
        try:
            message = Message(**values)
        except TypeError as exc:
            raise InvalidMessage(f"bad message fields: {exc}", field="item") from None
        row, event = row_for(message, now, source)
        return row, event, fresh

    def _fast(
        self, item: Mapping[str, Any], now: float, source: str, fresh: bool
    ) -> tuple[NewMessageRow, NewEvent, bool] | None:
        to = item.get("to")
        body = item.get("body", "")
        if type(to) is not str or type(body) is not str or not body:
            return None
        if len(body) > MAX_BODY_CHARS or is_bad_text(body) or fast_e164(to) is None:
            return None  # the slow path decides, with the precise error
        sender = item.get("sender")
        if sender is not None and (type(sender) is not str or not sender_is_valid(sender)):
            return None  # the slow path raises the precise error
        purpose = _PURPOSES.get(item.get("purpose", "transactional"))
        if purpose is None:
            return None
        key = item.get("idempotency_key")
        if key is not None and not good_key(key):
            return None
        message_id = item.get("id")
        if message_id is None:
            message_id = self._ids()
        elif type(message_id) is not str or not good_id(message_id):
            return None
        send_at = item.get("send_at")
        if send_at is not None:
            if (
                not isinstance(send_at, datetime)
                or send_at.utcoffset() is None
                or not SEND_AT_YEARS[0] <= send_at.year <= SEND_AT_YEARS[1]
            ):
                return None
            payload = '{"body":' + _encode_string(body) + "}"
            row, event = _row(
                message_id,
                to,
                sender,
                purpose,
                key,
                payload,
                send_at.timestamp(),
                None,
                now,
                source,
            )
            return row, event, fresh
        return (
            NewMessageRow(
                message_id,
                "queued",
                purpose,
                to,
                sender,
                key,
                '{"body":' + _encode_string(body) + "}",
                None,
                None,
                now,
                now,
            ),
            NewEvent(message_id, now, None, "queued", source, "submitted"),
            fresh,
        )


_PURPOSES: dict[Any, str] = {**{p.value: p.value for p in Purpose}, **{p: p.value for p in Purpose}}
_encode_string: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)


#: distinct senders remembered: bulk sends repeat a few, while a long-running server sees
#: whatever its clients send, so the memory is bounded rather than one entry per sender ever seen
SENDER_CACHE = 1024


@lru_cache(maxsize=SENDER_CACHE)
def sender_is_valid(sender: str) -> bool:
    """Whether a message may carry ``sender`` (a refused one takes the slow path, which raises
    a new error each time: an error object raised again keeps growing its traceback, and with
    it every frame and request it passed through)."""
    try:
        Message(to="+15555550100", body="x", sender=sender)
    except SmsgateError:
        return False
    return True


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_PURPOSE_BY_VALUE = {p.value: p for p in Purpose}


class UnreadableRow(InvalidMessage):
    """A stored row that does not decode into a message (written by an older version, or by
    hand): the worker quarantines it as ``failed`` with this reason instead of retrying it."""

    kind = "unreadable_row"


def message_from_row(row: StoredMessage) -> Message:
    """Rebuild the submitted message from its row, without validating it again (it was
    validated when it was submitted).

    Raises :class:`UnreadableRow` when the row does not decode.
    """
    try:
        return _message_from_row(row)
    except (ValueError, TypeError, KeyError, OverflowError, OSError, AttributeError) as exc:
        raise UnreadableRow(
            f"message {row.id} cannot be read back from the store ({type(exc).__name__}: "
            f"{exc}); it is quarantined",
            field="payload",
        ) from None


def _message_from_row(row: StoredMessage) -> Message:
    payload = jsonscan.loads(row.payload)
    send_at = row.send_at
    metadata = payload.get("metadata")
    options = payload.get("provider_options")
    body = payload.get("body", "")
    if not isinstance(body, str) or is_bad_text(body):
        raise ValueError("the body is not text a provider can take")
    return fill_message(
        object.__new__(Message),
        to=row.to_number,
        body=body,
        sender=row.sender,
        media=tuple(payload["media"]) if "media" in payload else (),
        purpose=_PURPOSE_BY_VALUE[row.purpose],
        idempotency_key=row.idempotency_key,
        send_at=None if send_at is None else datetime.fromtimestamp(send_at, UTC),
        validity=payload.get("validity"),
        metadata=MappingProxyType(metadata) if metadata else _EMPTY,
        provider_options=MappingProxyType(options) if options else _EMPTY,
        via=payload.get("via"),
        id=row.id,
    )


def describe_error(error: BaseException) -> SmsgateError:
    if isinstance(error, SmsgateError):
        return error
    return (
        InvalidRecipient(str(error))
        if isinstance(error, ValueError)
        else InvalidMessage(str(error))
    )


def parse_time(value: float | datetime | None, name: str) -> float | None:
    """A filter time given as epoch seconds or an aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidMessage(f"{name} has no time zone; pass an aware datetime", field=name)
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidMessage(f"{name} must be a datetime or finite epoch seconds", field=name)
