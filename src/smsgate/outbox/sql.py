"""The store logic both SQL engines share; each engine supplies connections and a few statements.

Statements are written once with ``?`` placeholders; the PostgreSQL store turns them into ``%s``.
Where the engines differ for speed or locking (bulk insert, claim) the engine overrides the method.
"""

# ruff: noqa: S608 -- statements interpolate only column lists, engine fragments and placeholder
# lists built here, never values; every value is a bound parameter

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from smsgate.errors import ConfigError
from smsgate.message import Status
from smsgate.outbox import migrate as migrations
from smsgate.outbox.store import (
    ALL_NUMBERS,
    CANCELABLE,
    EVENT_COLUMNS,
    FINAL_STATES,
    INDEXED_STATES,
    MESSAGE_COLUMNS,
    STATES,
    WAITING,
    Claimed,
    EventRecord,
    Inserter,
    ListQuery,
    NewEvent,
    NewMessageRow,
    Receipt,
    ReceiptOutcome,
    Screen,
    StartSend,
    State,
    StoreCalls,
    StoredMessage,
    StoreURL,
    Transition,
    chunks,
    dumps,
    merge_state,
    receipt_target,
)
from smsgate.outbox.tables.message_parts import forget_parts_in, parts_of, record_parts_in
from smsgate.ratelimit import BucketSpec, BucketState, penalize_state, take_all, take_up_to

if TYPE_CHECKING:  # the queue's statements build on this module's Tx
    from smsgate.outbox.leasequeue import LeasedTable, LeaseQueue

#: ids per ``IN (...)`` list
CHUNK = 500
#: the idempotency_key of a NewMessageRow (or of the plain tuple a bulk loader sends)
_key: Callable[[Sequence[Any]], str | None] = itemgetter(
    NewMessageRow._fields.index("idempotency_key")
)


def _id(row: Sequence[Any]) -> str:
    message_id: str = row[0]
    return message_id


#: a subquery listing the strings of the JSON array bound to its one parameter, per engine
_JSON_TEXTS = {
    "sqlite": "SELECT value FROM json_each(?)",
    "postgresql": "SELECT json_array_elements_text(?::json)",
}
#: true of a row exactly when its state is one of INDEXED_STATES: listed_state, the key of the
#: partial index smsgate_messages_state (migration 0010), holds the state only for those
INDEXED_PREDICATE = "listed_state = state"


def status_if_sql(column: str, states: Iterable[State]) -> str:
    """SQL for the public status of a row whose state (in ``column``) is one of ``states``, and
    NULL otherwise. A CASE, not ``IN``: SQLite builds a temporary index for an ``IN`` list of
    more than two values each time the statement runs, which is every row of an executemany."""
    whens = " ".join(
        f"WHEN '{state.value}' THEN '{state.status.value}'" for state in sorted(states)
    )
    return f"CASE {column} {whens} END"


