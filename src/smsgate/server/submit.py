"""From an API request to outbox rows: key restrictions, opt-outs, quota, then one transaction.

Single-message requests that arrive together are stored together: :class:`Submitter` collects
what is waiting while the previous group is being written and stores the next group in one
transaction (group commit), so a busy server writes far fewer transactions than it answers
requests, and an idle one adds no delay. Every request still gets its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import InvalidRecipient, OptedOut
from smsgate.message import Purpose, Status
from smsgate.outbox import Outbox, SubmitOutcome
from smsgate.phone import fast_e164, normalize
from smsgate.server.auth import ApiKey
from smsgate.server.errors import ApiError, from_smsgate
from smsgate.server.models import MessageAccepted, MessageIn
from smsgate.server.optout import number_key
from smsgate.server.settings import ServerSettings
from smsgate.server.store import ServerStore

MAX_KEY_HEADER = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """One submitted item: stored (``created``), matched an earlier message, or refused."""

    id: str | None
    status: Status | None
    created: bool
    error: ApiError | None = None


def prepare(item: MessageIn, key: ApiKey, idempotency_header: str | None = None) -> dict[str, Any]:
    """The outbox item for ``item`` under ``key``'s restrictions (raises :class:`ApiError`)."""
    record = key.record
    purpose = item.purpose
    if purpose is None:
        allowed = record.purposes
        purpose = Purpose(allowed[0]) if allowed and len(allowed) == 1 else Purpose.TRANSACTIONAL
    if record.purposes is not None and purpose.value not in record.purposes:
        raise ApiError(
            403,
            "forbidden",
            f"this API key may not send {purpose.value} messages",
            field="purpose",
            fix=f"use purpose {' or '.join(record.purposes)}, or another key",
        )
    sender = item.sender
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
    key_value = item.idempotency_key
    if idempotency_header is not None:
        if key_value is not None and key_value != idempotency_header:
            raise ApiError(
                422,
                "invalid_request",
                "the Idempotency-Key header and idempotency_key in the body differ",
                field="idempotency_key",
                fix="send one of them, or the same value in both",
            )
        key_value = idempotency_header
    values: dict[str, Any] = {"to": item.to, "body": item.body, "purpose": purpose.value}
    if sender is not None:
        values["sender"] = sender
    if key_value is not None:
        values["idempotency_key"] = key_value
    if item.media:
        values["media"] = tuple(item.media)
    if item.send_at is not None:
        values["send_at"] = item.send_at
    if item.validity is not None:
        values["validity"] = item.validity
    if item.metadata:
        values["metadata"] = item.metadata
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
    """Submit one API message under ``key``: restrictions, quota, opt-outs, then the outbox.

    Raises :class:`ApiError` with the reason when the message is refused.
    """
    if idempotency_header is not None and not 0 < len(idempotency_header) <= MAX_KEY_HEADER:
        raise ApiError(
            422,
            "invalid_request",
            "the Idempotency-Key header must be 1-200 characters",
            field="Idempotency-Key",
            fix="send a shorter key",
        )
    item = prepare(message, key, idempotency_header)
    await submitter.charge(key, 1)
    outcome = await submitter.submit_one(item)
    if outcome.error is not None:
        raise outcome.error
    if not outcome.created:
        (outcome,) = await anyio.to_thread.run_sync(submitter.with_statuses, [outcome])
    assert outcome.id is not None and outcome.status is not None
    return Accepted(
        MessageAccepted(
            id=outcome.id, status=outcome.status, to=item["to"], created=outcome.created
        )
    )


