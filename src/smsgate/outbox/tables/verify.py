"""The verify tables (migration 0006), in the outbox's store: one database, one transaction model.

Statements run inside the outbox engine's transactions (``write_transaction`` /
``read_transaction``), so on SQLite they queue with the worker's writers and on PostgreSQL they
use the same connections. A start stores its verification, its guard decision and its text in the
outbox in one transaction: either all of them exist or none does. Rows a check changes are
locked first on PostgreSQL (``FOR UPDATE``); SQLite serializes writers, which gives the same
guarantee: two checks of one verification never both see it pending.
"""

# ruff: noqa: S608 -- statements interpolate only column lists, never values

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from smsgate.message import Message
from smsgate.outbox.sql import SqlStore, Tx, Where, sql_store
from smsgate.ratelimit import BucketSpec, BucketState, take_all
from smsgate.verify.models import Block, Decision, Verification, VerificationStatus

if TYPE_CHECKING:
    from smsgate.outbox import Outbox

_PLACEHOLDER_TIME = -1.0


class Row(NamedTuple):
    """A ``smsgate_verifications`` row (with the salt and hash the public record never shows)."""

    id: str
    to_number: str
    channel: str
    status: str
    salt: str | None
    code_hash: str | None
    code_length: int
    locale: str | None
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    sends: int
    max_sends: int
    message_ids: str
    prefix: str
    country: str | None
    client_ip: str | None
    api_key: str | None
    reason: str | None
    test: str | None

    def public(self, *, valid: bool = False) -> Verification:
        return Verification(
            id=self.id,
            to=self.to_number,
            channel=self.channel,
            status=VerificationStatus(self.status),
            created_at=float(self.created_at),
            updated_at=float(self.updated_at),
            expires_at=float(self.expires_at),
            attempts=int(self.attempts),
            max_attempts=int(self.max_attempts),
            sends=int(self.sends),
            max_sends=int(self.max_sends),
            locale=self.locale,
            country=self.country,
            reason=self.reason,
            valid=valid,
        )

    @property
    def messages(self) -> list[str]:
        ids: list[str] = json.loads(self.message_ids)
        return ids


COLUMNS = ", ".join(Row._fields)
_PLACEHOLDERS = ", ".join("?" for _ in Row._fields)
_BLOCK_COLUMNS = (
    "id, prefix, level, reason, started, approved, created_at, blocked_until, lifted_at, lifted_by"
)
_DECISION_COLUMNS = (
    "at, action, outcome, reason, verification_id, to_number, prefix, country, client_ip, api_key"
)


def _block(row: Sequence[Any]) -> Block:
    return Block(
        row[0],
        row[1],
        int(row[2]),
        row[3],
        int(row[4]),
        int(row[5]),
        float(row[6]),
        float(row[7]),
        None if row[8] is None else float(row[8]),
        row[9],
    )