INSERT_MESSAGE = (
    "INSERT INTO smsgate_messages (id, state, purpose, to_number, sender, idempotency_key, "
    "payload, send_at, expires_at, next_attempt_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EVENT = (
    "INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, reason, "
    "provider, attempt, event_key, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# The worker's two writes to a row it holds, stated once for every engine: starting its send
# and finishing it. The values of each SET list are ``?`` placeholders bound in the order of
# start_params / finish_params, or, where an engine sends the rows as a derived table instead
# (the PostgreSQL store's JSON), that table's columns of the same names; ``updated_at`` is a
# placeholder either way (the time is the same for every row).


def _value(source: str, column: str) -> str:
    return f"{source}{column}" if source else "?"


def start_set(source: str = "", row: str = "") -> str:
    """The SET list moving a held row to ``sending`` right before its request. ``source``: the
    derived table with the values (``"s_in."``), else placeholders; ``row``: the prefix of the
    row's own columns where the statement needs one (``"m."``)."""
    return (
        f"state = 'sending', attempts = {row}attempts + 1, "
        f"provider = {_value(source, 'provider')}, "
        f"provider_attempt = {_value(source, 'provider_attempt')}, "
        f"route = {_value(source, 'route')}, updated_at = ?"
    )


def start_params(s: StartSend) -> tuple[Any, ...]:
    """The values of :func:`start_set` for ``s`` (before ``updated_at``)."""
    return (s.provider, s.provider_attempt, s.route)


#: finishing sets these to the outcome's values (finish_params gives them in this order)...
_FINISH_NEW = ("state", "next_attempt_at")
#: ...and these only where the outcome has one (a try that failed early learnt no route)
_FINISH_LEARNT = ("provider", "provider_attempt", "route", "provider_message_id", "last_error")


def finish_set(source: str = "", row: str = "") -> str:
    """The SET list writing the outcome of work on a held row and freeing its lease; ``source``
    and ``row`` as for :func:`start_set`."""
    return ", ".join(
        [f"{column} = {_value(source, column)}" for column in _FINISH_NEW]
        + [
            f"{column} = COALESCE({_value(source, column)}, {row}{column})"
            for column in _FINISH_LEARNT
        ]
        + ["lease_owner = NULL", "lease_expires_at = NULL", "updated_at = ?"]
    )


def finish_params(t: Transition, state: State) -> tuple[Any, ...]:
    """The values of :func:`finish_set` (before ``updated_at``) for ``t`` leaving its row in
    ``state``: ``t.state``, unless a receipt moved the row meanwhile."""
    return (
        state.value,
        # a sent row's next attempt is when to look its receipt up if none has come
        t.next_attempt_at if state.waiting or state is State.SENT else None,
        t.provider,
        t.provider_attempt,
        t.route,
        t.provider_message_id,
        t.last_error,
    )


#: start and finish a row by id (the caller has locked it and checked that it holds it): the
#: params are start_params / finish_params, then the time and the id
START = f"UPDATE smsgate_messages SET {start_set()} WHERE id = ?"
FINISH = f"UPDATE smsgate_messages SET {finish_set()} WHERE id = ?"


class Tx(ABC):
    """A cursor inside one transaction (or, for reads, one connection)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; returns its rows (empty for statements without results)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (...)`` for this engine, and its parameters."""


class Where:
    """The conditions of a listing query, joined by AND, and their parameters in order."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *values: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(values)

    def equal(self, column: str, value: Any) -> None:
        """``column = value``, unless ``value`` is None (no filter)."""
        if value is not None:
            self.add(f"{column} = ?", value)

    def before(self, last_id: str | None) -> None:
        """``id < last_id``: the page after one that ended at ``last_id``; no filter for None."""
        if last_id is not None:
            self.add("id < ?", last_id)

    def newest(self, tx: Tx, columns: str, table: str, limit: int) -> list[tuple[Any, ...]]:
        """The rows of ``table`` that match, newest id first, at most ``limit`` of them."""
        sql = f"SELECT {columns} FROM {table}{self.sql} ORDER BY id DESC LIMIT ?"
        return tx.execute(sql, [*self.params, limit])

    def states(self, tx: Tx, states: Iterable[State]) -> None:
        """The message is in one of ``states``: through the partial index on ``listed_state``
        when every one is a listed state (see migration 0010), else on ``state`` (found by id
        order)."""
        values = [s.value for s in states]
        column = "listed_state" if all(v in INDEXED_STATES for v in values) else "state"
        clause, params = tx.in_list(column, values)
        self.add(clause, *params)

    @property
    def sql(self) -> str:
        """`` WHERE a AND b``, or nothing without conditions."""
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


class SqlStore(ABC):
    """Shared behaviour of the SQLite and PostgreSQL stores (see :class:`~.store.Store`)."""

    engine: ClassVar[str]
    #: writes the engine usefully takes at once (how many the worker's committer runs)
    parallel_writes: ClassVar[int] = 4
    migrates_when_new: ClassVar[bool] = False
    skip_locked: ClassVar[str] = ""
    #: the messages' lease queue (the engine makes it: ``self.lease_queue(MESSAGES)``)
    _messages: LeaseQueue

    def __init__(self, url: StoreURL) -> None:
        self.url = url.masked
        self._parsed = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def open_calls(self) -> StoreCalls:
        """The worker's calls, each on a thread of an executor of their own (an engine with a
        faster path overrides this)."""
        executor = ThreadPoolExecutor(self.parallel_writes, thread_name_prefix="smsgate-store")
        return StoreCalls(self, executor, parallel=self.parallel_writes, owns_executor=True)

    # -- engine hooks -------------------------------------------------------------------------

    @abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """A write transaction (serialized with other writers where the engine needs it)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A consistent read."""

    @abstractmethod
    def _migration_lock(self) -> AbstractContextManager[Tx]:
        """A transaction holding the store-wide migration lock."""

    @abstractmethod
    def _version_table_exists(self, tx: Tx) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def lease_queue(self, table: LeasedTable) -> LeaseQueue:
        """The lease-and-claim queue on ``table``, in this engine's flavour (see
        :mod:`smsgate.outbox.leasequeue`)."""

    # -- transactions for tables kept next to the outbox's (the server's) ---------------------

    def write_transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction, queued with the outbox's own writers where the engine serializes
        them (SQLite), committed when the block ends and rolled back if it raises."""
        return self._write()

    def read_transaction(self) -> AbstractContextManager[Tx]:
        """A consistent read."""
        return self._read()

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._read() as tx:
            if not self._version_table_exists(tx):
                return 0
            rows = tx.execute(f"SELECT max(version) FROM {migrations.VERSION_TABLE}")
        return int(rows[0][0] or 0)

    def migrate(self, target: int | None = None) -> list[int]:
        available = migrations.migrations(self.engine)
        target = len(available) if target is None else target
        if not 0 <= target <= len(available):
            raise ValueError(f"target version must be between 0 and {len(available)}")
        applied: list[int] = []
        for migration in available[:target]:
            with self._migration_lock() as tx:
                tx.execute(
                    f"CREATE TABLE IF NOT EXISTS {migrations.VERSION_TABLE} ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                    "applied_at DOUBLE PRECISION NOT NULL)"
                )
                found = tx.execute(
                    f"SELECT 1 FROM {migrations.VERSION_TABLE} WHERE version = ?",
                    (migration.version,),
                )
                if found:
                    continue
                for statement in migration.statements():
                    tx.execute(statement)
                tx.execute(
                    f"INSERT INTO {migrations.VERSION_TABLE} (version, name, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                applied.append(migration.version)
        return applied

    # -- submit -------------------------------------------------------------------------------

    @contextmanager
    def inserter(self, *, atomic: bool) -> Iterator[Inserter]:
        if atomic:
            with self._write() as tx:
                yield _TxInserter(self, tx)
        else:
            yield _BatchInserter(self)

    def _insert(
        self,
        tx: Tx,
        rows: Sequence[NewMessageRow],
        events: Sequence[NewEvent],
        fresh_ids: bool = False,
        screen: Screen | None = None,
    ) -> list[tuple[str, bool] | None]:
        """Insert inside ``tx``. Rows whose idempotency key or id is already stored (or repeated
        in this batch) are not inserted and map to the stored id; of the others, those
        ``screen`` refuses map to None."""
        # Rows may be plain tuples (from a bulk loader's other process): index, don't name.
        keys = [key for key in map(_key, rows) if key is not None]
        if fresh_ids and not keys:
            # nothing to look up or match: every row is new
            refused = self._screened(tx, screen, range(len(rows)))
            if not refused:
                self._append_rows(tx, rows, events)
                return [(row[0], True) for row in rows]
            keep = [i for i in range(len(rows)) if i not in refused]
            if keep:
                self._append_rows(tx, [rows[i] for i in keep], [events[i] for i in keep])
            return [None if i in refused else (row[0], True) for i, row in enumerate(rows)]
        existing: dict[str, str] = {}
        for part in chunks(keys, CHUNK):
            clause, params = tx.in_list("idempotency_key", part)
            for key, message_id in tx.execute(
                f"SELECT idempotency_key, id FROM smsgate_messages WHERE {clause}", params
            ):
                existing[key] = message_id
        # The rows not stored already are the ones to screen: a message sent again is the
        # stored one, whatever has happened since.
        unstored: Sequence[int] = (
            [i for i, row in enumerate(rows) if _key(row) not in existing]
            if existing
            else range(len(rows))
        )
        taken = set() if fresh_ids else self._existing_ids(tx, [_id(rows[i]) for i in unstored])
        if taken:
            unstored = [i for i in unstored if _id(rows[i]) not in taken]
        refused = self._screened(tx, screen, unstored)
        excluded = bool(taken or refused)  # the usual batch: neither, so skip both checks
        results: list[tuple[str, bool] | None] = []
        new_rows: list[NewMessageRow] = []
        new_events: list[NewEvent] = []
        seen_ids: set[str] = set()
        for index, (row, event) in enumerate(zip(rows, events, strict=True)):
            key = _key(row)
            message_id = _id(row)
            if key is not None:
                found = existing.get(key)
                if found is not None:
                    results.append((found, False))
                    continue
            if excluded:
                if message_id in taken:
                    if key is not None:
                        existing[key] = message_id
                    results.append((message_id, False))
                    continue
                if index in refused:
                    results.append(None)
                    continue
            if key is not None:
                existing[key] = message_id
            if message_id in seen_ids:
                results.append((message_id, False))
                continue
            seen_ids.add(message_id)
            new_rows.append(row)
            new_events.append(event)
            results.append((message_id, True))
        if not new_rows:
            return results
        inserted = self._insert_new(tx, new_rows, new_events, fresh_ids)
        if len(inserted) == len(new_rows):
            return results
        # Rows that lost a race with a concurrent submit of the same key (or id) map to the
        # stored message.
        lost_keys = [
            key for row in new_rows if _id(row) not in inserted and (key := _key(row)) is not None
        ]
        winners: dict[str, str] = {}
        for part in chunks(lost_keys, CHUNK):
            clause, params = tx.in_list("idempotency_key", part)
            for key, message_id in tx.execute(
                f"SELECT idempotency_key, id FROM smsgate_messages WHERE {clause}", params
            ):
                winners[key] = message_id
        by_id = {_id(row): row for row in new_rows}
        fixed: list[tuple[str, bool] | None] = []
        for result in results:
            lost = None if result is None else by_id.get(result[0])
            if lost is not None and _id(lost) not in inserted:
                key = _key(lost)
                result = (winners.get(key, _id(lost)) if key is not None else _id(lost), False)
            fixed.append(result)
        return fixed

    def _screened(self, tx: Tx, screen: Screen | None, positions: Sequence[int]) -> Collection[int]:
        """The ``positions`` that ``screen`` refuses, reading the suppression list in ``tx``."""
        if screen is None or not positions:
            return ()
        return screen(positions, partial(self._suppressed, tx))

    def _existing_ids(self, tx: Tx, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in chunks(ids, CHUNK):
            clause, params = tx.in_list("id", part)
            found.update(
                r[0] for r in tx.execute(f"SELECT id FROM smsgate_messages WHERE {clause}", params)
            )
        return found

    def _insert_new(
        self,
        tx: Tx,
        rows: Sequence[NewMessageRow],
        events: Sequence[NewEvent],
        fresh_ids: bool,
    ) -> set[str]:
        """Insert rows none of which was stored when checked; returns the ids inserted. Rows with
        ids made for this insert and no idempotency key cannot collide with anything, even a
        concurrent submit, so they are appended without conflict handling."""
        plain = [i for i, key in enumerate(map(_key, rows)) if key is None] if fresh_ids else []
        if not plain:
            return self._insert_rows(tx, rows, events)
        if len(plain) == len(rows):
            return self._append_rows(tx, rows, events)
        keyed = [i for i, key in enumerate(map(_key, rows)) if key is not None]
        inserted = self._insert_rows(tx, [rows[i] for i in keyed], [events[i] for i in keyed])
        return inserted | self._append_rows(
            tx, [rows[i] for i in plain], [events[i] for i in plain]
        )

    def _append_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        """Insert rows that cannot collide with stored ones; returns their ids. Engines with a
        faster way to append than to insert (PostgreSQL's COPY) override this."""
        return self._insert_rows(tx, rows, events)

    def _insert_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        """Insert rows none of which is stored yet (the caller checked under the write lock);
        returns the ids inserted. Engines without a store-wide write lock override this."""
        tx.executemany(INSERT_MESSAGE, [(*row, row[-1]) for row in rows])
        tx.executemany(INSERT_EVENT, events)
        return {_id(row) for row in rows}

    def _suppressed(self, tx: Tx, recipients: Sequence[str], our_number: str | None) -> set[str]:
        """Those ``recipients`` who opted out of messages from ``our_number`` (None: from any
        number of ours). One statement whatever the count: the numbers travel as one JSON array,
        which the engine unpacks faster than it binds thousands of parameters."""
        sql = (
            "SELECT DISTINCT recipient FROM smsgate_suppressions "
            f"WHERE recipient IN ({_JSON_TEXTS[self.engine]})"
        )
        params: list[Any] = [dumps(list(recipients))]
        if our_number is not None:
            sql += " AND our_number IN (?, ?)"
            params += [our_number, ALL_NUMBERS]
        return {row[0] for row in tx.execute(sql, params)}

    # -- reads --------------------------------------------------------------------------------

    def get(self, message_id: str) -> StoredMessage | None:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM smsgate_messages WHERE id = ?", (message_id,)
            )
        return StoredMessage.from_row(rows[0]) if rows else None

    def events(self, message_id: str) -> list[EventRecord]:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {EVENT_COLUMNS} FROM smsgate_events WHERE message_id = ? ORDER BY id",
                (message_id,),
            )
        return [EventRecord.from_row(row) for row in rows]

    def list_messages(self, query: ListQuery) -> list[StoredMessage]:
        where = Where()
        with self._read() as tx:
            if query.states:
                where.states(tx, query.states)
            where.equal("to_number", query.to)
            if query.since is not None:
                where.add("created_at >= ?", query.since)
            where.before(query.before_id)
            rows = where.newest(tx, MESSAGE_COLUMNS, "smsgate_messages", query.limit)
        return [StoredMessage.from_row(row) for row in rows]

    def counts(self) -> dict[State, int]:
        with self._read() as tx:
            rows = tx.execute("SELECT state, count(*) FROM smsgate_messages GROUP BY state")
        return {State(state): int(n) for state, n in rows}

    def work_left(self) -> tuple[float | None, float | None]:
        with self._read() as tx:
            # a sent row waits for its receipt, not for a worker: its look-up time is not work
            due = tx.execute(
                "SELECT min(next_attempt_at) FROM smsgate_messages "
                "WHERE next_attempt_at IS NOT NULL AND state <> 'sent'"
            )
            leased = tx.execute(
                "SELECT min(lease_expires_at) FROM smsgate_messages "
                "WHERE lease_expires_at IS NOT NULL"
            )
        return due[0][0], leased[0][0]

    # -- retention ----------------------------------------------------------------------------

    def prune(
        self,
        cutoffs: Mapping[State, float],
        events_before: float | None,
        limit: int,
        *,
        dry_run: bool = False,
    ) -> tuple[int, int]:
        if not cutoffs and events_before is None:
            return 0, 0
        aged = " OR ".join("(m.state = ? AND m.updated_at < ?)" for _ in cutoffs) or "1 = 0"
        aged_params: list[Any] = [v for state, at in cutoffs.items() for v in (state.value, at)]
        finals = [state.value for state in FINAL_STATES]
        if dry_run:
            with self._read() as tx:
                final, final_params = tx.in_list("m.state", finals)
                newest = tx.execute(
                    "SELECT message_id FROM smsgate_events ORDER BY id DESC LIMIT 1"
                )
                if newest:  # kept by a real run (see below)
                    aged = f"({aged}) AND m.id <> ?"
                    aged_params.append(newest[0][0])
                messages = tx.execute(
                    f"SELECT count(*) FROM smsgate_messages m WHERE {aged}", aged_params
                )[0][0]
                old = "" if events_before is None else " OR e.at < ?"
                events = tx.execute(
                    "SELECT count(*) FROM smsgate_events e JOIN smsgate_messages m "
                    f"ON m.id = e.message_id WHERE {final} AND (({aged}){old})",
                    [*final_params, *aged_params]
                    + ([] if events_before is None else [events_before]),
                )[0][0]
            return int(messages), int(events)
        messages = events = 0
        with self._write() as tx:
            # SQLite reuses the highest event id once it is deleted, and the change feed's
            # cursors count on ids only growing: the newest event (and its message) stays
            newest = tx.execute("SELECT message_id FROM smsgate_events ORDER BY id DESC LIMIT 1")
            ids = [
                row[0]
                for row in tx.execute(
                    f"SELECT m.id FROM smsgate_messages m WHERE {aged} ORDER BY m.id LIMIT ?"
                    f"{self.skip_locked}",
                    [*aged_params, limit],
                )
                if not newest or row[0] != newest[0][0]
            ]
            if ids:
                clause, params = tx.in_list("message_id", ids)
                events += len(
                    tx.execute(f"DELETE FROM smsgate_events WHERE {clause} RETURNING 1", params)
                )
                clause, params = tx.in_list("id", ids)
                messages = len(
                    tx.execute(f"DELETE FROM smsgate_messages WHERE {clause} RETURNING 1", params)
                )
                forget_parts_in(tx, ids)
            if events_before is not None and messages < limit:
                final, final_params = tx.in_list("m.state", finals)
                events += len(
                    tx.execute(
                        "DELETE FROM smsgate_events WHERE id IN (SELECT e.id FROM smsgate_events e "
                        f"JOIN smsgate_messages m ON m.id = e.message_id WHERE e.at < ? AND {final} "
                        "AND e.id < (SELECT max(id) FROM smsgate_events) ORDER BY e.id LIMIT ?) "
                        "RETURNING 1",
                        [events_before, *final_params, limit - messages],
                    )
                )
        return messages, events

    # -- cancel -------------------------------------------------------------------------------

    def cancel(self, message_id: str, now: float, reason: str) -> tuple[StoredMessage | None, bool]:
        with self._write() as tx:
            row = self._lock_one(tx, message_id)
            if row is None or row.state not in CANCELABLE:
                return row, False
            tx.execute(
                "UPDATE smsgate_messages SET state = ?, next_attempt_at = NULL, lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                (State.CANCELED.value, now, message_id),
            )
            tx.execute(
                INSERT_EVENT,
                NewEvent(
                    message_id, now, row.status.value, Status.CANCELED.value, "cancel", reason
                ),
            )
            after = self._lock_one(tx, message_id)
        return after, True

    def _lock_one(self, tx: Tx, message_id: str) -> StoredMessage | None:
        rows = tx.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM smsgate_messages WHERE id = ?{self._for_update}",
            (message_id,),
        )
        return StoredMessage.from_row(rows[0]) if rows else None

    _for_update: ClassVar[str] = ""

    # -- the worker's side --------------------------------------------------------------------

    @abstractmethod
    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]: ...

    def _held(self, tx: Tx, owner: str, ids: Sequence[str]) -> dict[str, State]:
        """The states of those ``ids`` that ``owner`` holds (locked for this transaction)."""
        held: dict[str, State] = {}
        for part in chunks(ids, CHUNK):
            clause, params = tx.in_list("id", part)
            for message_id, state, lease_owner in tx.execute(
                f"SELECT id, state, lease_owner FROM smsgate_messages WHERE {clause} "
                f"ORDER BY id{self._for_update}",
                params,
            ):
                if lease_owner == owner:
                    held[message_id] = STATES[state]
        return held

    def start(
        self, owner: str, starts: Sequence[StartSend], now: float, lease_until: float
    ) -> set[str]:
        return self.write(owner, starts, (), (), now, lease_until)[0]

    def finish(self, owner: str, transitions: Sequence[Transition], now: float) -> set[str]:
        return self.write(owner, (), transitions, (), now, now)[1]

    def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        """:meth:`start`, :meth:`finish` and :meth:`release` in one transaction (the worker's
        group commit); returns the ids started and the ids finished."""
        if not (starts or transitions or releases):
            return set(), set()
        with self._write() as tx:
            started, finished = self._start_and_finish(
                tx, owner, starts, transitions, now, lease_until
            )
            if releases:
                self._release_in(tx, owner, releases, now)
        return started, finished

    def _start_and_finish(
        self,
        tx: Tx,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        """Inside ``tx``: read (and lock) the rows, then write what still applies to each."""
        if not (starts or transitions):
            return set(), set()
        held = self._held(tx, owner, [s.id for s in starts] + [t.id for t in transitions])
        finished = self._finish_in(tx, held, transitions, now) if transitions else set()
        started = self._start_in(tx, held, starts, now, lease_until) if starts else set()
        return started, finished

    def _start_in(
        self,
        tx: Tx,
        held: dict[str, State],
        starts: Sequence[StartSend],
        now: float,
        lease_until: float,
    ) -> set[str]:
        go = [s for s in starts if held.get(s.id) in WAITING]
        if go:
            tx.executemany(START, [(*start_params(s), now, s.id) for s in go])
            tx.executemany(INSERT_EVENT, [s.event for s in go])
        return {s.id for s in go}

    def _finish_in(
        self, tx: Tx, held: dict[str, State], transitions: Sequence[Transition], now: float
    ) -> set[str]:
        updates: list[tuple[Any, ...]] = []
        events: list[NewEvent] = []
        with_ids: list[tuple[str, str]] = []
        for t in transitions:
            current = held.get(t.id)
            if current is None:
                continue
            event = t.event
            state = merge_state(current, t.state, as_seen=current.status.value == event.from_status)
            if state is not t.state or current.status.value != event.from_status:
                reason = event.reason or ""
                if state is not t.state:
                    reason += f" (a receipt had already moved it to {state.status})"
                event = event._replace(
                    from_status=current.status.value, to_status=state.status.value, reason=reason
                )
            events.append(event)
            updates.append((*finish_params(t, state), now, t.id))
            if t.provider_message_id is not None and t.provider is not None:
                with_ids.append((t.provider, t.provider_message_id))
        if updates:
            tx.executemany(FINISH, updates)
            tx.executemany(INSERT_EVENT, events)
            record_parts_in(tx, parts_of([t for t in transitions if t.id in held]))
        if with_ids:
            self._apply_pending(tx, with_ids, now)
        return {u[-1] for u in updates}

    def renew(self, owner: str, ids: Sequence[str], lease_until: float) -> set[str]:
        if not ids:
            return set()
        with self._write() as tx:
            return self._messages.renew(tx, owner, ids, lease_until)

    def release(self, owner: str, ids: Sequence[str], now: float) -> int:
        if not ids:
            return 0
        with self._write() as tx:
            return self._release_in(tx, owner, ids, now)

    def _wake_workers(self, tx: Tx) -> None:  # noqa: B027 - an optional hook
        """Tell the workers listening that messages became due (when ``tx`` commits); an
        engine without notifications does nothing: its workers poll."""

    def _release_in(self, tx: Tx, owner: str, ids: Sequence[str], now: float) -> int:
        count = len(self._messages.release(tx, owner, ids, now))
        if count:
            self._wake_workers(tx)
        return count

    # -- receipts -----------------------------------------------------------------------------

    def record_receipt(self, receipt: Receipt, now: float) -> tuple[ReceiptOutcome, str | None]:
        with self._write() as tx:
            return self._record_receipt_in(tx, receipt, now)

    def record_receipts(
        self, receipts: Sequence[Receipt], now: float
    ) -> list[tuple[ReceiptOutcome, str | None]]:
        """:meth:`record_receipt` for each of ``receipts`` in order, in one transaction (one
        commit, one disk sync): a later receipt sees what an earlier one stored, so the same
        event key twice is a duplicate the second time, as it is in two transactions. If any
        of them fails, none is stored."""
        with self._write() as tx:
            return [self._record_receipt_in(tx, receipt, now) for receipt in receipts]

    def _record_receipt_in(
        self, tx: Tx, receipt: Receipt, now: float
    ) -> tuple[ReceiptOutcome, str | None]:
        if tx.execute(
            "SELECT 1 FROM smsgate_events WHERE event_key = ?", (receipt.event_key,)
        ) or tx.execute(
            "SELECT 1 FROM smsgate_pending_receipts WHERE event_key = ?", (receipt.event_key,)
        ):
            return ReceiptOutcome.DUPLICATE, None
        row = None
        if receipt.message_id is not None:
            row = self._lock_one(tx, receipt.message_id)
        if row is None:
            found = tx.execute(
                "SELECT id FROM smsgate_messages WHERE provider_message_id = ? AND provider = ?",
                (receipt.provider_message_id, receipt.provider),
            )
            row = self._lock_one(tx, found[0][0]) if found else None
        if row is None:
            tx.execute(
                "INSERT INTO smsgate_pending_receipts (event_key, provider, provider_message_id, "
                "status, at, reason, raw, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.event_key,
                    receipt.provider,
                    receipt.provider_message_id,
                    receipt.status.value,
                    receipt.at,
                    receipt.reason,
                    receipt.raw,
                    now,
                ),
            )
            return ReceiptOutcome.PENDING, None
        return self._apply_receipt(tx, row, receipt, now), row.id

    def _apply_receipt(
        self, tx: Tx, row: StoredMessage, receipt: Receipt, now: float
    ) -> ReceiptOutcome:
        target = receipt_target(row.state, receipt.status)
        source = f"webhook:{receipt.provider}"
        if target is None:
            reason = f"{receipt.status} receipt does not move a {row.status} message"
            if receipt.reason:
                reason += f" ({receipt.reason})"
            tx.execute(
                INSERT_EVENT,
                NewEvent(
                    row.id,
                    receipt.at,
                    row.status.value,
                    row.status.value,
                    source,
                    reason,
                    receipt.provider,
                    None,
                    receipt.event_key,
                    receipt.raw,
                ),
            )
            return ReceiptOutcome.STALE
        # A receipt proves the provider has the message: nothing is left for a worker to do,
        # except a worker in the middle of sending it, which keeps its lease to record the result.
        keep_lease = row.state is State.SENDING
        tx.execute(
            "UPDATE smsgate_messages SET state = ?, next_attempt_at = NULL, "
            "provider_message_id = COALESCE(provider_message_id, ?), "
            "provider = COALESCE(provider, ?), "
            + ("" if keep_lease else "lease_owner = NULL, lease_expires_at = NULL, ")
            + "updated_at = ? WHERE id = ?",
            (target.value, receipt.provider_message_id, receipt.provider, now, row.id),
        )
        reason = f"{receipt.provider} reports {receipt.status}"
        if receipt.reason:
            reason += f": {receipt.reason}"
        tx.execute(
            INSERT_EVENT,
            NewEvent(
                row.id,
                receipt.at,
                row.status.value,
                target.status.value,
                source,
                reason,
                receipt.provider,
                None,
                receipt.event_key,
                receipt.raw,
            ),
        )
        return ReceiptOutcome.APPLIED

    def _apply_pending(self, tx: Tx, pairs: Sequence[tuple[str, str]], now: float) -> None:
        if not tx.execute("SELECT 1 FROM smsgate_pending_receipts LIMIT 1"):
            return
        wanted = set(pairs)
        pending: list[Receipt] = []
        for part in chunks([pmid for _, pmid in pairs], CHUNK):
            clause, params = tx.in_list("provider_message_id", part)
            for key, provider, pmid, status, at, reason, raw in tx.execute(
                "SELECT event_key, provider, provider_message_id, status, at, reason, raw "
                f"FROM smsgate_pending_receipts WHERE {clause} ORDER BY at",
                params,
            ):
                if (provider, pmid) in wanted:
                    pending.append(
                        Receipt(provider, pmid, Status(status), key, at, None, reason, raw)
                    )
        for receipt in pending:
            found = tx.execute(
                "SELECT id FROM smsgate_messages WHERE provider_message_id = ? AND provider = ?",
                (receipt.provider_message_id, receipt.provider),
            )
            row = self._lock_one(tx, found[0][0]) if found else None
            if row is not None:
                self._apply_receipt(tx, row, receipt, now)
                tx.execute(
                    "DELETE FROM smsgate_pending_receipts WHERE event_key = ?", (receipt.event_key,)
                )

    def pending_receipts(self) -> int:
        with self._read() as tx:
            rows = tx.execute("SELECT count(*) FROM smsgate_pending_receipts")
        return int(rows[0][0])

    # -- rate-limit buckets -------------------------------------------------------------------

    def take_tokens(self, specs: Sequence[BucketSpec], n: int, now: float) -> float:
        if not specs:
            return 0.0
        with self._write() as tx:
            states = self._bucket_states(tx, specs)
            new_states, wait = take_all(states, specs, n, now)
            self._save_buckets(tx, specs, new_states)
        return wait

    def take_tokens_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        if not specs:
            return wanted, 0.0
        with self._write() as tx:
            states = self._bucket_states(tx, specs)
            new_states, granted, wait = take_up_to(states, specs, wanted, now)
            self._save_buckets(tx, specs, new_states)
        return granted, wait

    def penalize_bucket(self, spec: BucketSpec, seconds: float, now: float) -> None:
        with self._write() as tx:
            (state,) = self._bucket_states(tx, [spec])
            self._save_buckets(tx, [spec], [penalize_state(state, spec, seconds, now)])

    def bucket_state(self, key: str) -> BucketState | None:
        with self._read() as tx:
            rows = tx.execute(
                "SELECT tokens, updated_at FROM smsgate_rate_buckets WHERE key = ?", (key,)
            )
        return BucketState(float(rows[0][0]), float(rows[0][1])) if rows else None

    def _bucket_states(self, tx: Tx, specs: Sequence[BucketSpec]) -> list[BucketState | None]:
        # Lock rows in key order so concurrent takers of overlapping buckets cannot deadlock.
        ordered = sorted({spec.key for spec in specs})
        self._ensure_buckets(tx, ordered)
        clause, params = tx.in_list("key", ordered)
        found = {
            key: BucketState(float(tokens), float(updated_at))
            for key, tokens, updated_at in tx.execute(
                f"SELECT key, tokens, updated_at FROM smsgate_rate_buckets WHERE {clause} "
                f"ORDER BY key{self._for_update}",
                params,
            )
            if updated_at is not None
            and tokens is not None
            and not _is_placeholder(tokens, updated_at)
        }
        return [found.get(spec.key) for spec in specs]

    def _ensure_buckets(self, tx: Tx, keys: Sequence[str]) -> None:  # noqa: B027
        """Create missing bucket rows (as placeholders) so they can be locked; an engine whose
        write transactions are serialized (SQLite) needs nothing here."""

    def _save_buckets(
        self, tx: Tx, specs: Sequence[BucketSpec], states: Sequence[BucketState]
    ) -> None:
        tx.executemany(
            "INSERT INTO smsgate_rate_buckets (key, tokens, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
            "updated_at = excluded.updated_at",
            [
                (spec.key, state.tokens, state.updated_at)
                for spec, state in zip(specs, states, strict=True)
            ],
        )


