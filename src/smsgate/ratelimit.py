"""Token buckets per provider and per sender, shareable between worker processes.

The arithmetic lives in three pure functions on :class:`BucketState` (``refill``, ``take_all``,
``penalize_state``) so every backend applies the same rules: the in-memory one here, and the
SQLite/PostgreSQL ones of the outbox, which keep one row ``(key, tokens, updated_at)`` per bucket
and apply the same functions inside one transaction (or one ``UPDATE ... RETURNING``).

A 429 penalty is stored as a token debt (negative tokens), not as a separate "paused until"
column: the bucket refills to zero exactly when the penalty ends and then resumes at its rate.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError

_UNIT_SECONDS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(?P<count>[0-9]+(?:\.[0-9]+)?)\s*/\s*(?P<unit>[a-z]+?)s?\s*$")
#: A clock that appears to have gone back by more than this (a host stepped by NTP, or a badly
#: skewed host sharing the store) re-bases the bucket instead of freezing it until time catches up.
#: Smaller differences are ordinary skew between hosts and are absorbed without granting extra.
MAX_CLOCK_SKEW = 1.0
#: A wait this short counts as granted. Epoch seconds as floats resolve only about 0.24 µs, so a
#: consumer that slept exactly the advertised wait may find a few ulps missing; without the
#: tolerance it would be told to sleep for less than the clock can advance, forever.
_GRANT_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` tokens every ``period`` seconds, as written in the config (``"30/min"``)."""

    count: float
    period: float
    unit: str = "s"

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return f"{self.count:g}/{self.unit}"


def parse_rate(text: str | float | Rate, key: str = "rate") -> Rate:
    """Parse ``"1/s"``, ``"100/s"``, ``"30/min"``, ``"3600/h"``, ``"0.5/s"``.

    A bare number means tokens per second.

    Raises :class:`ConfigError` naming ``key`` and the accepted forms.
    """
    if isinstance(text, Rate):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text) or text <= 0:
            raise ConfigError(
                f'{key}: {text!r} is not a positive rate; write e.g. "1/s"', field=key
            )
        return Rate(float(text), 1.0, "s")
    if not isinstance(text, str):
        raise ConfigError(
            f'{key}: expected a rate such as "1/s" or "30/min", got {type(text).__name__}',
            field=key,
        )
    match = _RATE.match(text.lower())
    unit = match["unit"] if match else ""
    if match is None or unit not in _UNIT_SECONDS:
        raise ConfigError(
            f"{key}: {text!r} is not a rate; write COUNT/UNIT with UNIT one of s, min, h, d "
            '(for example "1/s", "30/min", "3600/h")',
            field=key,
        )
    count = float(match["count"])
    if count <= 0:
        raise ConfigError(
            f"{key}: {text!r} allows nothing; the count must be above zero", field=key
        )
    return Rate(count, _UNIT_SECONDS[unit], unit)


def default_burst(rate: Rate | float) -> int:
    """A tenth of a second's worth of tokens, at least one.

    Small enough that a full bucket adds at most 1% to any 10-second window, large enough that a
    fast short code (100/s) can be taken in batches of 10 with one round trip each.
    """
    per_second = rate.per_second if isinstance(rate, Rate) else float(rate)
    return max(1, math.ceil(per_second / 10))


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """Which bucket and how it fills: ``rate`` tokens per second up to ``burst``."""

    key: str
    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"bucket {self.key!r}: rate must be a positive number of tokens/s")
        if self.burst < 1:
            raise ValueError(f"bucket {self.key!r}: burst must be at least 1")


@dataclass(frozen=True, slots=True)
class BucketState:
    """What a backend stores per bucket: the token count at ``updated_at`` (wall-clock seconds).

    ``tokens`` is negative while a rate-limit penalty is being served.
    """

    tokens: float
    updated_at: float


def refill(state: BucketState | None, spec: BucketSpec, now: float) -> BucketState:
    """The bucket as of ``now``; a bucket never seen before starts full."""
    if state is None:
        return BucketState(float(spec.burst), now)
    if state.updated_at > now + MAX_CLOCK_SKEW:
        return BucketState(min(float(spec.burst), state.tokens), now)
    elapsed = max(0.0, now - state.updated_at)
    tokens = min(float(spec.burst), state.tokens + elapsed * spec.rate)
    # Never move updated_at back: a slightly slow host must not make refill time count twice.
    return BucketState(tokens, max(state.updated_at, now))


