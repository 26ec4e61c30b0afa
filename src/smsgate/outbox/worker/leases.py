"""The lease keeper: renews the leases of the rows this worker holds, so no other worker takes
them over while it works, and gives back at shutdown what it never started (River's rescuer
works the other way round: the claimer's take-over finds the leases a dead worker let run out)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from smsgate.clock import Clock
from smsgate.outbox.worker.outcomes import Job, WorkerStats

logger = logging.getLogger("smsgate.worker")


class Leases(Protocol):
    """The store calls the lease keeper makes (see :class:`smsgate.outbox.store.StoreCalls`)."""

    async def renew(self, owner: str, ids: Sequence[str], lease_until: float) -> set[str]: ...

    async def release(self, owner: str, ids: Sequence[str], now: float) -> int: ...


class LeaseKeeper:
    """Keeps the leases of ``held`` (one worker's rows by id) for ``lease`` seconds ahead."""

    def __init__(
        self,
        store: Leases,
        owner: str,
        clock: Clock,
        stats: WorkerStats,
        held: dict[str, Job],
        *,
        lease: float,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self._held = held
        self.lease = lease

    async def renew_once(self) -> list[str]:
        """Extend every held lease; returns the ids whose lease was lost (taken over)."""
        ids = list(self._held)
        if not ids:
            return []
        kept = await self._store.renew(self._owner, ids, self._clock.time() + self.lease)
        lost = [i for i in ids if i not in kept and i in self._held]
        if lost:
            logger.warning(
                "worker %s lost the lease of %d messages (another worker took them over)",
                self._owner,
                len(lost),
            )
        return lost

    async def run(self) -> None:
        while True:
            # real time: a lease must be renewed before it runs out for the other workers,
            # whatever clock the worker's schedule runs on
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew_once()
            except Exception:
                self._stats.store_errors += 1
                logger.exception("worker %s: renewing leases failed", self._owner)

    async def release_unstarted(self, ids: Sequence[str]) -> int:
        """Give back ``ids`` and every held row not started: due again at once, for anyone."""
        given = list(ids)
        given += [i for i, job in self._held.items() if not job.started and i not in given]
        if not given:
            return 0
        released = 0
        try:
            released = await self._store.release(self._owner, given, self._clock.time())
            self._stats.released += released
        except Exception:
            logger.exception(
                "worker %s: giving back %d messages failed; their leases will expire",
                self._owner,
                len(given),
            )
        for message_id in given:
            self._held.pop(message_id, None)
        return released
