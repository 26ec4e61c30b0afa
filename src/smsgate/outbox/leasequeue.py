# ruff: noqa: S608 -- statements interpolate only table names, column lists and predicates
# defined in code (LeasedTable), never values; every value is a bound parameter
"""The one lease-and-claim queue: rows of a table taken for work under a lease.

Messages (the worker's) and user-webhook deliveries (the server's dispatcher) are both jobs of
this queue (see the architecture page, *The lease queue*). A job row carries four columns the
queue owns: ``next_attempt_at`` (set and past: due), ``lease_owner`` and ``lease_expires_at``
(who holds it, until when) and ``updated_at``. A claim takes due rows, oldest due first, and
moves them from due to held; the holder renews its lease while it works and ends it by writing
the outcome (its own statement) or by releasing the row, which makes it due again. A holder that
dies leaves its lease to expire; the next claim with room takes its rows over, naming the
previous owner so the new one can tell what the old one may have done. A row whose expired lease
holds no more work (finished meanwhile, by a receipt for instance) only loses the lease.

The statements here are portable SQL. The PostgreSQL engine refines them (``FOR UPDATE SKIP
LOCKED``, so concurrent claimers never wait on each other's rows, and one statement for a take
over) in :class:`smsgate.outbox.postgres.PgLeaseQueue`; a store hands out the queue for a table
with ``lease_queue``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from smsgate.outbox.sql import CHUNK, Tx
from smsgate.outbox.store import MESSAGE_COLUMNS, REPLACEABLE, WAITING, State, chunks


@dataclass(frozen=True, slots=True)
class LeasedTable:
    """A table whose rows are jobs of the lease queue.

    ``columns``: what a claim returns for each row. The predicates are SQL on the row:
    ``due_if`` narrows the due rows beyond ``next_attempt_at`` (empty: none); ``waiting``: the
    row still waits for work (a release makes only these due again); ``takeable``: an expired
    lease on it holds unfinished work (taken over; otherwise only the lease goes);
    ``stale_due``: a row whose stale lease is dropped becomes due now (empty: none).
    """

    name: str
    columns: str
    waiting: str
    takeable: str
    due_if: str = ""
    stale_due: str = ""


class Taken(NamedTuple):
    """A claimed row (``columns``) and, for a take over, who held it before."""

    row: tuple[Any, ...]
    previous_owner: str | None = None


class LeaseQueue:
    """Claim, renew and release on one :class:`LeasedTable`, inside the caller's transaction."""

    def __init__(self, table: LeasedTable) -> None:
        self.table = table
        t = table.name
        due_if = f" AND {table.due_if}" if table.due_if else ""
        self.claim_due_sql = (
            f"UPDATE {t} SET lease_owner = ?, lease_expires_at = ?, next_attempt_at = NULL, "
            f"updated_at = ? WHERE id IN (SELECT id FROM {t} WHERE next_attempt_at <= ?{due_if} "
            f"ORDER BY next_attempt_at LIMIT ?) RETURNING {table.columns}"
        )
        self.expired_sql = (
            f"SELECT id, lease_owner, CASE WHEN {table.takeable} THEN 1 ELSE 0 END FROM {t} "
            "WHERE lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?"
        )
        self.take_one_sql = (
            f"UPDATE {t} SET lease_owner = ?, lease_expires_at = ?, next_attempt_at = NULL, "
            f"updated_at = ? WHERE id = ? RETURNING {table.columns}"
        )
        stale_due = (
            f", next_attempt_at = CASE WHEN {table.stale_due} THEN ? ELSE next_attempt_at END"
            if table.stale_due
            else ""
        )
        #: drops the leases of rows (by id, appended by the caller) that hold no more work
        self.drop_stale_sql = (
            f"UPDATE {t} SET lease_owner = NULL, lease_expires_at = NULL{stale_due}"
        )

    def claim_due_params(
        self, owner: str, limit: int, now: float, lease_until: float
    ) -> tuple[Any, ...]:
        """The parameters of :attr:`claim_due_sql`."""
        return (owner, lease_until, now, now, limit)

    def stale_params(self, now: float) -> list[Any]:
        """The parameters :attr:`drop_stale_sql` takes before its own."""
        return [now] if self.table.stale_due else []

    def claim(
        self,
        tx: Tx,
        owner: str,
        limit: int,
        now: float,
        lease_until: float,
        *,
        take_over: bool = True,
    ) -> list[Taken]:
        """Take up to ``limit`` rows under a lease until ``lease_until``: (``take_over``) rows
        whose lease expired first, then due ones. Expired leases first: under a backlog, due
        rows would fill every claim, and a dead holder's rows would wait for the backlog to
        drain (see docs/multi-host.md)."""
        if limit < 1:
            return []
        taken = self.take_over(tx, owner, limit, now, lease_until) if take_over else []
        room = limit - len(taken)
        if room > 0:
            params = self.claim_due_params(owner, room, now, lease_until)
            taken.extend(Taken(row) for row in tx.execute(self.claim_due_sql, params))
        return taken

    def take_over(
        self, tx: Tx, owner: str, room: int, now: float, lease_until: float
    ) -> list[Taken]:
        """Take up to ``room`` rows whose lease expired and that still hold work; drop the
        stale leases met on the way."""
        taken: list[Taken] = []
        stale: list[str] = []
        for row_id, previous, takeable in tx.execute(self.expired_sql, (now, room)):
            if not takeable:
                stale.append(row_id)
                continue
            (row,) = tx.execute(self.take_one_sql, (owner, lease_until, now, row_id))
            taken.append(Taken(row, previous))
        for part in chunks(stale, CHUNK):
            clause, params = tx.in_list("id", part)
            tx.execute(f"{self.drop_stale_sql} WHERE {clause}", [*self.stale_params(now), *params])
        return taken

    def renew(self, tx: Tx, owner: str, ids: Sequence[str], lease_until: float) -> set[str]:
        """Extend ``owner``'s leases on ``ids``; returns the ids it still held."""
        kept: set[str] = set()
        for part in chunks(ids, CHUNK):
            clause, params = tx.in_list("id", part)
            rows = tx.execute(
                f"UPDATE {self.table.name} SET lease_expires_at = ? "
                f"WHERE lease_owner = ? AND {clause} RETURNING id",
                [lease_until, owner, *params],
            )
            kept.update(r[0] for r in rows)
        return kept

    def release(self, tx: Tx, owner: str, ids: Sequence[str], now: float) -> set[str]:
        """Let go of ``owner``'s rows among ``ids`` that still wait for work: due again at
        ``now``. Returns the ids released."""
        released: set[str] = set()
        for part in chunks(ids, CHUNK):
            clause, params = tx.in_list("id", part)
            rows = tx.execute(
                f"UPDATE {self.table.name} SET lease_owner = NULL, lease_expires_at = NULL, "
                f"next_attempt_at = ?, updated_at = ? WHERE lease_owner = ? AND {clause} "
                f"AND {self.table.waiting} RETURNING id",
                [now, now, owner, *params],
            )
            released.update(r[0] for r in rows)
        return released


def state_in(states: Iterable[State]) -> str:
    """``state IN (...)`` for ``states`` (enum values, so safe to inline)."""
    return "state IN (" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


#: the outbox's messages: due when ``next_attempt_at`` passes; an expired lease on a row that
#: was waiting or sending is taken over (the new owner resolves a send that may have been made);
#: a stale lease on a sent row leaves it due, so its receipt is looked up
MESSAGES = LeasedTable(
    name="smsgate_messages",
    columns=MESSAGE_COLUMNS,
    waiting=state_in(WAITING),
    takeable=state_in(REPLACEABLE),
    stale_due="state = 'sent'",
)
