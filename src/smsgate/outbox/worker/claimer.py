"""The claimer: leases due rows to this worker in batches and queues them for the senders
(River's producer). It keeps a batch ready beyond what is in flight, so senders never wait on a
claim, and looks for work less and less often while nothing is due."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from smsgate.clock import Clock
from smsgate.outbox.store import Claimed
from smsgate.outbox.worker.outcomes import Job, WorkerStats

logger = logging.getLogger("smsgate.worker")

#: the first wait when nothing is due; it doubles up to ``poll_interval`` while nothing comes
FIRST_IDLE_PAUSE = 0.002
#: the longest wait between looks for due messages while messages are coming in
BUSY_POLL = 0.01


class Claims(Protocol):
    """The store call the claimer makes (:meth:`smsgate.outbox.store.StoreCalls.claim`)."""

    async def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]: ...


class Jobs(Protocol):
    """Where claimed jobs go for the senders (a :class:`~.handoff.Handoff` in the worker)."""

    def put_nowait(self, item: Job) -> None: ...


class Claimer:
    """Claims for one worker into ``held`` (its rows by id) and ``queue`` (for the senders).

    ``capacity``: sends in flight at once; at most that plus ``batch_size`` rows are held.
    ``lease``: seconds a claim lasts. Expired leases of other workers are looked for about once
    a second (or a quarter lease), not on every claim: they are rare.
    """

    def __init__(
        self,
        store: Claims,
        owner: str,
        clock: Clock,
        stats: WorkerStats,
        held: dict[str, Job],
        queue: Jobs,
        *,
        capacity: int,
        batch_size: int,
        lease: float,
        poll_interval: float,
        stopping: asyncio.Event,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self._held = held
        self._queue = queue
        self._capacity = capacity
        self._batch_size = batch_size
        self._lease = lease
        self._poll_interval = poll_interval
        self._stopping = stopping
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._next_takeover = 0.0

    def wake(self) -> None:
        """Something became due (an outcome to retry soon): look again now."""
        self._wake.set()

    def room(self) -> None:
        """Rows were let go: there may be room for another batch."""
        self._room.set()

    def due_at(self, at: float | None) -> None:
        """A row of ours is due again at ``at``: wake up if that is before the next look."""
        if at is not None and at <= self._clock.time() + self._poll_interval:
            self._wake.set()

    async def claim_once(self) -> list[Claimed] | None:
        """One claim of as many rows as there is room for, queued for the senders. None: no
        room (the caller waits for :meth:`room`)."""
        # a wake from now on (new work, an outcome due soon) ends the next pause at once: what
        # arrives while this claim runs may be too late for it
        self._wake.clear()
        room = self._capacity + self._batch_size - len(self._held)
        if room < max(1, self._batch_size // 2):
            return None
        now = self._clock.time()
        take_over = now >= self._next_takeover
        if take_over:
            self._next_takeover = now + min(1.0, self._lease / 4)
        claimed = await self._store.claim(
            self._owner, min(room, self._batch_size), now, now + self._lease, take_over=take_over
        )
        for item in claimed:
            if item.row.id in self._held:
                # Still ours in memory (our lease ran out while we worked on it, which only a
                # stalled loop or a fake clock makes happen): the lease is ours again, and the
                # work already under way stays the only one.
                continue
            job = Job(item.row, item.previous_owner)
            self._held[item.row.id] = job
            self._stats.claimed += 1
            if item.previous_owner is not None:
                self._stats.taken_over += 1
                logger.info(
                    "worker %s took over %s from %s (lease expired)",
                    self._owner,
                    item.row.id,
                    item.previous_owner,
                )
            self._queue.put_nowait(job)
        return claimed

    async def run(self, idle: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Claim until stopped (or, given ``idle``, until it answers True while nothing is
        due)."""
        pause = FIRST_IDLE_PAUSE
        loop = asyncio.get_running_loop()
        recent = 0.0
        while not self._stopping.is_set():
            wanted = min(self._capacity + self._batch_size - len(self._held), self._batch_size)
            try:
                claimed = await self.claim_once()
            except Exception:
                self._stats.store_errors += 1
                logger.exception("worker %s: claiming failed; retrying", self._owner)
                await self.pause(1.0)
                continue
            if claimed is None:
                # busy: claim again as soon as outcomes free enough room
                self._room.clear()
                await self.pause(self._poll_interval, self._room)
                continue
            if claimed:
                pause = FIRST_IDLE_PAUSE
                recent = loop.time() + 1.0
                if len(claimed) < wanted:
                    # caught up: let a little more arrive before the next claim
                    await self.pause(FIRST_IDLE_PAUSE)
                continue
            if idle is not None and await idle():
                return
            # Nothing due: look again soon, then less and less often, up to poll_interval (but
            # no more than 10 ms apart while messages kept coming in the last second).
            await self.pause(pause)
            ceiling = BUSY_POLL if loop.time() < recent else self._poll_interval
            pause = min(ceiling, pause * 2)

    async def pause(self, seconds: float, also: asyncio.Event | None = None) -> None:
        """Sleep on the clock, waking early when something becomes due soon, when the worker
        stops, or when ``also`` is set."""
        if seconds <= 0 or self._stopping.is_set():
            return
        waits = {
            asyncio.ensure_future(self._clock.sleep(seconds)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        if also is not None:
            waits.add(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
