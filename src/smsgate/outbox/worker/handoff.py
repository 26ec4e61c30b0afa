"""The hand-off from the claimer to the senders: claimed jobs in order, and the idle senders
waiting for one.

:class:`asyncio.Queue` does the same with bookkeeping the worker has no use for (a size bound,
``task_done`` accounting, an event cleared on every put): about ten Python-level calls per
message, where this makes two.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """An unbounded FIFO that tasks wait on (the part of :class:`asyncio.Queue` the worker
    uses, with the same behaviour: items in order, one waiter woken per item, and a waiter
    cancelled as it was woken passes the wake-up on)."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        if self._waiters:
            self._wake_one()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> T:
        items = self._items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()  # in case it was not woken
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif items and not waiter.cancelled():
                    # woken for an item, then cancelled before taking it: another waiter may
                    self._wake_one()
                raise
        return items.popleft()

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
