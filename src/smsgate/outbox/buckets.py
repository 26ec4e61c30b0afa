"""Rate-limit buckets kept in the outbox store, so every worker of one store shares them.

:class:`StoreBucketBackend` implements :class:`smsgate.ratelimit.BucketBackend`: each ``take`` is
one store transaction that reads the buckets, applies :func:`smsgate.ratelimit.take_all` (or
:func:`~smsgate.ratelimit.take_up_to`) and writes them back (rows locked on PostgreSQL, SQLite's write lock on SQLite), so the sum over all
workers stays within the configured rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.ratelimit import BucketSpec, BucketState, Limit, RateLimiter

if TYPE_CHECKING:
    from smsgate.outbox.outbox import Outbox
    from smsgate.outbox.store import Store


class StoreBucketBackend:
    """Token buckets in the ``smsgate_rate_buckets`` table of an outbox store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def take(self, specs: Sequence[BucketSpec], n: int, now: float) -> float:
        return await asyncio.to_thread(self._store.take_tokens, specs, n, now)

    async def take_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        return await asyncio.to_thread(self._store.take_tokens_up_to, specs, wanted, now)

    async def penalize(self, spec: BucketSpec, seconds: float, now: float) -> None:
        await asyncio.to_thread(self._store.penalize_bucket, spec, seconds, now)

    def take_now(self, specs: Sequence[BucketSpec], n: int, now: float) -> float:
        """The synchronous form of :meth:`take` (for scripts and tests)."""
        return self._store.take_tokens(specs, n, now)

    def state(self, key: str) -> BucketState | None:
        """The stored state of one bucket (not refilled)."""
        return self._store.bucket_state(key)


def shared_limiter(
    outbox: Outbox,
    provider_limits: Mapping[str, Limit] | None = None,
    sender_limits: Mapping[tuple[str, str], Limit] | None = None,
    *,
    clock: Clock | None = None,
) -> RateLimiter:
    """A :class:`~smsgate.ratelimit.RateLimiter` whose buckets live in ``outbox``'s store."""
    return RateLimiter(
        provider_limits,
        sender_limits,
        backend=StoreBucketBackend(outbox.store),
        clock=clock or outbox.clock or SYSTEM_CLOCK,
    )
