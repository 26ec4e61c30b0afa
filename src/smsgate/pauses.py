"""Providers an operator paused: shared through the store, consulted by every worker's router.

Pausing is for a provider that is sick in a way its circuit breaker cannot see (wrong sender
registration, a billing problem, a carrier incident announced on a status page): while it is
paused, :class:`~smsgate.routing.Router` skips it exactly as it skips an open circuit, failing
over to the next provider of the route, or waiting when the route has no other.

The pauses live in one small table (``smsgate_provider_pauses``, migration 5) so that a pause
made in the console reaches every worker on every host. A router reads them through
:class:`PauseView`, which keeps the set for ``ttl`` seconds on the worker's clock: one query per
second at most, however many messages are sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smsgate.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from smsgate.outbox.sql import SqlStore


@dataclass(frozen=True, slots=True)
class Pause:
    provider: str
    paused_by: str
    reason: str | None
    paused_at: float


class ProviderPauses:
    """The pause table of one SQL store."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def pause(self, provider: str, by: str, reason: str | None, now: float) -> bool:
        """Pause ``provider``; False when it was paused already (the first pause is kept)."""
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_provider_pauses (provider, paused_by, reason, paused_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (provider) DO NOTHING RETURNING provider",
                (provider, by, reason or None, now),
            )
        return bool(rows)

    def resume(self, provider: str) -> bool:
        """Resume ``provider``; False when it was not paused."""
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "DELETE FROM smsgate_provider_pauses WHERE provider = ? RETURNING provider",
                (provider,),
            )
        return bool(rows)

    def list(self) -> dict[str, Pause]:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT provider, paused_by, reason, paused_at FROM smsgate_provider_pauses"
            )
        return {row[0]: Pause(*row) for row in rows}

    def names(self) -> frozenset[str]:
        with self._store.read_transaction() as tx:
            rows = tx.execute("SELECT provider FROM smsgate_provider_pauses")
        return frozenset(row[0] for row in rows)


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
