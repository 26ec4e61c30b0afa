"""The embedded store: one SQLite file in WAL mode, shared by the API and local workers.

Connections come from a small pool of this module's own (the standard library has none, and
SQLAlchemy's would bring all of SQLAlchemy for one class): a thread borrows one for the length of
a store call and gives it back, so the number open stays at most ``pool_size`` however many
threads come and go (an ASGI server's thread pool starts and ends threads all the time), and a
connection idle for ``idle_timeout`` seconds is closed. Every write is a ``BEGIN IMMEDIATE`` transaction, so writers
queue on SQLite's single write lock and a claim is a single-writer ``UPDATE ... RETURNING``: two
workers (threads or processes) can never claim the same row. Readers never block writers (WAL).

URL options: ``sqlite:///path.db?synchronous=normal`` trades durability on power loss for speed
(the default ``full`` syncs the WAL at every commit that records something: a message, a send
about to be made, an outcome, an event; an application crash loses nothing either way),
``?busy_timeout=30`` is how long a writer waits for the lock, in seconds, ``?pool_size=16`` the
most connections open at once, ``?idle_timeout=60`` how long an unused one stays open (seconds).

A worker's claim is the one commit that does not wait for the disk. It is only a lease: a
claim that a power cut undoes leaves its rows due, exactly as if it had never been made, and
nothing can have been sent on it, because a send is first recorded by a commit that does wait
(and that sync makes the claim before it durable too).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.outbox.leasequeue import MESSAGES, LeasedTable, LeaseQueue
from smsgate.outbox.sql import (
    FINISH,
    INSERT_EVENT,
    INSERT_MESSAGE,
    START,
    SqlStore,
    Tx,
    finish_params,
    start_params,
    status_if_sql,
)
from smsgate.outbox.store import (
    REPLACEABLE,
    WAITING,
    Claimed,
    NewEvent,
    NewMessageRow,
    StartSend,
    StoreCalls,
    StoredMessage,
    StoreURL,
    Transition,
)
from smsgate.outbox.tables.message_parts import parts_of, record_parts_in

T = TypeVar("T")


class StoreBusy(Exception):
    """Another connection holds SQLite's write lock (see :meth:`SqliteStore.call_now`)."""


_ROWS_PER_STATEMENT = 25


def _multi(single: str, width: int) -> str:
    head = single.split(" VALUES ")[0]
    group = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([group] * _ROWS_PER_STATEMENT)}"


_MESSAGE_MULTI = _multi(INSERT_MESSAGE, 12)
_EVENT_MULTI = _multi(INSERT_EVENT, 10)


def _insert_multi(tx: Tx, single: str, multi: str, rows: Sequence[Sequence[Any]]) -> None:
    size = _ROWS_PER_STATEMENT
    full = len(rows) // size * size
    if full:
        tx.executemany(
            multi,
            [
                tuple(itertools.chain.from_iterable(rows[i : i + size]))
                for i in range(0, full, size)
            ],
        )
    if full < len(rows):
        tx.executemany(single, rows[full:])


# The worker's usual write: starts of rows it holds in a waiting state, outcomes of rows it
# holds in the state it saw them in. Each statement changes a row only if that is so.
# Their params: those of START and FINISH, then the owner (and the status the worker saw).
_START_HELD = f"{START} AND lease_owner = ? AND {status_if_sql('state', WAITING)} IS NOT NULL"
_FINISH_HELD = f"{FINISH} AND lease_owner = ? AND {status_if_sql('state', REPLACEABLE)} = ?"


def _positive(options: dict[str, str], name: str, default: float, unit: str) -> float:
    """Pop option ``name``: a positive number (else a ConfigError naming it and its unit)."""
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(
            f"sqlite store option {name}={raw!r} must be a positive number of {unit}",
            field="store",
        )
    return value


_SYNC = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA", "off": "OFF"}


