"""Rate limits shared through the store, on a fake clock: the sum over workers keeps the rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smsgate.clock import FakeClock
from smsgate.outbox import Outbox
from smsgate.outbox.buckets import StoreBucketBackend, shared_limiter
from smsgate.ratelimit import Limit


def test_two_limiters_on_one_store_share_the_rate(
    open_outbox: Callable[..., Outbox], clock: FakeClock
) -> None:
    limits = {"twilio": Limit.parse("5/s", burst=1)}
    first = shared_limiter(open_outbox(), limits, clock=clock)
    second = shared_limiter(open_outbox(), limits, clock=clock)
    started = clock.time()

    async def take(n: int) -> None:
        for i in range(n):
            await (first if i % 2 else second).acquire("twilio")

    asyncio.run(take(21))
    # 21 tokens at 5/s with a burst of 1: the first is free, the other 20 take 4 s
    assert clock.time() - started == pytest.approx(4.0, abs=0.01)


def test_a_sender_bucket_and_a_429_penalty(
    open_outbox: Callable[..., Outbox], clock: FakeClock
) -> None:
    outbox = open_outbox()
    limiter = shared_limiter(
        outbox,
        {"twilio": Limit.parse("100/s")},
        {("twilio", "+15017122661"): Limit.parse("1/s", burst=1)},
        clock=clock,
    )

    async def scenario() -> tuple[float, float, float]:
        first = await limiter.acquire("twilio", "+15017122661")
        second = await limiter.acquire("twilio", "+15017122661")
        await limiter.penalize("twilio", 3.0)
        third = await limiter.acquire("twilio", "+15017122662")
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first == 0.0
    assert second == pytest.approx(1.0)
    assert third == pytest.approx(3.0 + 1 / 100)  # the penalty, then one token at 100/s
    backend = StoreBucketBackend(outbox.store)
    state = backend.state("provider:twilio")
    assert state is not None and state.updated_at == pytest.approx(clock.time())
