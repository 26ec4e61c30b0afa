"""How long to wait before trying a provider again: exponential backoff with jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads the retries of many
messages that failed together, so a provider coming back from an outage is not hit by all of them
in the same second.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from smsgate.errors import ConfigError, RateLimited, SmsgateError

Jitter = Literal["full", "equal", "none"]
JITTER_MODES: tuple[Jitter, ...] = ("full", "equal", "none")
# 2**64 seconds is beyond any max_delay; capping the exponent keeps the arithmetic finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``max_attempts`` attempts per provider, waiting between ``0`` and
    ``min(max_delay, base_delay * 2 ** (attempt - 1))`` seconds after failed attempt ``attempt``.

    ``attempt`` counts from 1 (the first try), so the first retry waits up to ``base_delay``.
    ``jitter``: ``"full"`` draws uniformly from the whole range, ``"equal"`` from its upper half,
    ``"none"`` always waits the ceiling.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(
                f"max_attempts: {self.max_attempts!r} must be a whole number of at least 1",
                field="max_attempts",
            )
        if not (math.isfinite(self.base_delay) and self.base_delay > 0):
            raise ConfigError(
                f"base_delay: {self.base_delay!r} must be a positive number of seconds",
                field="base_delay",
            )
        if not (math.isfinite(self.max_delay) and self.max_delay >= self.base_delay):
            raise ConfigError(
                f"max_delay: {self.max_delay!r} must be at least base_delay ({self.base_delay:g})",
                field="max_delay",
            )
        if self.jitter not in JITTER_MODES:
            raise ConfigError(
                f"jitter: {self.jitter!r} is not one of {', '.join(JITTER_MODES)}", field="jitter"
            )

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        return min(self.max_delay, self.base_delay * 2.0**exponent)

    def delay(
        self, attempt: int, rng: random.Random | None = None, error: SmsgateError | None = None
    ) -> float:
        """Seconds to wait after failed attempt ``attempt``; never less than a ``RateLimited``
        error's ``retry_after`` (the provider said when it will take traffic again)."""
        ceiling = self.ceiling(attempt)
        draw = (rng or random).random()
        if self.jitter == "full":
            wait = ceiling * draw
        elif self.jitter == "equal":
            wait = ceiling / 2 + ceiling / 2 * draw
        else:
            wait = ceiling
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait

    def allows_retry(self, attempt: int) -> bool:
        """Whether another attempt may follow failed attempt ``attempt``."""
        return attempt < self.max_attempts

    def describe(self) -> str:
        return (
            f"{self.max_attempts} attempts, backoff {self.base_delay:g}s..{self.max_delay:g}s "
            f"({self.jitter} jitter)"
        )