def _enable_wal(conn: sqlite3.Connection, patience: float) -> None:
    """Switch a (new) database to WAL. Changing the journal mode needs the database to itself,
    and SQLite answers "locked" at once instead of waiting when another connection opens the new
    file at the same moment: retry for a while."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(0.1, delay * 2)


class _Borrowed:
    """The connection a thread holds, and how many nested store calls on it are under way."""

    __slots__ = ("conn", "depth")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.depth = 1


class _Pool:
    """At most ``size`` connections to one file, each lent to one thread at a time.

    A thread's nested calls (a write inside :meth:`SqliteStore.call_now`, a migration inside
    its lock) get the connection it already holds. Idle connections are kept most recently used
    first, so a steady load reuses a few of them and the rest reach ``idle_timeout`` and are
    closed. A connection is only ever closed by the thread returning it or, when idle, by
    whoever holds the pool's lock: closing one while another thread is inside a call on it
    crashes the interpreter.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        size: int,
        idle_timeout: float,
        wait: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._connect = connect
        self.size = size
        self._idle_timeout = idle_timeout
        self._wait = wait
        self._monotonic = monotonic
        self._cond = threading.Condition(threading.Lock())
        #: (connection, when it was given back), most recently given back last
        self._idle: list[tuple[sqlite3.Connection, float]] = []
        self._open = 0
        self._local = threading.local()
        self.closed = False

    @property
    def open_count(self) -> int:
        """Connections open now, lent or idle."""
        return self._open

    def held(self) -> sqlite3.Connection | None:
        """The connection this thread holds, if it is inside a store call."""
        borrowed: _Borrowed | None = getattr(self._local, "borrowed", None)
        return borrowed.conn if borrowed is not None else None

    @contextmanager
    def connection(self, *, block: bool = True) -> Iterator[sqlite3.Connection]:
        """Lend a connection for the block. ``block=False``: raise :class:`StoreBusy` at once
        instead of waiting when all of them are lent."""
        borrowed: _Borrowed | None = getattr(self._local, "borrowed", None)
        if borrowed is not None:
            borrowed.depth += 1
            try:
                yield borrowed.conn
            finally:
                borrowed.depth -= 1
            return
        conn = self._take(block)
        self._local.borrowed = _Borrowed(conn)
        try:
            yield conn
        finally:
            self._local.borrowed = None
            self._give_back(conn)

    def _take(self, block: bool) -> sqlite3.Connection:
        deadline = self._monotonic() + self._wait
        with self._cond:
            while True:
                if self.closed:
                    raise RuntimeError("the outbox store is closed")
                self._close_stale()
                if self._idle:
                    return self._idle.pop()[0]
                if self._open < self.size:
                    self._open += 1
                    break
                left = deadline - self._monotonic()
                if not block:
                    raise StoreBusy(f"all {self.size} connections to the store are in use")
                if left <= 0:
                    raise sqlite3.OperationalError(
                        f"all {self.size} connections to the SQLite store stayed in use for "
                        f"{self._wait:g} s; raise ?pool_size= or lower the load"
                    )
                self._cond.wait(min(left, 1.0))
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._cond:
            if self.closed or conn.in_transaction:
                # a store call that failed half-way could leave a transaction open: never lend
                # that connection again
                self._open -= 1
                self._close(conn)
            else:
                self._idle.append((conn, self._monotonic()))
                self._close_stale()
            self._cond.notify()

    def _close_stale(self) -> None:
        """Close the idle connections unused for ``idle_timeout`` (caller holds the lock)."""
        limit = self._monotonic() - self._idle_timeout
        stale = 0
        while stale < len(self._idle) and self._idle[stale][1] <= limit:
            stale += 1
        if stale:
            old, self._idle = self._idle[:stale], self._idle[stale:]
            self._open -= len(old)
            for conn, _ in old:
                self._close(conn)

    @staticmethod
    def _close(conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        """Close the idle connections now and every lent one when it is given back."""
        with self._cond:
            self.closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            for conn, _ in idle:
                self._close(conn)
            self._cond.notify_all()


class _SqliteTx(Tx):
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.executemany(sql, rows)

    def changes(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` for each of ``rows``; returns how many table rows it changed in all."""
        return self._conn.executemany(sql, rows).rowcount if rows else 0

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)


class _SqliteCalls(StoreCalls):
    """The worker's calls on its event loop itself while SQLite's lock is free (see
    :meth:`SqliteStore.call_now`), else on the executor's thread, where they may wait."""

    def __init__(self, store: SqliteStore, executor: Executor) -> None:
        super().__init__(store, executor, parallel=1, owns_executor=True)
        self._sqlite = store
        self._busy = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._busy:
            try:
                return self._sqlite.call_now(fn, *args)
            except StoreBusy:
                self._busy = True
        try:
            return await super().call(fn, *args)
        finally:
            self._busy = False


class SqliteStore(SqlStore):
    engine: ClassVar[str] = "sqlite"
    parallel_writes: ClassVar[int] = 1  # one writer at a time anyway
    migrates_when_new: ClassVar[bool] = True  # a new file is the user's first run

    def __init__(self, url: StoreURL, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(url)
        self._messages = self.lease_queue(MESSAGES)
        self.path = url.path
        options = dict(url.options)
        sync = options.pop("synchronous", "full").lower()
        if sync not in _SYNC:
            raise ConfigError(
                f"sqlite store option synchronous={sync!r} must be one of {', '.join(_SYNC)}",
                field="store",
            )
        self._synchronous = _SYNC[sync]
        try:
            self._busy_timeout = float(options.pop("busy_timeout", "30"))
        except ValueError:
            raise ConfigError(
                "sqlite store option busy_timeout must be seconds", field="store"
            ) from None
        pool_size = max(1, int(_positive(options, "pool_size", 16, "connections")))
        idle_timeout = _positive(options, "idle_timeout", 60.0, "seconds")
        if options:
            raise ConfigError(
                f"unknown sqlite store option(s) {', '.join(sorted(options))}; "
                "known: synchronous, busy_timeout, pool_size, idle_timeout",
                field="store",
            )
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ConfigError(
                f"the folder of the sqlite store {self.path!r} does not exist; create {folder}",
                field="store",
            )
        if sqlite3.sqlite_version_info < (3, 35):
            raise ConfigError(
                f"the sqlite store needs SQLite 3.35 or later (this Python has "
                f"{sqlite3.sqlite_version}); use a newer Python or the postgresql store",
                field="store",
            )
        # Writers of one process queue here rather than in SQLite's busy handler, which sleeps
        # 1-100 ms between tries; re-entrant because migrations write inside their lock.
        self._writer = threading.RLock()
        self._pool = _Pool(
            self._open_connection,
            size=pool_size,
            idle_timeout=idle_timeout,
            wait=self._busy_timeout,
            monotonic=clock.monotonic,
        )

    def _open_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            _enable_wal(conn, self._busy_timeout)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA cache_size=-16384")
            conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def open_connections(self) -> int:
        """Connections open now (lent to a store call or idle in the pool)."""
        return self._pool.open_count

    def close(self) -> None:
        """Close every connection: the idle ones now, one still in a call when the call ends
        (closing it under another thread's call crashes the interpreter). A write under way is
        waited for (it holds the writer lock, and none starts after this)."""
        with self._writer:
            self._pool.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[Tx]:
        """A write transaction. ``durable=False``: its commit does not wait for the disk, so a
        power cut may undo it; the next durable commit makes it durable too (it syncs the WAL)."""
        relaxed = not durable and self._synchronous != "OFF"
        with self._pool.connection() as conn, self._writer:
            if self._pool.closed:  # another thread closed the store while this one waited
                raise RuntimeError("the outbox store is closed")
            if relaxed:  # SQLite takes this only outside a transaction
                conn.execute("PRAGMA synchronous = OFF")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    # a failed commit (a full disk, an I/O error) may leave the transaction open
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if relaxed:
                    conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._pool.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield _SqliteTx(conn)
            finally:
                conn.execute("COMMIT")

    _migration_lock = _write

    async def open_calls(self) -> StoreCalls:
        return _SqliteCalls(self, ThreadPoolExecutor(1, thread_name_prefix="smsgate-store"))

    def call_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on this thread unless the store is locked by another writer.

        The worker calls the store from its event loop this way: a SQLite transaction is a
        millisecond of CPU, far less than handing it to a thread whose every statement must win
        the GIL back from the busy loop. Handing the thread only the commit (the disk sync, one
        GIL hand-off) does not pay either: a busy loop releases the GIL at every callback but
        takes it straight back, so the thread waited milliseconds for it after a sync of a
        fraction of one, and the sends waiting for that commit waited with it.

        If another connection holds the write lock for more than a moment, or every connection
        of the pool is lent, :class:`StoreBusy` is raised (before anything was written) and the caller runs ``fn`` on a thread
        instead, where it may wait.
        """
        with self._pool.connection(block=False) as conn:
            conn.execute("PRAGMA busy_timeout = 20")
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(str(exc)) from None
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _insert_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        # Many rows per statement: a fifth less work per row than one statement per row.
        _insert_multi(tx, INSERT_MESSAGE, _MESSAGE_MULTI, [(*row, row[-1]) for row in rows])
        _insert_multi(tx, INSERT_EVENT, _EVENT_MULTI, events)
        return {row[0] for row in rows}

    def _version_table_exists(self, tx: Tx) -> bool:
        return bool(
            tx.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'smsgate_schema_version'"
            )
        )

    def lease_queue(self, table: LeasedTable) -> LeaseQueue:
        return LeaseQueue(table)

    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        if limit < 1:
            return []
        # A claim is only a lease: one that a power cut undoes leaves the rows due, as if it
        # had never been made, and nothing was sent on it (a send is recorded first, durably).
        with self._write(durable=False) as tx:
            taken = self._messages.claim(tx, owner, limit, now, lease_until, take_over=take_over)
        claimed = [Claimed(StoredMessage.from_row(t.row), t.previous_owner) for t in taken]
        claimed.sort(key=lambda c: c.row.id)
        return claimed

    def _start_and_finish(
        self,
        tx: Tx,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        # Almost always every row is as the worker left it: write on that assumption, without
        # reading the rows first, and take the general path only if a statement missed a row.
        assert isinstance(tx, _SqliteTx)
        tx.execute("SAVEPOINT smsgate_worker_write")
        to_start = [(*start_params(s), now, s.id, owner) for s in starts]
        to_finish = [
            (*finish_params(t, t.state), now, t.id, owner, t.event.from_status) for t in transitions
        ]
        if tx.changes(_START_HELD, to_start) == len(starts) and tx.changes(
            _FINISH_HELD, to_finish
        ) == len(transitions):
            tx.executemany(INSERT_EVENT, [s.event for s in starts] + [t.event for t in transitions])
            record_parts_in(tx, parts_of(transitions))
            with_ids = [
                (t.provider, t.provider_message_id)
                for t in transitions
                if t.provider is not None and t.provider_message_id is not None
            ]
            if with_ids:
                self._apply_pending(tx, with_ids, now)
            tx.execute("RELEASE smsgate_worker_write")
            return {s.id for s in starts}, {t.id for t in transitions}
        tx.execute("ROLLBACK TO smsgate_worker_write")
        tx.execute("RELEASE smsgate_worker_write")
        return super()._start_and_finish(tx, owner, starts, transitions, now, lease_until)
