"""Token buckets, the shared backend and the per-provider/per-sender limiter, on simulated time."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections.abc import Awaitable, Callable, Sequence

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError
from smsgate.ratelimit import (
    MAX_CLOCK_SKEW,
    BucketSpec,
    BucketState,
    Limit,
    MemoryBucketBackend,
    RateLimiter,
    TokenBucket,
    default_burst,
    parse_rate,
    penalize_state,
    refill,
    take_all,
)


class SimulatedClock(FakeClock):
    """A fake clock for many tasks: sleepers wake in deadline order, and time jumps to the next
    deadline only once every task is asleep, so concurrent consumers see a consistent timeline."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self.monotonic() + max(0.0, seconds)
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    async def run(self, tasks: list[Callable[[], Awaitable[None]]]) -> None:
        running = [asyncio.ensure_future(task()) for task in tasks]
        while True:
            # Let every task run until it sleeps or ends (the in-memory backend never suspends).
            for _ in range(5):
                await asyncio.sleep(0)
            live = sum(not task.done() for task in running)
            if live == 0:
                break
            assert len(self._sleepers) == live, (
                "a task is blocked on something other than the clock"
            )
            deadline, _, future = heapq.heappop(self._sleepers)
            self.advance(max(0.0, deadline - self.monotonic()))
            future.set_result(None)
        for task in running:
            task.result()


# ---- parsing


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("1/s", 1.0),
        ("100/s", 100.0),
        ("30/min", 0.5),
        ("3600/h", 1.0),
        ("0.5/s", 0.5),
        (" 2 / sec ", 2.0),
        ("10/seconds", 10.0),
        ("120/minute", 2.0),
        ("86400/day", 1.0),
        ("7/H", 7 / 3600),
        (3, 3.0),
    ],
)
def test_parse_rate_accepts_count_per_unit(text: str | float, per_second: float) -> None:
    assert parse_rate(text).per_second == pytest.approx(per_second)


def test_parse_rate_keeps_the_written_form() -> None:
    assert str(parse_rate("30/min")) == "30/min"
    assert str(parse_rate("0.5/s")) == "0.5/s"


@pytest.mark.parametrize(
    "text", ["fast", "1/week", "1/", "/s", "1 per s", "-1/s", "1/s/s", "", "nan/s"]
)
def test_parse_rate_refuses_other_text_naming_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rate(text, "providers.twilio.rate")
    assert str(caught.value).startswith("providers.twilio.rate: ")
    assert '"1/s"' in str(caught.value)


@pytest.mark.parametrize("text", ["0/s", "0.0/min", 0, -2.5, float("inf")])
def test_parse_rate_refuses_a_rate_that_allows_nothing(text: str | float) -> None:
    with pytest.raises(ConfigError, match=r"^senders\.x: "):
        parse_rate(text, "senders.x")


def test_parse_rate_refuses_non_rate_types() -> None:
    with pytest.raises(ConfigError, match="got list"):
        parse_rate(["1/s"], "rate")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="got bool"):
        parse_rate(True, "rate")


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.5, 1), (1, 1), (10, 1), (15, 2), (100, 10), (1000, 100)]
)
def test_default_burst_is_a_tenth_of_a_second_of_tokens(rate: float, burst: int) -> None:
    assert default_burst(rate) == burst


# ---- the pure bucket arithmetic


def test_a_new_bucket_starts_full_and_refills_up_to_burst() -> None:
    spec = BucketSpec("k", rate=2.0, burst=4)
    assert refill(None, spec, 100.0) == BucketState(4.0, 100.0)
    assert refill(BucketState(0.0, 100.0), spec, 101.0) == BucketState(2.0, 101.0)
    assert refill(BucketState(0.0, 100.0), spec, 1000.0).tokens == 4.0


def test_take_all_is_all_or_nothing() -> None:
    provider = BucketSpec("provider", rate=10.0, burst=10)
    sender = BucketSpec("sender", rate=1.0, burst=1)
    states, wait = take_all([None, BucketState(0.0, 50.0)], [provider, sender], 1, 50.0)
    assert wait == pytest.approx(1.0)
    assert states[0].tokens == 10.0, "provider tokens must not be spent while the sender waits"
    states, wait = take_all(states, [provider, sender], 1, 51.0)
    assert wait == 0.0
    assert [state.tokens for state in states] == [9.0, 0.0]