class VerifyStore:
    """The verify tables of ``outbox``'s store. Reads that stand alone are methods here; a start
    or a check runs in one transaction (:meth:`write`) whose :class:`VerifyTx` it calls, so it is
    one transaction however many tables it touches."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._store: SqlStore = sql_store(outbox.store, "verify")
        # the engine's row-lock clause (" FOR UPDATE" where rows are locked, "" on SQLite, whose
        # writers are serialized): verify asks no engine by name
        self._lock: str = self._store._for_update

    @contextmanager
    def write(self) -> Iterator[VerifyTx]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._store.write_transaction() as tx:
            yield VerifyTx(tx, self)

    @contextmanager
    def read(self) -> Iterator[VerifyTx]:
        """A consistent read (write nothing through it)."""
        with self._store.read_transaction() as tx:
            yield VerifyTx(tx, self)

    def list_rows(
        self, *, to: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Row]:
        where = Where()
        where.equal("to_number", to)
        where.equal("status", status)
        sql = f"SELECT {COLUMNS} FROM smsgate_verifications{where.sql}"
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._store.read_transaction() as tx:
            return [Row._make(r) for r in tx.execute(sql, [*where.params, limit])]

    def conversion(
        self, by: str, since: float, limit: int = 100
    ) -> list[tuple[str | None, int, int]]:
        """``(country or prefix, started, approved)`` of the verifications created since
        ``since``, most started first; ``by`` is ``"country"`` or ``"prefix"``."""
        if by not in ("country", "prefix"):
            raise ValueError(f"by must be 'country' or 'prefix', not {by!r}")
        sql = (
            f"SELECT {by}, count(*), sum(CASE WHEN status = 'approved' THEN 1 ELSE 0 END) "
            f"FROM smsgate_verifications WHERE created_at >= ? GROUP BY {by} "
            f"ORDER BY count(*) DESC, {by} LIMIT ?"
        )
        with self._store.read_transaction() as tx:
            rows = tx.execute(sql, (since, limit))
        return [(r[0], int(r[1]), int(r[2] or 0)) for r in rows]

    def blocks(self, now: float, *, active: bool = True, limit: int = 100) -> list[Block]:
        sql = f"SELECT {_BLOCK_COLUMNS} FROM smsgate_verify_blocks"
        params: list[Any] = []
        if active:
            sql += " WHERE lifted_at IS NULL AND blocked_until > ?"
            params.append(now)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit)
        with self._store.read_transaction() as tx:
            return [_block(row) for row in tx.execute(sql, params)]

    def decisions(
        self, *, verification_id: str | None = None, to: str | None = None, limit: int = 100
    ) -> list[Decision]:
        where = Where()
        where.equal("verification_id", verification_id)
        where.equal("to_number", to)
        with self._store.read_transaction() as tx:
            rows = where.newest(tx, _DECISION_COLUMNS, "smsgate_verify_decisions", limit)
        return [Decision(float(r[0]), *r[1:]) for r in rows]


class VerifyTx:
    """The verify tables inside one transaction of :class:`VerifyStore`."""

    def __init__(self, tx: Tx, tables: VerifyStore) -> None:
        self._tx = tx
        self._outbox = tables.outbox
        self._store = tables._store
        self._lock = tables._lock

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo what the block wrote if it raises (the exception goes on); what the transaction
        wrote before the block stays."""
        self._tx.execute("SAVEPOINT smsgate_verify_op")
        try:
            yield
        except Exception:
            self._tx.execute("ROLLBACK TO SAVEPOINT smsgate_verify_op")
            self._tx.execute("RELEASE SAVEPOINT smsgate_verify_op")
            raise
        self._tx.execute("RELEASE SAVEPOINT smsgate_verify_op")

    # -- verifications ------------------------------------------------------------------------

    def get(self, verification_id: str, *, lock: bool = False) -> Row | None:
        rows = self._tx.execute(
            f"SELECT {COLUMNS} FROM smsgate_verifications WHERE id = ?"
            + (self._lock if lock else ""),
            (verification_id,),
        )
        return Row._make(rows[0]) if rows else None

    def pending_for(self, to: str, channel: str, *, lock: bool = False) -> Row | None:
        """The number's pending verification on ``channel`` (there is at most one)."""
        rows = self._tx.execute(
            f"SELECT {COLUMNS} FROM smsgate_verifications "
            "WHERE to_number = ? AND channel = ? AND status = 'pending' "
            "ORDER BY created_at DESC LIMIT 1" + (self._lock if lock else ""),
            (to, channel),
        )
        return Row._make(rows[0]) if rows else None

    def insert(self, row: Row) -> None:
        self._tx.execute(
            f"INSERT INTO smsgate_verifications ({COLUMNS}) VALUES ({_PLACEHOLDERS})", tuple(row)
        )

    def update(self, row: Row) -> None:
        """Write back the fields a check or a resend changes."""
        self._tx.execute(
            "UPDATE smsgate_verifications SET status = ?, salt = ?, code_hash = ?, "
            "updated_at = ?, expires_at = ?, attempts = ?, sends = ?, message_ids = ?, "
            "reason = ? WHERE id = ?",
            (
                row.status,
                row.salt,
                row.code_hash,
                row.updated_at,
                row.expires_at,
                row.attempts,
                row.sends,
                row.message_ids,
                row.reason,
                row.id,
            ),
        )

    def update_none(self) -> None:
        """The cost of :meth:`update` without its effect: a check of a number with no pending
        verification spends what a wrong code spends, so its timing reveals nothing."""
        self._tx.execute(
            "UPDATE smsgate_verifications SET updated_at = updated_at WHERE id = ?", ("",)
        )

    # -- the text, in the outbox, in the same transaction --------------------------------------

    def insert_message(self, message: Message, now: float) -> str:
        """Store ``message`` in the outbox inside ``tx``: a verification and its text are
        committed together. Uses the outbox's own validation and insert (opt-outs screened as the
        outbox is configured), so the worker sends it like any other otp message."""
        row, event, fresh = self._outbox._validator.build(message, now)
        fresh = fresh or message.idempotency_key is None
        screen = self._outbox.opt_out_screen([row])
        (stored,) = self._store._insert(self._tx, [row], [event], fresh, screen)
        if stored is None:
            raise screen.refused[0]
        return stored[0]

    # -- token buckets ------------------------------------------------------------------------

    def take(self, specs: Sequence[BucketSpec], now: float) -> float:
        """Take one token from every bucket of ``specs`` or from none; the seconds to wait (0:
        granted). Same arithmetic as the outbox's rate buckets (:func:`~smsgate.ratelimit.take_all`)."""
        if not specs:
            return 0.0
        keys = sorted({spec.key for spec in specs})
        if self._lock:
            # rows must exist to be locked; lock them in key order so takers cannot deadlock
            self._tx.executemany(
                "INSERT INTO smsgate_verify_buckets (key, tokens, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                [(key, 0.0, _PLACEHOLDER_TIME) for key in keys],
            )
        clause, params = self._tx.in_list("key", keys)
        found = {
            key: BucketState(float(tokens), float(updated))
            for key, tokens, updated in self._tx.execute(
                f"SELECT key, tokens, updated_at FROM smsgate_verify_buckets WHERE {clause} "
                f"ORDER BY key{self._lock}",
                params,
            )
            if float(updated) != _PLACEHOLDER_TIME
        }
        states, wait = take_all([found.get(spec.key) for spec in specs], specs, 1, now)
        if wait == 0.0:
            self._tx.executemany(
                "INSERT INTO smsgate_verify_buckets (key, tokens, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
                "updated_at = excluded.updated_at",
                [(s.key, st.tokens, st.updated_at) for s, st in zip(specs, states, strict=True)],
            )
        return wait

    def bucket(self, key: str) -> BucketState | None:
        """One bucket as stored (not refilled); None if never filled."""
        rows = self._tx.execute(
            "SELECT tokens, updated_at FROM smsgate_verify_buckets WHERE key = ?", (key,)
        )
        if not rows or float(rows[0][1]) == _PLACEHOLDER_TIME:
            return None
        return BucketState(float(rows[0][0]), float(rows[0][1]))

    # -- the pumping detector's window --------------------------------------------------------

    def count(self, prefix: str, slot: int, *, started: int = 0, approved: int = 0) -> None:
        self._tx.execute(
            "INSERT INTO smsgate_verify_traffic (prefix, slot, started, approved) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (prefix, slot) DO UPDATE SET "
            "started = smsgate_verify_traffic.started + excluded.started, "
            "approved = smsgate_verify_traffic.approved + excluded.approved",
            (prefix, slot, started, approved),
        )

    def traffic(self, prefix: str, low: int, high: int) -> tuple[int, int]:
        """Starts and approvals of ``prefix`` in slots ``low <= slot < high``."""
        rows = self._tx.execute(
            "SELECT coalesce(sum(started), 0), coalesce(sum(approved), 0) "
            "FROM smsgate_verify_traffic WHERE prefix = ? AND slot >= ? AND slot < ?",
            (prefix, low, high),
        )
        return int(rows[0][0]), int(rows[0][1])

    def forget_traffic(self, prefix: str | None = None, before: int | None = None) -> None:
        """Drop a prefix's window (after a block or an unblock: new evidence is needed), or
        every slot older than ``before``."""
        if prefix is not None:
            self._tx.execute("DELETE FROM smsgate_verify_traffic WHERE prefix = ?", (prefix,))
        elif before is not None:
            self._tx.execute("DELETE FROM smsgate_verify_traffic WHERE slot < ?", (before,))

    # -- blocks -------------------------------------------------------------------------------

    def active_block(self, prefix: str, now: float) -> Block | None:
        rows = self._tx.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM smsgate_verify_blocks WHERE prefix = ? "
            "AND lifted_at IS NULL AND blocked_until > ? ORDER BY blocked_until DESC LIMIT 1",
            (prefix, now),
        )
        return _block(rows[0]) if rows else None

    def blocks_since(self, prefix: str, since: float) -> int:
        rows = self._tx.execute(
            "SELECT count(*) FROM smsgate_verify_blocks WHERE prefix = ? AND created_at >= ?",
            (prefix, since),
        )
        return int(rows[0][0])

    def add_block(self, block: Block) -> None:
        self._tx.execute(
            f"INSERT INTO smsgate_verify_blocks ({_BLOCK_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                block.id,
                block.prefix,
                block.level,
                block.reason,
                block.started,
                block.approved,
                block.created_at,
                block.blocked_until,
                block.lifted_at,
                block.lifted_by,
            ),
        )

    def lift(self, prefix: str, now: float, by: str) -> list[Block]:
        rows = self._tx.execute(
            "UPDATE smsgate_verify_blocks SET lifted_at = ?, lifted_by = ? "
            "WHERE prefix = ? AND lifted_at IS NULL AND blocked_until > ? "
            f"RETURNING {_BLOCK_COLUMNS}",
            (now, by, prefix, now),
        )
        return [_block(row) for row in rows]

    # -- decisions ----------------------------------------------------------------------------

    def record(self, decision: Decision) -> None:
        self._tx.execute(
            f"INSERT INTO smsgate_verify_decisions ({_DECISION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                decision.at,
                decision.action,
                decision.outcome,
                decision.reason,
                decision.verification_id,
                decision.to,
                decision.prefix,
                decision.country,
                decision.client_ip,
                decision.api_key,
            ),
        )
