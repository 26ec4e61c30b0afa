"""What the outbox API returns: message records, pages, submit reports. Plain data, JSON-ready."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from smsgate.errors import SmsgateError
from smsgate.message import Status
from smsgate.outbox.store import EventRecord, ReceiptOutcome, StoredMessage, to_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: metadata key holding the text a message reads back as instead of its body. Verify sets it on
#: the texts that carry a live code (the template with the code masked), so every read path
#: (API, console, CLI, library) shows the masked text while the worker sends the real body.
REDACTED_BODY = "redacted_body"
#: metadata keys only smsgate itself sets; the API refuses them from callers, so a caller cannot
#: make a message read back as text it was not sent with
RESERVED_METADATA = frozenset({REDACTED_BODY})


def _text(value: Any) -> str:
    """Stored text as a string that encodes (an unreadable one shown with replacements)."""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _body(payload: dict[str, Any]) -> str:
    """The body as read back: the redacted form when the message was stored with one."""
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get(REDACTED_BODY), str):
        return _text(metadata[REDACTED_BODY])
    return _text(payload.get("body", ""))


class MessageNotFound(SmsgateError):
    """No message with that id is in the outbox."""

    kind = "not_found"


class NotCancelable(SmsgateError):
    """The message was already handed to a provider (or finished); it can no longer be canceled."""

    kind = "not_cancelable"

    def __init__(self, message: str, *, status: Status, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message as the outbox knows it: its fields, where it is, and (from ``status``) its
    history. ``state`` is the internal lifecycle state behind the public ``status``."""

    id: str
    status: Status
    state: str
    to: str
    body: str
    sender: str | None
    media: tuple[str, ...]
    purpose: str
    idempotency_key: str | None
    metadata: dict[str, Any]
    attempts: int
    route: str | None
    provider: str | None
    provider_message_id: str | None
    send_at: datetime | None
    next_attempt_at: datetime | None
    expires_at: datetime | None
    last_error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    events: tuple[EventRecord, ...] = ()

    @classmethod
    def from_stored(cls, row: StoredMessage, events: tuple[EventRecord, ...] = ()) -> MessageRecord:
        """The record of a row. A row whose payload or times do not decode still reads (its
        unreadable parts empty, ``last_error`` saying why), so one bad row never breaks a
        list; the worker quarantines it as ``failed`` when it meets it."""
        problems: list[str] = []

        def instant(value: float | None, name: str) -> datetime | None:
            if value is None:
                return None
            try:
                return to_datetime(value)
            except (ValueError, OverflowError, OSError):
                problems.append(f"{name} {value!r} is out of range")
                return None

        try:
            payload = json.loads(row.payload)
            if not isinstance(payload, dict):
                raise ValueError("the payload is not a JSON object")
        except ValueError as exc:
            problems.append(f"payload: {exc}")
            payload = {}
        try:
            last_error = None if row.last_error is None else json.loads(row.last_error)
        except ValueError as exc:
            problems.append(f"last_error: {exc}")
            last_error = None
        record = cls(
            id=row.id,
            status=row.status,
            state=row.state.value,
            to=row.to_number,
            body=_body(payload),
            sender=row.sender,
            media=tuple(map(_text, payload.get("media", ()) or ())),
            purpose=row.purpose,
            idempotency_key=row.idempotency_key,
            metadata=dict(payload.get("metadata") or {}),
            attempts=row.attempts,
            route=row.route,
            provider=row.provider,
            provider_message_id=row.provider_message_id,
            send_at=instant(row.send_at, "send_at"),
            next_attempt_at=instant(row.next_attempt_at, "next_attempt_at"),
            expires_at=instant(row.expires_at, "expires_at"),
            last_error=last_error,
            created_at=instant(row.created_at, "created_at") or _EPOCH,
            updated_at=instant(row.updated_at, "updated_at") or _EPOCH,
            events=events,
        )
        if problems:
            record = replace(
                record,
                last_error={
                    "error": "unreadable_row",
                    "message": "the stored row does not fully decode: " + "; ".join(problems),
                    "previous": last_error,
                },
            )
        return record

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def to_dict(self, *, events: bool = True) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        data: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "state": self.state,
            "to": self.to,
            "body": self.body,
            "sender": self.sender,
            "media": list(self.media),
            "purpose": self.purpose,
            "idempotency_key": self.idempotency_key,
            "metadata": self.metadata,
            "attempts": self.attempts,
            "route": self.route,
            "provider": self.provider,
            "provider_message_id": self.provider_message_id,
            "send_at": iso(self.send_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "expires_at": iso(self.expires_at),
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
        if events:
            data["events"] = [event.to_dict() for event in self.events]
        return data


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Outbox.list`, newest first; pass ``next_cursor`` for the next page."""

    items: list[MessageRecord]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.to_dict(events=False) for item in self.items],
            "next_cursor": self.next_cursor,
        }


@dataclass(slots=True)
class SubmitOutcome:
    """What happened to one submitted item: stored (``created``), matched an earlier message with
    the same idempotency key or id (``created`` false), or refused (``error``)."""

    index: int
    id: str | None
    created: bool = False
    error: SmsgateError | None = None
    #: the recipient: as stored (E.164) once validated, as given for items refused before
    to: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "created": self.created,
            "to": self.to if isinstance(self.to, str | None) else str(self.to),
            "error": None if self.error is None else self.error.to_dict(),
        }


@dataclass(slots=True)
class SubmitReport:
    """The summary of :meth:`Outbox.submit_many`. ``errors`` keeps the first refused items (at
    most ``max_errors``); pass ``on_outcome`` to see every one as it happens."""

    total: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: False when ``atomic`` was asked for and something was refused: nothing was stored
    committed: bool = True
    errors: list[SubmitOutcome] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rejected == 0

    @property
    def rate(self) -> float:
        """Items handled per second."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "committed": self.committed,
            "errors": [e.to_dict() for e in self.errors],
            "elapsed": round(self.elapsed, 3),
        }


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What :meth:`Outbox.record_event` did with a provider receipt."""

    outcome: ReceiptOutcome
    message_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "message_id": self.message_id}
