"""Group commit: what arrives while one group is written goes in the next.

The one batched writer of the project (see the architecture page, *Group commit*). The worker's
starts, outcomes and releases, the server's submissions and delivery receipts, and Verify's
steps each need a durable commit before their caller goes on. Committed one by one, every caller
waits for its own disk sync and for the store's write lock; grouped, one transaction serves every
item that arrived meanwhile. An idle writer adds no delay unless asked to gather (``delay``): a
lone item is written at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


def on_thread(write: Callable[[list[T]], Sequence[R | Exception]]) -> Write[T, R]:
    """A blocking ``write`` run on the ASGI server's worker threads (anyio's, bounded), so the
    event loop goes on meanwhile."""
    import anyio.to_thread  # the server's extra: the core install has no anyio

    run_sync = anyio.to_thread.run_sync

    async def run(items: list[T]) -> Sequence[R | Exception]:
        return await run_sync(write, items)

    return run


class GroupCommit(Generic[T, R]):
    """Writes up to ``group`` queued items at a time with ``write``.

    ``write(items)`` returns one result per item, in order; a result that is an exception is
    raised to that item's caller alone, and an exception ``write`` raises goes to every caller of
    the group. ``delay``: seconds to gather more items after the first arrives (0: write at
    once). ``parallel``: groups written at once (one for SQLite's single writer; a few for
    PostgreSQL, which hides the round trips). ``on_abandoned(item, result)`` gets the result of
    an item whose caller stopped waiting (was cancelled) before it was written: the write took
    effect, and the caller's owner may have to undo it. Before :meth:`start` (and after
    :meth:`stop`) each item is written on its own.
    """

    def __init__(
        self,
        write: Write[T, R],
        *,
        group: int,
        name: str,
        delay: float = 0.0,
        parallel: int = 1,
        on_abandoned: Callable[[T, R], None] | None = None,
    ) -> None:
        self.write = write
        self.group = max(1, group)
        self.name = name
        self.delay = delay
        self.parallel = max(1, parallel)
        self._on_abandoned = on_abandoned
        self._queue: deque[tuple[T, asyncio.Future[R] | None]] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._writing = 0
        self._running = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Items waiting for their group, or in a group being written."""
        return self._writing + len(self._queue)

    async def __call__(self, item: T) -> R:
        """Write ``item`` (durably, before this returns) with whatever else is being written."""
        if not self._running:
            (result,) = await self.write([item])
            if isinstance(result, Exception):
                raise result
            return result
        return await self.submit(item)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next group, written once :meth:`run` runs; the future is its
        result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._arrived.set()
        return future

    def put(self, item: T) -> None:
        """Queue ``item`` for the next group, its result unwanted (the write itself is what
        counts, as for the worker's outcomes)."""
        self._queue.append((item, None))
        self._arrived.set()

    def start(self) -> None:
        """Run :meth:`run` in a task of its own (inside the event loop) until :meth:`stop`."""
        self._running = True
        self._closing = False
        self._task = asyncio.create_task(self.run(), name=self.name)

    def close(self) -> None:
        """Write what is queued (and what is queued meanwhile) without gathering, then end."""
        self._closing = True
        self._arrived.set()

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        self.close()
        try:
            await self._task
        finally:
            self._task = None

    async def run(self) -> None:
        """Write groups until :meth:`close` is called and nothing is left."""
        self._running = True
        try:
            await self._loop()
        finally:
            self._running = False

    async def _loop(self) -> None:
        running: set[asyncio.Task[None]] = set()
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if self._queue and self.delay > 0 and not self._closing:
                await asyncio.sleep(self.delay)
            while self._queue:
                if len(running) >= self.parallel:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                count = min(self.group, len(self._queue))
                taken = [self._queue.popleft() for _ in range(count)]
                self._writing += count
                task = asyncio.create_task(self._write(taken))
                running.add(task)
                task.add_done_callback(running.discard)
            if self._closing:
                if running:
                    await asyncio.wait(running)
                if not self._queue:
                    return

    async def _write(self, taken: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        results: Sequence[R | Exception]
        try:
            results = await self.write([item for item, _ in taken])
        except Exception as exc:
            results = [exc] * len(taken)
        finally:
            self._writing -= len(taken)
        for (item, future), result in zip(taken, results, strict=True):
            if future is None:
                continue
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            elif self._on_abandoned is not None and not isinstance(result, Exception):
                self._on_abandoned(item, result)
