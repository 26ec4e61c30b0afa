"""The pruner: applies the store's retention between sends, one small batch at a time.

Each batch is one store transaction of at most ``batch_size`` messages, queued with the
worker's other store calls, and the pruner yields to the event loop after each one: a write the
committer queues meanwhile goes next, so a send's outcome waits for one small batch at most.
When a pass finds nothing more to delete, the next one is due ``interval`` seconds later on the
worker's clock (looked at every ``tick`` seconds of real time, so a fake clock moved forward
by a test starts a pass without the pruner moving it itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from smsgate.clock import Clock
from smsgate.outbox.retention import PruneResult, Retention
from smsgate.outbox.store import State
from smsgate.outbox.worker.outcomes import WorkerStats

logger = logging.getLogger("smsgate.worker")


class Prunes(Protocol):
    """The store call the pruner makes (see :class:`smsgate.outbox.store.StoreCalls`)."""

    async def prune(
        self, cutoffs: Mapping[State, float], events_before: float | None, limit: int
    ) -> tuple[int, int]: ...


class Pruner:
    """Deletes what ``retention`` says is past keeping, batch by batch, forever."""

    def __init__(
        self,
        store: Prunes,
        owner: str,
        clock: Clock,
        stats: WorkerStats,
        retention: Retention,
        *,
        tick: float = 1.0,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self.retention = retention
        self.tick = tick
        #: when the next pass is due, on the worker's clock (the first: at once)
        self.due = clock.time()

    async def prune_once(self) -> PruneResult:
        """One batch: at most ``batch_size`` messages (with their events) in one transaction."""
        now = self._clock.time()
        done = PruneResult(
            *await self._store.prune(
                self.retention.cutoffs(now),
                self.retention.events_cutoff(now),
                self.retention.batch_size,
            )
        )
        self._stats.pruned_messages += done.messages
        self._stats.pruned_events += done.events
        return done

    async def prune_pass(self) -> PruneResult:
        """Batches until one deletes nothing, yielding to the sends after each."""
        total = PruneResult()
        while True:
            done = await self.prune_once()
            total += done
            if not any(done):
                break
            await asyncio.sleep(0)
        if any(total):
            logger.info(
                "worker %s pruned %d messages and %d events",
                self._owner,
                total.messages,
                total.events,
            )
        return total

    async def run(self) -> None:
        while True:
            if self._clock.time() >= self.due:
                try:
                    await self.prune_pass()
                except Exception:
                    self._stats.store_errors += 1
                    logger.exception("worker %s: pruning failed; trying again later", self._owner)
                self.due = self._clock.time() + self.retention.interval
            await asyncio.sleep(self.tick)