class Submitter:
    """Stores prepared items: opt-out check, then the outbox, grouping concurrent requests."""

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
        self.group = group
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Outcome]]] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- quota --------------------------------------------------------------------------------

    async def charge(self, key: ApiKey, count: int) -> None:
        """Count ``count`` messages against the key's quota, or raise 429 when they do not fit."""
        quota = key.quota
        if quota is None:
            return
        now = self.clock.time()
        window = math.floor(now / quota.period) * quota.period
        limit = int(quota.count)
        fits = await anyio.to_thread.run_sync(
            self.store.consume_quota, key.id, window, count, limit
        )
        if not fits:
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

    async def submit_one(self, item: dict[str, Any]) -> Outcome:
        """Store one item, grouped with whatever else is being submitted right now."""
        if self._queue is None:
            (outcome,) = await anyio.to_thread.run_sync(self.store_items, [item])
            return outcome
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def submit_many(self, items: Sequence[dict[str, Any]]) -> list[Outcome]:
        return await anyio.to_thread.run_sync(self.store_items, list(items))

    def store_items(self, items: list[dict[str, Any]]) -> list[Outcome]:
        """Refuse opted-out recipients, store the rest in one go; one outcome per item, in order.

        Synchronous (it runs on a worker thread).
        """
        now = self.clock.time()
        outcomes: list[Outcome | None] = [None] * len(items)
        checked: list[int] = []
        for index, item in enumerate(items):
            try:
                item["to"] = _e164(item["to"])
            except InvalidRecipient as exc:
                outcomes[index] = Outcome(None, None, False, from_smsgate(exc))
                continue
            checked.append(index)
        self._refuse_opted_out(items, checked, outcomes)
        passing = [i for i in checked if outcomes[i] is None]
        if passing:
            stored = self.outbox.submit_stream(
                [items[i] for i in passing], batch_size=max(len(passing), 1)
            )
            for index, result in zip(passing, stored, strict=True):
                outcomes[index] = _outcome(result, items[index], now)
        return [o if o is not None else Outcome(None, None, False) for o in outcomes]

    def with_statuses(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Fill in the current status of earlier messages that idempotency keys matched."""
        filled = []
        for outcome in outcomes:
            if outcome.id is not None and outcome.status is None:
                record = self.outbox.get(outcome.id)
                status = record.status if record is not None else Status.QUEUED
                outcome = Outcome(outcome.id, status, False)
            filled.append(outcome)
        return filled

    def _refuse_opted_out(
        self, items: list[dict[str, Any]], indexes: list[int], outcomes: list[Outcome | None]
    ) -> None:
        by_sender: dict[str | None, list[int]] = {}
        for index in indexes:
            item = items[index]
            if item.get("purpose") == Purpose.OTP.value and not self.settings.suppress_otp:
                continue
            sender = item.get("sender")
            by_sender.setdefault(None if sender is None else number_key(sender), []).append(index)
        for sender, group in by_sender.items():
            blocked = self.store.suppressed([items[i]["to"] for i in group], sender)
            for index in group:
                to = items[index]["to"]
                if to in blocked:
                    outcomes[index] = Outcome(
                        None, None, False, from_smsgate(opted_out(to, sender))
                    )

    # -- the grouping loop --------------------------------------------------------------------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="smsgate-submitter")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._queue = None

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            waiting = [first]
            while len(waiting) < self.group and not queue.empty():
                waiting.append(queue.get_nowait())
            try:
                outcomes = await anyio.to_thread.run_sync(
                    self.store_items, [item for item, _ in waiting]
                )
            except Exception as exc:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), outcome in zip(waiting, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
            finally:
                for _ in waiting:
                    queue.task_done()


def opted_out(to: str, sender: str | None) -> OptedOut:
    of = f"from {sender}" if sender else "from our numbers"
    return OptedOut(
        f"{to} opted out of messages {of} (replied STOP); "
        "they can reply START to opt in again, or remove the suppression",
        field="to",
    )


def _e164(to: Any) -> str:
    if not isinstance(to, str):
        raise InvalidRecipient("to must be a phone number", field="to")
    return fast_e164(to) or normalize(to, strict=False, field="to")


def _outcome(result: SubmitOutcome, item: Mapping[str, Any], now: float) -> Outcome:
    if result.error is not None:
        return Outcome(None, None, False, from_smsgate(result.error))
    if not result.created:
        return Outcome(result.id, None, False)  # an earlier message: its status is looked up
    send_at = item.get("send_at")
    scheduled = send_at is not None and send_at.timestamp() > now
    return Outcome(result.id, Status.SCHEDULED if scheduled else Status.QUEUED, result.created)