def test_take_all_refuses_more_than_the_burst() -> None:
    with pytest.raises(ValueError, match="never be granted"):
        take_all([None], [BucketSpec("k", 1.0, 2)], 3, 0.0)
    with pytest.raises(ValueError):
        take_all([None], [BucketSpec("k", 1.0, 2)], 0, 0.0)


def test_bucket_spec_validates() -> None:
    with pytest.raises(ValueError):
        BucketSpec("k", 0.0, 1)
    with pytest.raises(ValueError):
        BucketSpec("k", 1.0, 0)


def test_a_slightly_slow_host_gets_no_extra_tokens_and_a_clock_step_back_does_not_freeze() -> None:
    spec = BucketSpec("k", rate=1.0, burst=5)
    ahead = BucketState(0.0, 100.0)
    # A host 0.5 s behind sees no refill, and does not move updated_at back.
    assert refill(ahead, spec, 99.5) == BucketState(0.0, 100.0)
    assert refill(ahead, spec, 101.0).tokens == pytest.approx(1.0)
    # A clock that went back by more than the tolerance re-bases the bucket.
    stepped = refill(ahead, spec, 100.0 - MAX_CLOCK_SKEW - 60.0)
    assert stepped.updated_at == 100.0 - MAX_CLOCK_SKEW - 60.0
    later = refill(stepped, spec, stepped.updated_at + 2.0)
    assert later.tokens == pytest.approx(2.0)


def test_penalize_state_is_a_debt_that_ends_when_the_penalty_does() -> None:
    spec = BucketSpec("k", rate=2.0, burst=4)
    state = penalize_state(None, spec, 3.0, 10.0)
    assert state.tokens == pytest.approx(-6.0)
    assert refill(state, spec, 13.0).tokens == pytest.approx(0.0)
    # A shorter second penalty does not shorten the first.
    assert penalize_state(state, spec, 1.0, 10.0).tokens == pytest.approx(-6.0)


# ---- TokenBucket


