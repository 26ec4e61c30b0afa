"""Deadlines of provider calls: one watchdog task for all calls in flight rather than a timer
per call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from smsgate.errors import AmbiguousSend
from smsgate.providers.base import Provider

T = TypeVar("T")


class Deadlines:
    """Provider calls with a deadline each, enforced by one watchdog for all of them rather
    than a timer per call (the transport's own timeouts normally fire first; this catches a
    provider that never returns)."""

    def __init__(self, send_timeout: float | None = None) -> None:
        self.send_timeout = send_timeout
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: dict[asyncio.Task[Any], bool] = {}

    def timeout_for(self, provider: Provider) -> float:
        if self.send_timeout is not None:
            return self.send_timeout
        limits = getattr(provider, "timeout", None)
        connect = float(getattr(limits, "connect", 5.0))
        read = float(getattr(limits, "read", 15.0))
        return connect + read + 5.0

    async def call(self, provider: Provider, call: Awaitable[T]) -> T:
        """Await a provider call; past its deadline it ends in :class:`AmbiguousSend`."""
        task = asyncio.current_task()
        assert task is not None
        # network time is real time, whatever clock the worker's schedule runs on
        self._deadlines[task] = task.get_loop().time() + self.timeout_for(provider)
        try:
            return await call
        except asyncio.CancelledError:
            if self._expired.pop(task, False):
                task.uncancel()
                raise AmbiguousSend(
                    f"{provider.name} did not answer within {self.timeout_for(provider):g} s",
                    provider=provider.name,
                ) from None
            raise
        finally:
            self._deadlines.pop(task, None)

    def expire(self, now: float) -> int:
        """Cancel the calls whose deadline is before ``now`` (loop time); returns how many."""
        cancelled = 0
        for task, deadline in list(self._deadlines.items()):
            if now > deadline and not task.done():
                self._expired[task] = True
                task.cancel()
                cancelled += 1
        return cancelled

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5)
            self.expire(loop.time())
