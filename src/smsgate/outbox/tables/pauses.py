"""The providers an operator paused (migration 0005): one row per paused provider.

:mod:`smsgate.pauses` is what the routers make of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsgate.outbox.sql import as_sql_store
from smsgate.outbox.store import Store
from smsgate.outbox.tables.base import Table


@dataclass(frozen=True, slots=True)
class Pause:
    provider: str
    paused_by: str
    reason: str | None
    paused_at: float


class ProviderPauses(Table):
    """The pause table of one SQL store."""

    needs = "pausing providers"

    @classmethod
    def maybe(cls, store: Store) -> ProviderPauses | None:
        """The pause table of ``store``, or None for a store without the tables beside the
        outbox's (nothing can be paused there)."""
        sql = as_sql_store(store)
        return None if sql is None else cls(sql)

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
