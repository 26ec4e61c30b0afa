"""Group commit for the server's writes: what arrives while one group is written goes in the next.

Submissions and delivery receipts both come one per request, and each needs a durable commit
before its answer. Committed one by one, every request waits for its own disk sync and for the
store's write lock; grouped, one sync serves every request that arrived meanwhile. An idle
server adds no delay: a lone item is written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Runs ``write`` on a worker thread for up to ``group`` queued items at a time.

    ``write(items)`` returns one result per item, in order; a result that is an exception is
    raised to that item's caller alone, and an exception ``write`` raises goes to every caller of
    the group. Before :meth:`start` (and after :meth:`stop`) each item is written on its own.
    """

    def __init__(
        self, write: Callable[[list[T]], Sequence[R | Exception]], *, group: int, name: str
    ) -> None:
        self.write = write
        self.group = group
        self.name = name
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing = 0

    @property
    def pending(self) -> int:
        """Items waiting for their group, or in the group being written."""
        return self._writing + (0 if self._queue is None else self._queue.qsize())

    async def __call__(self, item: T) -> R:
        """Write ``item`` (durably, before this returns) with whatever else is being written."""
        if self._queue is None:
            (result,) = await anyio.to_thread.run_sync(self.write, [item])
            if isinstance(result, Exception):
                raise result
            return result
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=self.name)

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
            waiting = [await queue.get()]
            while len(waiting) < self.group and not queue.empty():
                waiting.append(queue.get_nowait())
            self._writing = len(waiting)
            results: Sequence[R | Exception]
            try:
                results = await anyio.to_thread.run_sync(self.write, [item for item, _ in waiting])
            except Exception as exc:
                results = [exc] * len(waiting)
            finally:
                self._writing = 0
                for _ in waiting:
                    queue.task_done()
            for (_, future), result in zip(waiting, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
