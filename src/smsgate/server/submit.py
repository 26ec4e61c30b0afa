"""From an API request to outbox rows: key restrictions and quota here, then the outbox.

The outbox validates every message and refuses recipients who opted out (``OptedOut``, see
:mod:`smsgate.outbox.suppressions`); this module adds what only the API knows: what a key may
send, its quota, and the answers' shapes.

Single-message requests that arrive together are stored together: :class:`Submitter` collects
what is waiting while the previous group is being written and stores the next group in one
transaction (group commit), so a busy server writes far fewer transactions than it answers
requests, and an idle one adds no delay. Every request still gets its own outcome.

A batch is handled in one go on a worker thread (parse, restrictions, quota, the outbox, the
answer), so the event loop, which also runs the in-process worker, is never held up by it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import anyio.to_thread
from pydantic import ValidationError

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import InvalidRecipient, SmsgateError
from smsgate.ids import good_id
from smsgate.message import Purpose, Status, good_key
from smsgate.outbox import Outbox, SubmitOutcome
from smsgate.outbox.groupcommit import GroupCommit, on_thread
from smsgate.outbox.records import RESERVED_METADATA
from smsgate.outbox.store import dumps
from smsgate.outbox.tables.server import ServerStore
from smsgate.phone import e164_pattern, normalize
from smsgate.server.auth import ApiKey
from smsgate.server.errors import ApiError, from_smsgate, problems_error
from smsgate.server.models import BATCH_IN, BatchMessageIn, MessageAccepted, MessageIn
from smsgate.server.settings import ServerSettings

#: each purpose's text (an enum's ``.value`` costs a descriptor call; 10,000 per batch add up)
_VALUE = {purpose: purpose.value for purpose in Purpose}


@lru_cache(maxsize=1)
def _e164() -> re.Pattern[str]:
    return re.compile(e164_pattern())


def check_number(text: str, field: str) -> str:
    """A recipient as the API takes it (the schema's pattern): E.164 of a possible length,
    exactly. Raises :class:`InvalidRecipient` with the precise reason, and with the E.164 form
    when only the formatting was off."""
    if _e164().fullmatch(text) is not None:
        return text
    e164 = normalize(text, strict=False, field=field)  # raises with the reason
    raise InvalidRecipient(
        f"{field} {text!r} is not written in E.164; send {e164}: + and the country code, "
        "digits only",
        field=field,
    )


def prepare(
    item: MessageIn | BatchMessageIn, key: ApiKey, idempotency_header: str | None = None
) -> dict[str, Any]:
    """The outbox item for ``item`` under ``key``'s restrictions (raises :class:`ApiError`)."""
    record = key.record
    purpose = item.get("purpose")
    if purpose is None:
        allowed = record.purposes
        purpose = (
            Purpose(allowed[0])
            if allowed and len(allowed) == 1 and allowed[0] in _VALUE.values()
            else Purpose.TRANSACTIONAL
        )
    if record.purposes is not None and _VALUE[purpose] not in record.purposes:
        raise ApiError(
            403,
            "forbidden",
            f"this API key may not send {_VALUE[purpose]} messages",
            field="purpose",
            fix=f"use purpose {' or '.join(record.purposes)}, or another key",
        )
    sender = item.get("sender")
    if record.senders is not None:
        if sender is None and len(record.senders) == 1:
            sender = record.senders[0]
        elif sender is None:
            raise ApiError(
                403,
                "forbidden",
                "this API key must name its sender",
                field="sender",
                fix=f"set sender to one of {', '.join(record.senders)}",
            )
        elif sender not in record.senders:
            raise ApiError(
                403,
                "forbidden",
                f"this API key may not send as {sender!r}",
                field="sender",
                fix=f"use one of {', '.join(record.senders)}",
            )
    key_value = item.get("idempotency_key")
    if idempotency_header is not None:
        if key_value is not None and key_value != idempotency_header:
            # 409: each is a valid key on its own; together they conflict (as Stripe answers a
            # key reused with other parameters)
            raise ApiError(
                409,
                "idempotency_conflict",
                "the Idempotency-Key header and idempotency_key in the body differ",
                field="idempotency_key",
                fix="send one of them, or the same value in both",
            )
        key_value = idempotency_header
    values: dict[str, Any] = {
        "to": item["to"],
        "body": item.get("body", ""),
        "purpose": _VALUE[purpose],
    }
    if sender is not None:
        values["sender"] = sender
    if key_value is not None:
        values["idempotency_key"] = key_value
    if media := item.get("media"):
        values["media"] = tuple(media)
    if (send_at := item.get("send_at")) is not None:
        values["send_at"] = send_at
    if (validity := item.get("validity")) is not None:
        values["validity"] = validity
    if metadata := item.get("metadata"):
        if reserved := sorted(RESERVED_METADATA.intersection(metadata)):
            raise ApiError(
                422,
                "invalid_request",
                f"metadata key {reserved[0]!r} is reserved: smsgate sets it itself",
                field=f"metadata.{reserved[0]}",
                fix="use another key for your own data",
            )
        values["metadata"] = metadata
    if (answers := item.get("in_reply_to")) is not None:
        values["in_reply_to"] = answers
    return values


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to one submitted message: 201 when stored now, 200 for an idempotent replay."""

    body: MessageAccepted

    @property
    def status_code(self) -> int:
        return 201 if self.body.created else 200

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.body.created else {"Idempotent-Replayed": "true"}


async def accept(
    submitter: Submitter, key: ApiKey, message: MessageIn, idempotency_header: str | None
) -> Accepted:
    """Submit one API message under ``key``: restrictions, quota, then the outbox (which
    refuses opted-out recipients).

    Raises :class:`ApiError` with the reason when the message is refused.
    """
    if idempotency_header is not None and not good_key(idempotency_header):
        raise ApiError(
            422,
            "invalid_request",
            "the Idempotency-Key header must be 1-200 characters without control characters",
            field="Idempotency-Key",
            fix="send a shorter key, without control characters",
        )
    try:
        check_number(message["to"], "to")
    except InvalidRecipient as exc:
        raise from_smsgate(exc) from None
    item = prepare(message, key, idempotency_header)
    if "in_reply_to" in item:
        await anyio.to_thread.run_sync(submitter.answer, item)
    if key.quota is not None:
        await anyio.to_thread.run_sync(submitter.charge, key, 1)
    outcome = await submitter.submit_one(item)
    if outcome.error is not None:
        raise from_smsgate(outcome.error)
    assert outcome.id is not None
    if outcome.created:
        status = _new_status(item, submitter.clock.time())
    else:
        earlier = await anyio.to_thread.run_sync(submitter.earlier_statuses, [outcome])
        status = earlier[outcome.id]
    return Accepted(
        MessageAccepted(id=outcome.id, status=status, to=outcome.to, created=outcome.created)
    )


async def accept_batch(
    submitter: Submitter, key: ApiKey, messages: Sequence[BatchMessageIn] | bytes
) -> bytes:
    """Submit a batch (parsed, or the raw JSON body) under ``key``; returns the JSON
    answer (``BatchOut``), one result per item in order. Raises :class:`ApiError` when the
    batch as a whole is refused (malformed, too large, over the quota)."""
    return await anyio.to_thread.run_sync(submitter.submit_batch, key, messages)


class Submitter:
    """Stores prepared items through the outbox, grouping concurrent single submissions."""

    def __init__(
        self,
        outbox: Outbox,
        store: ServerStore,
        settings: ServerSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        group: int = 200,
    ) -> None:
        self.outbox = outbox
        self.store = store
        self.settings = settings
        self.clock = clock
        self._commit = GroupCommit(
            on_thread(self.store_items), group=group, name="smsgate-submitter"
        )

    # -- quota --------------------------------------------------------------------------------

    def charge(self, key: ApiKey, count: int) -> None:
        """Count ``count`` messages against the key's quota, or raise 429 when they do not fit.

        Synchronous (it writes to the store): call it on a worker thread."""
        quota = key.quota
        if quota is None:
            return
        now = self.clock.time()
        window = math.floor(now / quota.period) * quota.period
        if not self.store.consume_quota(key.id, window, count, int(quota.count)):
            retry = max(1, math.ceil(window + quota.period - now))
            raise ApiError(
                429,
                "quota_exceeded",
                f"API key {key.name!r} has used its quota of {quota} "
                f"({count} more message(s) do not fit)",
                fix=f"wait {retry} s for the next window, or ask for a larger quota",
                headers={"Retry-After": str(retry)},
            )

    # -- storing ------------------------------------------------------------------------------

    async def submit_one(self, item: dict[str, Any]) -> SubmitOutcome:
        """Store one item, grouped with whatever else is being submitted right now."""
        return await self._commit(item)

    def store_items(self, items: list[dict[str, Any]]) -> list[SubmitOutcome]:
        """Store ``items`` in one go through the outbox; one outcome per item, in order.

        Synchronous (it runs on a worker thread).
        """
        return list(self.outbox.submit_stream(items, batch_size=max(len(items), 1)))

    def submit_batch(self, key: ApiKey, messages: Sequence[BatchMessageIn] | bytes) -> bytes:
        """:func:`accept_batch` on this thread."""
        if isinstance(messages, bytes):
            try:
                messages = BATCH_IN.validate_json(messages)["messages"]
            except ValidationError as exc:
                raise problems_error(exc.errors()) from None
        if len(messages) > self.settings.max_batch:
            raise ApiError(
                413,
                "too_large",
                f"{len(messages)} messages in one batch",
                field="messages",
                fix=f"send at most {self.settings.max_batch} per request",
            )
        refused: dict[int, ApiError] = {}
        items: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            try:
                item = prepare(message, key)
                if "in_reply_to" in item:
                    self.answer(item)
                items.append(item)
            except ApiError as exc:
                refused[index] = exc
        self.charge(key, len(items))
        now = self.clock.time()
        stored = self.store_items(items)
        return batch_body(refused, stored, items, self.earlier_statuses(stored), now)

    def answer(self, item: dict[str, Any]) -> None:
        """Make ``item`` a reply to the inbound message its ``in_reply_to`` names: it leaves
        from the number that message was sent to, through the provider it arrived on.

        Synchronous (it reads the store). Raises :class:`ApiError`: 404 for an unknown inbound
        message, 409 when ``to`` is not who sent it.
        """
        inbound_id = item.pop("in_reply_to")
        inbound = self.store.get_inbound(inbound_id) if good_id(inbound_id) else None
        if inbound is None:
            raise ApiError(
                404,
                "not_found",
                f"no inbound message {inbound_id!r}",
                field="in_reply_to",
                fix="use an id from GET /v1/inbound",
            )
        try:
            to = normalize(item["to"], strict=False)
        except SmsgateError:
            return  # the outbox refuses the number, naming it
        if to != inbound.sender:
            raise ApiError(
                409,
                "not_the_sender",
                f"inbound message {inbound_id} came from {inbound.sender}, not {item['to']}",
                field="in_reply_to",
                fix=f"send the reply to {inbound.sender}",
            )
        item.setdefault("sender", inbound.to)
        item["via"] = inbound.provider
        item["metadata"] = {**item.get("metadata", {}), "in_reply_to": inbound_id}

    def earlier_statuses(self, outcomes: Sequence[SubmitOutcome]) -> dict[str, Status]:
        """The current status of each earlier message an idempotency key matched, by id."""
        statuses: dict[str, Status] = {}
        for outcome in outcomes:
            if outcome.id is not None and not outcome.created and outcome.id not in statuses:
                record = self.outbox.get(outcome.id)
                statuses[outcome.id] = record.status if record is not None else Status.QUEUED
        return statuses

    def start(self) -> None:
        self._commit.start()

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        await self._commit.stop()


def _new_status(item: Mapping[str, Any], now: float) -> Status:
    send_at = item.get("send_at")
    return Status.SCHEDULED if send_at is not None and send_at.timestamp() > now else Status.QUEUED


_string: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)
_STATUS = {status: status.value for status in Status}


def batch_body(
    refused: Mapping[int, ApiError],
    stored: Sequence[SubmitOutcome],
    items: Sequence[Mapping[str, Any]],
    earlier: Mapping[str, Status],
    now: float,
) -> bytes:
    """The documented ``BatchOut`` as JSON, written directly: building and serializing 10,000
    models would cost more than storing the messages.

    ``refused``: the API's refusals by position in the batch; ``stored``: the outbox's outcomes
    of the other ``items``, in order; ``earlier``: the statuses of messages they matched.
    """
    results: list[str] = []
    accepted = duplicates = rejected = 0
    outcomes = iter(stored)
    scheduling = any("send_at" in item for item in items)
    queued = _STATUS[Status.QUEUED]
    for index in range(len(refused) + len(stored)):
        refusal = refused.get(index) if refused else None
        outcome = None
        if refusal is None:
            outcome = next(outcomes)
            if outcome.error is not None:
                refusal = from_smsgate(outcome.error)
        if refusal is not None:
            rejected += 1
            error = dumps(refusal.body())
            results.append(
                f'{{"index":{index},"id":null,"status":null,"created":false,"error":{error}}}'
            )
            continue
        assert outcome is not None and outcome.id is not None
        if outcome.created:
            accepted += 1
            created = "true"
            status = _STATUS[_new_status(items[outcome.index], now)] if scheduling else queued
        else:
            duplicates += 1
            created = "false"
            status = _STATUS[earlier[outcome.id]]
        results.append(
            f'{{"index":{index},"id":{_string(outcome.id)},"status":"{status}",'
            f'"created":{created},"error":null}}'
        )
    head = f'{{"accepted":{accepted},"duplicates":{duplicates},"rejected":{rejected},"results":['
    return (head + ",".join(results) + "]}").encode()
