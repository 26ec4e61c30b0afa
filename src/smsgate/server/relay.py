"""Message events for user webhooks, relayed from the outbox's history.

Every status change is a row of ``smsgate_events`` whoever made it: the in-process worker, a
standalone ``smsgate worker``, a provider receipt, a cancel. :class:`EventRelay` follows that
table from a stored position and queues a ``message.<status>`` event for each change, in the same
transaction that moves the position, so each change is queued exactly once even when the server
restarts. A lease makes one server at a time the relay when several share a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.ids import new_id
from smsgate.outbox.tables.server import (
    EventRow,
    GapWatch,
    OutboundEvent,
    RelayOutcome,
    ServerStore,
)
from smsgate.server.webhooks_out import iso, make_event

logger = logging.getLogger("smsgate.server.relay")
CURSOR = "user_webhooks"


def message_event(row: EventRow) -> OutboundEvent | None:
    """The user-webhook event for one history row, or None for a row that changed nothing."""
    if row.from_status == row.to_status:
        return None
    data: dict[str, Any] = {
        "message_id": row.message_id,
        "status": row.to_status,
        "previous_status": row.from_status,
        "to": row.to,
        "sender": row.sender,
        "purpose": row.purpose,
        "route": row.route,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "attempt": row.attempt,
        "reason": row.reason,
        "source": row.source,
        "at": iso(row.at),
        "metadata": _metadata(row.payload),
    }
    return make_event(f"message.{row.to_status}", data, row.at, event_id=f"evt_msg_{row.id}")


def message_events(rows: list[EventRow]) -> list[OutboundEvent]:
    return [event for row in rows if (event := message_event(row)) is not None]


def _metadata(payload: str | None) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        metadata = json.loads(payload).get("metadata")
    except (ValueError, AttributeError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


class EventRelay:
    """Follows ``smsgate_events`` under a lease and queues user-webhook events."""

    def __init__(
        self,
        store: ServerStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 0.25,
        lease: float = 30.0,
        batch: int = 2000,
        settle: float = 10.0,
        #: called on the event loop after events were queued (to wake the dispatcher)
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.lease = lease
        self.batch = batch
        self.owner = new_id("relay")
        self.gaps = GapWatch(settle)
        self.on_queued = on_queued

    def step(self) -> RelayOutcome:
        """Relay what is new (synchronous: run it on a thread)."""
        now = self.clock.time()
        return self.store.relay(
            CURSOR, self.owner, now, now + self.lease, self.batch, message_events, self.gaps
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                wait = self.interval
                try:
                    outcome = await anyio.to_thread.run_sync(self.step)
                    if outcome.relayed and self.on_queued is not None:
                        self.on_queued()
                    if outcome.relayed >= self.batch:
                        wait = 0.0
                    elif not outcome.held:
                        wait = max(self.interval, self.lease / 3)
                except Exception as exc:
                    logger.warning("relaying message events failed: %s", exc)
                if wait:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            try:
                await anyio.to_thread.run_sync(self.store.release_relay, CURSOR, self.owner)
            except Exception as exc:  # the store is gone: the lease simply expires
                logger.info("could not release the relay lease: %s", exc)