def test_token_bucket_grants_the_burst_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket("2/s", burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.try_acquire() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_token_bucket_saves_up_no_more_than_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket("1/s", burst=2, clock=clock)
    clock.advance(3600)
    assert bucket.tokens == 2.0
    assert bucket.try_acquire(2) == 0.0
    assert bucket.try_acquire() == pytest.approx(1.0)


def test_token_bucket_takes_several_tokens_at_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket("10/s", burst=5, clock=clock)
    assert bucket.try_acquire(5) == 0.0
    assert bucket.try_acquire(3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        bucket.try_acquire(6)


def test_token_bucket_default_burst_follows_the_rate() -> None:
    assert TokenBucket("100/s", clock=FakeClock()).burst == 10
    assert TokenBucket("1/s", clock=FakeClock()).burst == 1


def test_token_bucket_acquire_sleeps_on_the_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket("4/s", burst=1, clock=clock)

    async def take_five() -> list[float]:
        return [await bucket.acquire() for _ in range(5)]

    waits = asyncio.run(take_five())
    assert waits == pytest.approx([0.0, 0.25, 0.25, 0.25, 0.25])
    assert clock.monotonic() == pytest.approx(1.0)


def test_penalize_grants_nothing_until_retry_after_then_resumes_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket("1/s", burst=3, clock=clock)
    bucket.penalize(10.0)
    assert bucket.try_acquire() == pytest.approx(11.0)
    clock.advance(9.9)
    assert bucket.try_acquire() > 0
    clock.advance(0.1)  # the penalty is over; the bucket refills from empty
    assert bucket.try_acquire() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(1.0)


# ---- RateLimiter


def make_limiter(clock: FakeClock, backend: MemoryBucketBackend | None = None) -> RateLimiter:
    return RateLimiter(
        {"twilio": Limit.parse("100/s", 10), "smsroute": Limit.parse("5/s", 1)},
        {("twilio", "+15017122661"): Limit.parse("1/s", 1)},
        backend=backend,
        clock=clock,
    )


def test_limiter_takes_provider_and_sender_buckets_together() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)

    async def scenario() -> None:
        assert await limiter.try_acquire("twilio", "+15017122661") == 0.0
        # The long code is 1/s even though the provider allows 100/s ...
        assert await limiter.try_acquire("twilio", "+15017122661") == pytest.approx(1.0)
        # ... while another sender on the same provider goes on.
        for _ in range(9):
            assert await limiter.try_acquire("twilio", "+15550000000") == 0.0
        # The provider bucket is now empty for every sender (1 + 9 of burst 10 taken).
        assert await limiter.try_acquire("twilio", "+15550000000") == pytest.approx(0.01)

    asyncio.run(scenario())


def test_limiter_spends_no_provider_token_while_the_sender_waits() -> None:
    clock = FakeClock()
    backend = MemoryBucketBackend()
    limiter = make_limiter(clock, backend)

    async def scenario() -> None:
        await limiter.acquire("twilio", "+15017122661")
        for _ in range(5):
            assert await limiter.try_acquire("twilio", "+15017122661") > 0

    asyncio.run(scenario())
    state = backend.state("provider:twilio")
    assert state is not None
    assert state.tokens == pytest.approx(9.0)


def test_limiter_without_a_limit_never_waits_nor_touches_the_backend() -> None:
    clock = FakeClock()
    backend = MemoryBucketBackend()
    limiter = RateLimiter({}, backend=backend, clock=clock)

    async def scenario() -> None:
        for _ in range(1000):
            assert await limiter.try_acquire("sandbox", "+15550000000") == 0.0
        assert await limiter.acquire_batch("sandbox", None, 500) == 500

    asyncio.run(scenario())
    assert backend.state("provider:sandbox") is None
    assert limiter.max_batch("sandbox") is None


def test_limiter_batches_are_capped_by_the_smallest_burst() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    assert limiter.max_batch("twilio") == 10
    assert limiter.max_batch("twilio", "+15017122661") == 1

    async def scenario() -> list[int]:
        granted = [await limiter.acquire_batch("twilio", None, 25)]
        clock.advance(0.05)
        granted.append(await limiter.acquire_batch("twilio", None, 25))
        granted.append(await limiter.acquire_batch("twilio", None, 25))
        granted.append(await limiter.acquire_batch("twilio", "+15017122661", 25))
        with pytest.raises(ValueError):
            await limiter.acquire("twilio", None, 11)
        return granted

    # A full bucket grants its burst; then what has refilled, as soon as that is half a burst
    # (waiting for a full batch would let refill time go to waste under demand), or one token
    # where the sender's bucket holds only one.
    assert asyncio.run(scenario()) == [10, 5, 5, 1]
    # the third waited 0.05 s for 5 tokens at 100/s, the last 0.01 s for one
    assert clock.monotonic() == pytest.approx(0.11, abs=1e-6)


def test_limiter_penalty_slows_every_sender_of_the_provider() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)

    async def scenario() -> None:
        await limiter.penalize("twilio", 5.0)
        assert await limiter.try_acquire("twilio", "+15550000000") == pytest.approx(5.01)
        assert await limiter.try_acquire("smsroute") == 0.0, "other providers are not slowed"
        waited = await limiter.acquire("twilio")
        assert waited >= 5.0

    asyncio.run(scenario())


def test_limiter_penalty_on_an_unlimited_provider_pauses_it_locally() -> None:
    clock = FakeClock()
    limiter = RateLimiter({}, clock=clock)

    async def scenario() -> None:
        await limiter.penalize("sandbox", 2.0)
        assert await limiter.try_acquire("sandbox") == pytest.approx(2.0)
        clock.advance(2.0)
        assert await limiter.try_acquire("sandbox") == 0.0

    asyncio.run(scenario())


def test_limiter_namespace_separates_stores_on_one_backend() -> None:
    clock = FakeClock()
    backend = MemoryBucketBackend()
    first = RateLimiter({"p": Limit.parse("1/s", 1)}, backend=backend, clock=clock, namespace="a")
    second = RateLimiter({"p": Limit.parse("1/s", 1)}, backend=backend, clock=clock, namespace="b")

    async def scenario() -> None:
        assert await first.try_acquire("p") == 0.0
        assert await second.try_acquire("p") == 0.0
        assert await first.try_acquire("p") > 0

    asyncio.run(scenario())
    assert {key for key, _ in first.limits()} == {"provider:p"}


# ---- many consumers sharing one backend


def max_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (
            bisect.bisect_left(ordered, start + window) - index
            for index, start in enumerate(ordered)
        ),
        default=0,
    )


