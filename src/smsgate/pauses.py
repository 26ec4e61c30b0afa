"""Providers an operator paused: shared through the store, consulted by every worker's router.

Pausing is for a provider that is sick in a way its circuit breaker cannot see (wrong sender
registration, a billing problem, a carrier incident announced on a status page): while it is
paused, :class:`~smsgate.routing.Router` skips it exactly as it skips an open circuit, failing
over to the next provider of the route, or waiting when the route has no other.

The pauses live in one small table (``smsgate_provider_pauses``, migration 5, owned by
:mod:`smsgate.outbox.tables.pauses`) so that a pause made in the console reaches every worker on
every host. A router reads them through
:class:`PauseView`, which keeps the set for ``ttl`` seconds on the worker's clock: one query per
second at most, however many messages are sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smsgate.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from smsgate.outbox.tables.pauses import ProviderPauses


class PauseView:
    """The paused providers as a router sees them: read at most once per ``ttl`` seconds.

    ``load`` returns the names paused now. If it fails (the store is briefly unavailable) the
    last known set is kept, so a store hiccup neither pauses nor resumes anything.
    """

    def __init__(
        self, load: Callable[[], frozenset[str]], *, clock: Clock = SYSTEM_CLOCK, ttl: float = 1.0
    ) -> None:
        self._load = load
        self._clock = clock
        self.ttl = ttl
        self._names: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, pauses: ProviderPauses, **options: Any) -> PauseView:
        return cls(pauses.names, **options)

    def paused(self) -> frozenset[str]:
        now = self._clock.monotonic()
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < self.ttl:
                return self._names
        try:
            names = self._load()
        except Exception:  # keep what we knew; the next call tries again
            return self._names
        with self._lock:
            self._names, self._loaded_at = names, now
        return names

    def is_paused(self, provider: str) -> bool:
        return provider in self.paused()

    def refresh(self) -> None:
        """Forget the cached set (after a pause or resume made in this process)."""
        with self._lock:
            self._loaded_at = None
