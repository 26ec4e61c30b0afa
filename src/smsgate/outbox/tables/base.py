"""What every table module hands out: an object bound to the outbox's SQL store."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

if TYPE_CHECKING:
    from smsgate.outbox.sql import SqlStore
    from smsgate.outbox.store import Store


class Table:
    """The rows of one table (or of a few that change together) in a SQL store."""

    #: who needs these tables, for the error a store without them gets
    needs: ClassVar[str] = "this feature"

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    @classmethod
    def of(cls, store: Store) -> Self:
        """The tables in ``store``; a ConfigError naming the store when it has none."""
        # Imported here: the SQL store writes some of these tables inside its own transactions
        # (message_parts), so it imports table modules, not the other way round at load time.
        from smsgate.outbox.sql import sql_store

        return cls(sql_store(store, cls.needs))