@pytest.mark.parametrize(
    ("rate", "burst", "workers", "batch"),
    [("50/s", 5, 8, 5), ("1/s", 1, 6, 1), ("100/s", 10, 3, 4), ("2/s", 1, 20, 1)],
)
def test_concurrent_consumers_stay_within_ten_percent_of_the_rate(
    rate: str, burst: int, workers: int, batch: int
) -> None:
    clock = SimulatedClock()
    backend = MemoryBucketBackend()
    limit = Limit.parse(rate, burst)
    # Several limiters on one backend stand for several worker processes on one store.
    limiters = [RateLimiter({"twilio": limit}, backend=backend, clock=clock) for _ in range(3)]
    sends: list[float] = []
    duration = 60.0

    def consumer(limiter: RateLimiter) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            while clock.monotonic() < duration:
                granted = await limiter.acquire_batch("twilio", None, batch)
                sends.extend([clock.monotonic()] * granted)
                # Sending takes a little time, so consumers fall out of step with each other.
                await clock.sleep(0.003)

        return run

    asyncio.run(clock.run([consumer(limiters[index % 3]) for index in range(workers)]))
    per_second = limit.rate.per_second
    in_time = [moment for moment in sends if moment < duration]
    assert max_in_window(in_time, 10.0) <= 1.1 * per_second * 10
    # The limiter must not be needlessly strict either: the rate is actually reached.
    assert len(in_time) >= 0.95 * per_second * duration


class RemoteBackend(MemoryBucketBackend):
    """Buckets a round trip away (a database): each take answers ``latency`` seconds later."""

    def __init__(self, clock: SimulatedClock, latency: float) -> None:
        super().__init__()
        self._clock = clock
        self._latency = latency

    async def take_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        await self._clock.sleep(self._latency / 2)
        answer = await super().take_up_to(specs, wanted, self._clock.time())
        await self._clock.sleep(self._latency / 2)
        return answer


@pytest.mark.parametrize(("rate", "burst"), [("20/s", 2), ("1000/s", 100)])
def test_workers_reach_the_rate_when_each_take_is_a_round_trip(rate: str, burst: int) -> None:
    clock = SimulatedClock()
    backend = RemoteBackend(clock, latency=0.01)
    limit = Limit.parse(rate, burst)
    # four worker processes, each with more sends waiting than a full bucket holds
    limiters = [RateLimiter({"twilio": limit}, backend=backend, clock=clock) for _ in range(4)]
    sends: list[float] = []
    grants: list[int] = []
    duration = 30.0

    def consumer(limiter: RateLimiter) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            while clock.monotonic() < duration:
                granted = await limiter.acquire_batch("twilio", None, 2 * burst)
                sends.extend([clock.monotonic()] * granted)
                grants.append(granted)

        return run

    asyncio.run(clock.run([consumer(limiter) for limiter in limiters]))
    in_time = [moment for moment in sends if moment < duration]
    per_second = limit.rate.per_second
    assert max_in_window(in_time, 10.0) <= per_second * 10 + burst
    # Waiting for a full bucket before each take sent 18/s of 20/s here: the time between the
    # bucket filling and the next take reaching it was lost at every grant.
    assert len(in_time) >= 0.99 * per_second * duration
    # ...and a high rate is taken in few round trips: half a burst or more each
    assert min(grants) >= max(1, burst // 2)


def test_consumers_respect_a_sender_bucket_inside_a_provider_bucket() -> None:
    clock = SimulatedClock()
    limiter = RateLimiter(
        {"twilio": Limit.parse("20/s", 2)},
        {("twilio", "+15017122661"): Limit.parse("1/s", 1)},
        clock=clock,
    )
    long_code: list[float] = []
    everyone: list[float] = []

    def consumer(sender: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            while clock.monotonic() < 30.0:
                await limiter.acquire("twilio", sender)
                everyone.append(clock.monotonic())
                if sender == "+15017122661":
                    long_code.append(clock.monotonic())

        return run

    senders = ["+15017122661"] * 3 + [f"+1555000000{index}" for index in range(4)]
    asyncio.run(clock.run([consumer(sender) for sender in senders]))
    assert max_in_window([t for t in long_code if t < 30], 10.0) <= 11
    assert max_in_window([t for t in everyone if t < 30], 10.0) <= 1.1 * 200
    assert len([t for t in everyone if t < 30]) >= 0.95 * 20 * 30
