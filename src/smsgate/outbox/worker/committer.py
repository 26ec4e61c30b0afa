"""The committer: every start, outcome and release the worker queues goes into the next
transaction, one group commit for many messages (River's completer)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

from smsgate.clock import Clock
from smsgate.outbox.store import StartSend, Transition
from smsgate.outbox.worker.outcomes import WorkerStats

logger = logging.getLogger("smsgate.worker")

#: rows per transaction at most
BATCH = 1000


class Writes(Protocol):
    """The store call the committer makes (:meth:`smsgate.outbox.store.StoreCalls.write`)."""

    async def write(
        self,
        owner: str,
        starts: list[StartSend],
        transitions: list[Transition],
        releases: list[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]: ...


class Committer:
    """Group commit for one worker.

    ``start`` answers (through its future) whether the row moved to ``sending``: only then may
    the request be made. ``finish`` and ``release`` are written with the next batch, after
    which ``on_done`` is told which rows this worker no longer holds. A start written after its
    sender gave up waiting (the worker stopping) was never sent: ``on_orphan`` gets it back to
    undo. ``parallel``: transactions in flight at once (one for SQLite's single writer; a few
    for PostgreSQL, which hides the round trips).
    """

    def __init__(
        self,
        store: Writes,
        owner: str,
        clock: Clock,
        stats: WorkerStats,
        *,
        lease: float,
        delay: float = 0.002,
        parallel: int = 1,
        on_done: Callable[[list[str]], None] = lambda ids: None,
        on_orphan: Callable[[StartSend, float], None] = lambda start, now: None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self._lease = lease
        self._delay = delay
        self._parallel = max(1, parallel)
        self._on_done = on_done
        self._on_orphan = on_orphan
        # set when the worker is told to stop at once: give up on a failing store sooner
        self._stopping = stopping or asyncio.Event()
        self._starts: list[tuple[StartSend, asyncio.Future[bool]]] = []
        self._finishes: list[Transition] = []
        self._releases: list[str] = []
        self._signal = asyncio.Event()
        self._closing = False

    @property
    def pending(self) -> bool:
        """Something is queued and not written yet."""
        return bool(self._starts or self._finishes or self._releases)

    def start(self, start: StartSend) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._starts.append((start, future))
        self._signal.set()
        return future

    def finish(self, transition: Transition) -> None:
        self._finishes.append(transition)
        self._signal.set()

    def release(self, message_id: str) -> None:
        self._releases.append(message_id)
        self._signal.set()

    def close(self) -> None:
        """Write what is queued (and anything queued meanwhile), then let :meth:`run` end."""
        self._closing = True
        self._signal.set()

    async def run(self) -> None:
        running: set[asyncio.Task[None]] = set()
        while True:
            await self._signal.wait()
            self._signal.clear()
            # Gather for a moment: one transaction per couple of milliseconds costs far less
            # per message than one per response, and a send waits at most that long to start.
            if self._delay > 0 and not self._closing:
                await asyncio.sleep(self._delay)
            while self.pending:
                if len(running) >= self._parallel:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                task = asyncio.create_task(self.write_batch())
                running.add(task)
                task.add_done_callback(running.discard)
                await asyncio.sleep(0)  # let it take its batch before looking again
            if self._closing:
                if running:
                    await asyncio.wait(running)
                if not self.pending:
                    return

    async def write_batch(self) -> None:
        """Write one batch of what is queued, retrying a failing store for a while."""
        starts, self._starts = self._starts[:BATCH], self._starts[BATCH:]
        batch, self._finishes = self._finishes[:BATCH], self._finishes[BATCH:]
        idle, self._releases = self._releases, []
        now = self._clock.time()
        started: set[str] = set()
        for attempt in itertools.count():
            try:
                started, _ = await self._store.write(
                    self._owner,
                    [start for start, _ in starts],
                    batch,
                    idle,
                    now,
                    now + self._lease,
                )
                break
            except Exception:
                self._stats.store_errors += 1
                logger.exception("worker %s: writing to the store failed", self._owner)
                if attempt >= 20 or (self._stopping.is_set() and attempt >= 3):
                    # Starts not written were never sent; outcomes not written are resolved
                    # by another worker once our leases expire.
                    logger.error(
                        "worker %s: giving up on %d outcomes; their leases will expire and "
                        "another worker will resolve them",
                        self._owner,
                        len(batch),
                    )
                    break
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        for start, future in starts:
            if not future.done():
                future.set_result(start.id in started)
            elif start.id in started:
                # its sender was stopped while waiting for this write: nothing was sent
                self._on_orphan(start, now)
        done = [t.id for t in batch] + idle
        if done:
            self._on_done(done)
