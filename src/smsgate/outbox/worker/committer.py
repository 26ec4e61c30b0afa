"""The committer: every start, outcome and release the worker queues goes into the next
transaction, one group commit for many messages (River's completer), through the project's one
group-commit writer (:class:`~smsgate.outbox.groupcommit.GroupCommit`)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import NamedTuple, Protocol

from smsgate.clock import Clock
from smsgate.outbox.groupcommit import GroupCommit
from smsgate.outbox.store import StartSend, Transition
from smsgate.outbox.worker.outcomes import WorkerStats

logger = logging.getLogger("smsgate.worker")

#: items (starts, outcomes, releases) per transaction at most
BATCH = 2000


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


class Release(NamedTuple):
    """A row this worker lets go of unsent."""

    id: str


Item = StartSend | Transition | Release


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
        self._on_done = on_done
        self._on_orphan = on_orphan
        # set when the worker is told to stop at once: give up on a failing store sooner
        self._stopping = stopping or asyncio.Event()
        # Gathering for a couple of milliseconds costs far less per message than one
        # transaction per response, and a send waits at most that long to start.
        self._commit: GroupCommit[Item, bool] = GroupCommit(
            self._write,
            group=BATCH,
            name="smsgate-writer",
            delay=delay,
            parallel=parallel,
            on_abandoned=self._abandoned,
        )

    @property
    def pending(self) -> bool:
        """Something is queued or being written."""
        return self._commit.pending > 0

    def start(self, start: StartSend) -> asyncio.Future[bool]:
        return self._commit.submit(start)

    def finish(self, transition: Transition) -> None:
        self._commit.put(transition)

    def release(self, message_id: str) -> None:
        self._commit.put(Release(message_id))

    def close(self) -> None:
        """Write what is queued (and anything queued meanwhile), then let :meth:`run` end."""
        self._commit.close()

    async def run(self) -> None:
        await self._commit.run()

    async def _write(self, items: list[Item]) -> list[bool | Exception]:
        """Write one group, retrying a failing store for a while; for each item, whether it
        was written (for a start: whether the row moved to ``sending``)."""
        starts: list[StartSend] = []
        batch: list[Transition] = []
        idle: list[str] = []
        for item in items:
            if type(item) is StartSend:
                starts.append(item)
            elif type(item) is Transition:
                batch.append(item)
            else:
                idle.append(item.id)
        now = self._clock.time()
        started: set[str] = set()
        written = False
        for attempt in itertools.count():
            try:
                started, _ = await self._store.write(
                    self._owner, starts, batch, idle, now, now + self._lease
                )
                written = True
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
        done = [t.id for t in batch] + idle
        if done:
            self._on_done(done)
        return [item.id in started if isinstance(item, StartSend) else written for item in items]

    def _abandoned(self, item: Item, written: bool) -> None:
        if isinstance(item, StartSend) and written:
            # its sender was stopped while waiting for this write: nothing was sent
            self._on_orphan(item, self._clock.time())