#: a bucket row created only to be locked has never been filled: updated_at below zero
_PLACEHOLDER_TIME = -1.0


def _is_placeholder(tokens: float, updated_at: float) -> bool:
    return float(updated_at) == _PLACEHOLDER_TIME


class _BatchInserter:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def insert(
        self,
        rows: Sequence[NewMessageRow],
        events: Sequence[NewEvent],
        *,
        fresh_ids: bool = False,
        screen: Screen | None = None,
    ) -> list[tuple[str, bool] | None]:
        with self._store._write() as tx:
            return self._store._insert(tx, rows, events, fresh_ids, screen)


class _TxInserter:
    def __init__(self, store: SqlStore, tx: Tx) -> None:
        self._store = store
        self._tx = tx

    def insert(
        self,
        rows: Sequence[NewMessageRow],
        events: Sequence[NewEvent],
        *,
        fresh_ids: bool = False,
        screen: Screen | None = None,
    ) -> list[tuple[str, bool] | None]:
        return self._store._insert(self._tx, rows, events, fresh_ids, screen)


def as_sql_store(store: object) -> SqlStore | None:
    """``store`` as the SQL store the tables beside the outbox's live in (see
    docs/architecture.md, *Layers*), or None for an engine without them."""
    return store if isinstance(store, SqlStore) else None


def sql_store(store: object, needs: str) -> SqlStore:
    """:func:`as_sql_store`, or a :class:`ConfigError` naming the store for ``needs`` (who
    asked: "the console", "verify")."""
    found = as_sql_store(store)
    if found is None:
        raise ConfigError(f"{needs} needs a SQL store (sqlite:// or postgresql://)", field="store")
    return found


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