def take_all(
    states: Sequence[BucketState | None], specs: Sequence[BucketSpec], n: int, now: float
) -> tuple[list[BucketState], float]:
    """Take ``n`` tokens from every bucket, or from none.

    Returns the new states (always write them back: they carry the refill) and the seconds to
    wait before asking again, 0 when granted. All-or-nothing so that a send never spends provider
    tokens while its sender bucket is empty.
    """
    if len(states) != len(specs):
        raise ValueError("one state per bucket spec")
    if n < 1:
        raise ValueError("n must be at least 1")
    for spec in specs:
        if n > spec.burst:
            raise ValueError(
                f"bucket {spec.key!r}: {n} tokens can never be granted (burst {spec.burst})"
            )
    current = [refill(state, spec, now) for state, spec in zip(states, specs, strict=True)]
    wait = max(
        ((n - state.tokens) / spec.rate for state, spec in zip(current, specs, strict=True)),
        default=0.0,
    )
    if wait <= _GRANT_TOLERANCE:
        return [BucketState(state.tokens - n, state.updated_at) for state in current], 0.0
    return current, wait


def take_up_to(
    states: Sequence[BucketState | None], specs: Sequence[BucketSpec], wanted: int, now: float
) -> tuple[list[BucketState], int, float]:
    """Take as many whole tokens as every bucket holds, up to ``wanted``, once they hold at
    least half a burst (or ``wanted``, if fewer); else none.

    Returns the new states (always write them back), how many were granted, and the seconds
    until the least grant would be (0 when granted). This is what a consumer with several sends
    waiting calls. Waiting instead for ``wanted`` tokens at once (:func:`take_all`) makes every
    grant wait for a full bucket, and each round trip's latency after that moment is lost: with
    a burst of a tenth of a second and 10 ms round trips, a 20/s limit sends about 18/s (see
    docs/multi-host.md). Taken from half a burst on, a grant is lost to nothing as long as its
    round trip lasts less than half the burst's refill time (50 ms at the default burst), and
    a high rate is still taken in few round trips (a 1000/s limit in takes of 50 or more).
    """
    if len(states) != len(specs):
        raise ValueError("one state per bucket spec")
    if wanted < 1:
        raise ValueError("wanted must be at least 1")
    least = max(1, min([wanted, *(spec.burst // 2 for spec in specs)]))
    current = [refill(state, spec, now) for state, spec in zip(states, specs, strict=True)]
    held = min(
        (
            math.floor(state.tokens + _GRANT_TOLERANCE * spec.rate)
            for state, spec in zip(current, specs, strict=True)
        ),
        default=wanted,
    )
    if held >= least:
        granted = min(wanted, held)
        return (
            [BucketState(state.tokens - granted, state.updated_at) for state in current],
            granted,
            0.0,
        )
    wait = max(
        ((least - state.tokens) / spec.rate for state, spec in zip(current, specs, strict=True)),
        default=0.0,
    )
    return current, 0, wait


def penalize_state(
    state: BucketState | None, spec: BucketSpec, seconds: float, now: float
) -> BucketState:
    """Grant nothing for ``seconds``; afterwards the bucket refills from empty at its rate."""
    current = refill(state, spec, now)
    debt = -max(0.0, seconds) * spec.rate
    return BucketState(min(current.tokens, debt), current.updated_at)


class BucketBackend(Protocol):
    """Where bucket states live. Every worker process of one store must share one backend.

    ``now`` is wall-clock seconds (``Clock.time()``) so that processes agree; a SQL backend may
    use the database server's clock instead, which also removes skew between hosts.
    """

    async def take(self, specs: Sequence[BucketSpec], n: int, now: float) -> float:
        """Atomically take ``n`` tokens from every bucket in ``specs``, or from none.

        Returns 0 when granted, else the seconds until they would be.
        """
        ...

    async def take_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        """Atomically take up to ``wanted`` tokens from every bucket in ``specs``, as many as
        they all hold once that is half a burst (see :func:`take_up_to`), or none.

        Returns how many were granted and, when none, the seconds until a grant would be.
        """
        ...

    async def penalize(self, spec: BucketSpec, seconds: float, now: float) -> None:
        """Atomically put the bucket into a penalty of ``seconds`` (see :func:`penalize_state`)."""
        ...


class MemoryBucketBackend:
    """Bucket states in a dict: shared by everything in one process (threads included)."""

    def __init__(self) -> None:
        self._states: dict[str, BucketState] = {}
        self._lock = threading.Lock()

    async def take(self, specs: Sequence[BucketSpec], n: int, now: float) -> float:
        with self._lock:
            states = [self._states.get(spec.key) for spec in specs]
            new_states, wait = take_all(states, specs, n, now)
            for spec, state in zip(specs, new_states, strict=True):
                self._states[spec.key] = state
        return wait

    async def take_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        with self._lock:
            states = [self._states.get(spec.key) for spec in specs]
            new_states, granted, wait = take_up_to(states, specs, wanted, now)
            for spec, state in zip(specs, new_states, strict=True):
                self._states[spec.key] = state
        return granted, wait

    async def penalize(self, spec: BucketSpec, seconds: float, now: float) -> None:
        with self._lock:
            self._states[spec.key] = penalize_state(self._states.get(spec.key), spec, seconds, now)

    def state(self, key: str) -> BucketState | None:
        """The stored state of one bucket (not refilled), for inspection and tests."""
        return self._states.get(key)


class TokenBucket:
    """One in-process bucket: ``rate`` tokens per second, holding at most ``burst``."""

    def __init__(
        self, rate: Rate | str | float, burst: int | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        parsed = parse_rate(rate)
        self.rate = parsed
        self._spec = BucketSpec(
            "bucket", parsed.per_second, default_burst(parsed) if burst is None else burst
        )
        self._clock = clock
        self._state: BucketState | None = None

    @property
    def burst(self) -> int:
        return self._spec.burst

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while a penalty is being served)."""
        return refill(self._state, self._spec, self._clock.monotonic()).tokens

    def try_acquire(self, n: int = 1) -> float:
        """Take ``n`` tokens if they are there: returns 0, else the seconds until they will be."""
        states, wait = take_all([self._state], [self._spec], n, self._clock.monotonic())
        self._state = states[0]
        return wait

    async def acquire(self, n: int = 1) -> float:
        """Wait on the clock until ``n`` tokens are taken; returns the seconds waited."""
        waited = 0.0
        while (wait := self.try_acquire(n)) > 0:
            await self._clock.sleep(wait)
            waited += wait
        return waited

    def penalize(self, retry_after: float) -> None:
        """After a 429: grant nothing for ``retry_after`` seconds, then refill from empty."""
        self._state = penalize_state(self._state, self._spec, retry_after, self._clock.monotonic())


@dataclass(frozen=True, slots=True)
class Limit:
    """A configured limit: a rate and the burst it may save up."""

    rate: Rate
    burst: int

    @classmethod
    def parse(cls, rate: str | float | Rate, burst: int | None = None, key: str = "rate") -> Limit:
        parsed = parse_rate(rate, key)
        return cls(parsed, default_burst(parsed) if burst is None else burst)

    def __str__(self) -> str:
        return f"{self.rate} burst {self.burst}"


class RateLimiter:
    """The buckets for sends: one per provider and one per (provider, sender).

    A send acquires every bucket that applies to it in one atomic backend call. Providers and
    senders without a configured limit have no bucket and cost no round trip.
    """

    def __init__(
        self,
        provider_limits: Mapping[str, Limit] | None = None,
        sender_limits: Mapping[tuple[str, str], Limit] | None = None,
        *,
        backend: BucketBackend | None = None,
        clock: Clock = SYSTEM_CLOCK,
        namespace: str = "",
    ) -> None:
        self._provider_limits = dict(provider_limits or {})
        self._sender_limits = dict(sender_limits or {})
        self.backend: BucketBackend = MemoryBucketBackend() if backend is None else backend
        self._clock = clock
        self._prefix = f"{namespace}:" if namespace else ""
        # A 429 from a provider without a configured rate has no shared bucket to slow, so the
        # pause is kept in this process only.
        self._local_pauses: dict[str, float] = {}

    def buckets_for(self, provider: str, sender: str | None = None) -> list[BucketSpec]:
        """The buckets a send through ``provider`` from ``sender`` must take from."""
        specs = []
        limit = self._provider_limits.get(provider)
        if limit is not None:
            specs.append(self._spec(f"provider:{provider}", limit))
        if sender is not None:
            sender_limit = self._sender_limits.get((provider, sender))
            if sender_limit is not None:
                specs.append(self._spec(f"sender:{provider}:{sender}", sender_limit))
        return specs

    def max_batch(self, provider: str, sender: str | None = None) -> int | None:
        """The most tokens one acquire may take for this pair; ``None`` when nothing limits it."""
        specs = self.buckets_for(provider, sender)
        return min((spec.burst for spec in specs), default=None)

    async def try_acquire(self, provider: str, sender: str | None = None, n: int = 1) -> float:
        """Take ``n`` tokens from every applicable bucket, or none: 0, else seconds to wait."""
        now = self._clock.time()
        if paused := self._paused(provider, now):
            return paused
        specs = self.buckets_for(provider, sender)
        if not specs:
            return 0.0
        return await self.backend.take(specs, n, now)

    def _paused(self, provider: str, now: float) -> float:
        """Seconds left of a 429 pause kept in this process (for a provider without a rate)."""
        paused_until = self._local_pauses.get(provider)
        if paused_until is None:
            return 0.0
        if now < paused_until:
            return paused_until - now
        del self._local_pauses[provider]
        return 0.0

    async def acquire(self, provider: str, sender: str | None = None, n: int = 1) -> float:
        """Wait on the clock until ``n`` tokens are taken; returns the seconds waited.

        ``n`` may not exceed :meth:`max_batch` (tokens saved up across a long wait would be spent
        at once and break the rate); use :meth:`acquire_batch` to take "as many as allowed".
        """
        waited = 0.0
        while (wait := await self.try_acquire(provider, sender, n)) > 0:
            await self._clock.sleep(wait)
            waited += wait
        return waited

    async def acquire_batch(self, provider: str, sender: str | None, wanted: int) -> int:
        """Wait for tokens and take up to ``wanted`` in one take; returns how many were
        granted (>= 1).

        A worker holding several messages for one provider and sender calls this, sends that
        many, and repeats: one backend round trip per batch instead of per message. It is
        granted what the buckets hold as soon as that is half a burst, or ``wanted`` if fewer
        (:func:`take_up_to`), so workers sharing a bucket keep it from filling up and the
        configured rate is what they send.
        """
        if wanted < 1:
            raise ValueError("wanted must be at least 1")
        specs = self.buckets_for(provider, sender)
        wanted = min([wanted, *(spec.burst for spec in specs)])
        while True:
            now = self._clock.time()
            wait = self._paused(provider, now)
            if not wait:
                if not specs:
                    return wanted
                granted, wait = await self.backend.take_up_to(specs, wanted, now)
                if granted:
                    return granted
            await self._clock.sleep(wait)

    async def penalize(self, provider: str, retry_after: float) -> None:
        """Slow ``provider`` after a 429: nothing is granted for ``retry_after`` seconds."""
        now = self._clock.time()
        limit = self._provider_limits.get(provider)
        if limit is None:
            self._local_pauses[provider] = max(
                self._local_pauses.get(provider, now), now + retry_after
            )
            return
        await self.backend.penalize(self._spec(f"provider:{provider}", limit), retry_after, now)

    def limits(self) -> Iterable[tuple[str, Limit]]:
        """Every configured bucket key and its limit (for summaries and metrics)."""
        for provider, limit in self._provider_limits.items():
            yield f"provider:{provider}", limit
        for (provider, sender), limit in self._sender_limits.items():
            yield f"sender:{provider}:{sender}", limit

    def _spec(self, key: str, limit: Limit) -> BucketSpec:
        return BucketSpec(self._prefix + key, limit.rate.per_second, limit.burst)
