"""The PostgreSQL store: many workers on many hosts share one database.

Claims lock rows with ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint batches
without waiting for each other; every other multi-row write locks its rows in id order. A batch
of new messages is one ``INSERT ... SELECT FROM jsonb_array_elements(...) ON CONFLICT DO
NOTHING``, which is also what makes concurrent submits of one idempotency key safe: the loser
waits for the winner's commit and then maps to its row; messages that cannot collide (ids made
for them, no idempotency key) are appended with ``COPY``.

URL: ``postgresql://user:password@host:5432/dbname``; smsgate's own options, removed before the
URL reaches libpq: ``schema=NAME`` (tables live in that schema, created by ``db upgrade``) and
``pool_size=N`` (connections per process, default 10). Every other query parameter is libpq's.
"""

# ruff: noqa: S608 -- statements interpolate only column lists, engine fragments and placeholder
# lists built here, never values; every value is a bound parameter

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from smsgate.errors import ConfigError
from smsgate.outbox.leasequeue import MESSAGES, LeasedTable, LeaseQueue, Taken
from smsgate.outbox.sql import (
    CHUNK,
    SqlStore,
    Tx,
    finish_params,
    finish_set,
    start_params,
    start_set,
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
    dumps,
)
from smsgate.outbox.tables.message_parts import split_parted

logger = logging.getLogger("smsgate.store")

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK_KEY = 0x5356_6174  # "smsgate" migrations: one advisory lock per database
_WAITING = sorted(state.value for state in WAITING)
# Starts, outcomes and their events in one statement. Only rows still held by the writer and in
# the state the worker saw them in are touched; the caller finishes the others the general way.
# Each list travels as one JSON array: the JSON encoder builds it in C, where psycopg would adapt
# array parameters element by element in Python. The ids come once more as an array, so that
# the planner looks the rows up by primary key (it takes a JSON array for 100 rows, and would
# rather scan the table).
_FAST_WRITE = f"""
WITH s_in AS (
    SELECT r->>0 AS provider, (r->>1)::int AS provider_attempt, r->>2 AS route, r->>3 AS id
    FROM jsonb_array_elements(?::jsonb) AS r
), started AS (
    UPDATE smsgate_messages m SET {start_set("s_in.", "m.")}
    FROM s_in WHERE m.id = ANY(?::text[]) AND m.id = s_in.id AND m.lease_owner = ?
        AND m.state = ANY(?)
    RETURNING m.id
), f_in AS (
    SELECT r->>0 AS state, (r->>1)::float8 AS next_attempt_at, r->>2 AS provider,
           (r->>3)::int AS provider_attempt, r->>4 AS route, r->>5 AS provider_message_id,
           r->>6 AS last_error, r->>7 AS id, r->>8 AS from_status
    FROM jsonb_array_elements(?::jsonb) AS r
), finished AS (
    UPDATE smsgate_messages m SET {finish_set("f_in.", "m.")}
    FROM f_in WHERE m.id = ANY(?::text[]) AND m.id = f_in.id AND m.lease_owner = ?
        AND {status_if_sql("m.state", REPLACEABLE)} = f_in.from_status
    RETURNING m.id
), written AS (
    INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, reason,
                                provider, attempt, event_key, raw)
    SELECT r->>0, (r->>1)::float8, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::int, r->>8,
           r->>9
    FROM jsonb_array_elements(?::jsonb) AS r
    WHERE r->>0 IN (SELECT id FROM started UNION ALL SELECT id FROM finished)
)
SELECT 's', id FROM started
UNION ALL SELECT 'f', id FROM finished
UNION ALL SELECT 'p', NULL WHERE EXISTS (SELECT 1 FROM smsgate_pending_receipts)
"""


#: workers LISTEN here; the payload is the schema whose messages became due (so stores in
#: other schemas of the same database ignore it)
NOTIFY_CHANNEL = "smsgate_due"
_NOTIFY_DUE = f"SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"

_MESSAGE_INSERT_COLUMNS = (
    "id, state, purpose, to_number, sender, idempotency_key, payload, send_at, expires_at, "
    "next_attempt_at, created_at, updated_at"
)
_EVENT_INSERT_COLUMNS = (
    "message_id, at, from_status, to_status, source, reason, provider, attempt, event_key, raw"
)
_MESSAGE_INSERT_TYPES = ("text",) * 7 + ("float8",) * 5
_EVENT_INSERT_TYPES = ("text", "float8", *("text",) * 5, "int4", "text", "text")
# New messages (a JSON array of NewMessageRow) and their events (of NewEvent): the messages
# whose id or idempotency key is stored already are left out, with their events.
_INSERT_JSON = f"""
WITH m AS (
    INSERT INTO smsgate_messages ({_MESSAGE_INSERT_COLUMNS})
    SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::float8, (r->>8)::float8,
           (r->>9)::float8, (r->>10)::float8, (r->>10)::float8
    FROM jsonb_array_elements(?::jsonb) AS r
    ON CONFLICT DO NOTHING RETURNING id
), e AS (
    INSERT INTO smsgate_events ({_EVENT_INSERT_COLUMNS})
    SELECT x->>0, (x->>1)::float8, x->>2, x->>3, x->>4, x->>5, x->>6, (x->>7)::int, x->>8, x->>9
    FROM jsonb_array_elements(?::jsonb) AS x JOIN m ON m.id = x->>0
)
SELECT id FROM m
UNION ALL SELECT NULL FROM (
    SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema()) FROM (SELECT 1 FROM m LIMIT 1) AS one
) AS woke
"""


def _text_array(values: Sequence[str]) -> str | list[str]:
    """``values`` for a ``?::text[]`` parameter, as the array's literal built in one join:
    psycopg adapts a list element by element in Python, about a microsecond per id, which the
    worker would pay twice per message. An id with a quote or a backslash (smsgate makes
    none; one written by hand) goes as a list, which psycopg quotes."""
    if not values:
        return "{}"
    joined = '","'.join(values)
    if "\\" in joined or joined.count('"') != 2 * (len(values) - 1):
        return list(values)
    return '{"' + joined + '"}'


def _fast_write_params(
    owner: str, starts: Sequence[StartSend], transitions: Sequence[Transition], now: float
) -> tuple[Any, ...]:
    """The parameters of ``_FAST_WRITE``: the rows of s_in and f_in are start_params and
    finish_params, then the id (and the status the worker saw)."""
    return (
        dumps([(*start_params(s), s.id) for s in starts]),
        now,
        _text_array([s.id for s in starts]),
        owner,
        _WAITING,
        dumps([(*finish_params(t, t.state), t.id, t.event.from_status) for t in transitions]),
        now,
        _text_array([t.id for t in transitions]),
        owner,
        dumps([s.event for s in starts] + [t.event for t in transitions]),
    )


def _by_id(claimed: Claimed) -> str:
    return claimed.row.id


def _after_fast_write(
    transitions: Sequence[Transition], rows: Sequence[tuple[Any, ...]]
) -> tuple[set[str], set[str], list[Transition], list[tuple[str, str]]]:
    """From ``_FAST_WRITE``'s rows: the ids started, the ids finished, the transitions left
    for the general path, and (when receipts are pending) the provider ids to apply them to."""
    started = {i for kind, i in rows if kind == "s"}
    finished = {i for kind, i in rows if kind == "f"}
    pending = ("p", None) in rows  # compared in C, not a generator step per row
    rest = [t for t in transitions if t.id not in finished]
    with_ids = (
        [
            (t.provider, t.provider_message_id)
            for t in transitions
            if t.id in finished and t.provider and t.provider_message_id
        ]
        if pending
        else []
    )
    return started, finished, rest, with_ids


class PgLeaseQueue(LeaseQueue):
    """The lease queue on PostgreSQL: claimers lock the rows they take with ``FOR UPDATE SKIP
    LOCKED``, so concurrent workers take disjoint batches without waiting for each other, and a
    take over is one statement that returns each row's previous owner."""

    def __init__(self, table: LeasedTable) -> None:
        super().__init__(table)
        t = table.name
        due_if = f" AND {table.due_if}" if table.due_if else ""
        returned = ", ".join(f"m.{c.strip()}" for c in table.columns.split(","))
        # The claim updates the row versions its CTE locked, by their ctid (a TID scan, no
        # second walk down the primary key; joined to a list of ids instead, the planner may
        # hash the whole table). A version the lock found newer than the statement's snapshot
        # (a concurrent release made the row due again) is not updated: the row stays due for
        # the next claim.
        self.claim_due_sql = (
            f"WITH due AS (SELECT ctid FROM {t} WHERE next_attempt_at <= ?{due_if} "
            "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) "
            f"UPDATE {t} m SET lease_owner = ?, lease_expires_at = ?, "
            "next_attempt_at = NULL, updated_at = ? "
            "WHERE m.ctid = ANY(ARRAY(SELECT ctid FROM due)) "
            f"RETURNING {returned}"
        )
        self.take_over_sql = (
            f"WITH expired AS (SELECT id, lease_owner AS previous FROM {t} "
            f"WHERE lease_expires_at < ? AND {table.takeable} "
            "ORDER BY lease_expires_at LIMIT ? FOR UPDATE SKIP LOCKED) "
            f"UPDATE {t} m SET lease_owner = ?, lease_expires_at = ?, "
            "next_attempt_at = NULL, updated_at = ? WHERE m.id = ANY(ARRAY(SELECT id FROM expired)) "
            f"RETURNING (SELECT previous FROM expired WHERE expired.id = m.id), {returned}"
        )
        self.drop_stale_all_sql = (
            f"{self.drop_stale_sql} WHERE id = ANY(ARRAY(SELECT id FROM {t} WHERE "
            f"lease_expires_at < ? AND NOT ({table.takeable}) LIMIT ? FOR UPDATE SKIP LOCKED))"
        )
        # Renewing never waits on a row. A row locked now is being written by its holder's own
        # group commit (or a receipt); waiting for it while holding the other rows' locks
        # deadlocks with that write, which locks many of the same rows in another order (the
        # server breaks the tie after its deadlock_timeout, a second in which the holder's
        # writes stand still). A skipped row is still held and is renewed next time (every
        # third of the lease); a row is lost only when another owner holds it.
        self.renew_sql = (
            f"WITH renewed AS (UPDATE {t} SET lease_expires_at = ? WHERE id = ANY(ARRAY("
            f"SELECT id FROM {t} WHERE id = ANY(?) AND lease_owner = ? FOR UPDATE SKIP LOCKED))) "
            f"SELECT id FROM {t} WHERE id = ANY(?) AND lease_owner = ?"
        )

    def claim_due_params(
        self, owner: str, limit: int, now: float, lease_until: float
    ) -> tuple[Any, ...]:
        return (now, limit, owner, lease_until, now)

    def take_over_params(
        self, owner: str, room: int, now: float, lease_until: float
    ) -> tuple[Any, ...]:
        return (now, room, owner, lease_until, now)

    def drop_stale_all_params(self, now: float) -> list[Any]:
        return [*self.stale_params(now), now, CHUNK]

    def renew(self, tx: Tx, owner: str, ids: Sequence[str], lease_until: float) -> set[str]:
        """Extend ``owner``'s leases on ``ids``; returns the ids it still holds (a row another
        transaction has locked now among them, renewed next time: see ``renew_sql``)."""
        held = list(ids)
        return {r[0] for r in tx.execute(self.renew_sql, (lease_until, held, owner, held, owner))}

    @staticmethod
    def taken_over(rows: Iterable[tuple[Any, ...]]) -> list[Taken]:
        """From :attr:`take_over_sql`'s rows (the previous owner first)."""
        return [Taken(row[1:], row[0]) for row in rows]

    def take_over(
        self, tx: Tx, owner: str, room: int, now: float, lease_until: float
    ) -> list[Taken]:
        taken = self.taken_over(
            tx.execute(self.take_over_sql, self.take_over_params(owner, room, now, lease_until))
        )
        # A receipt can finish a row while its holder keeps the lease; if that holder died,
        # nothing is left to do but drop the stale lease.
        tx.execute(self.drop_stale_all_sql, self.drop_stale_all_params(now))
        return taken


def _claimed(taken: Iterable[Taken]) -> list[Claimed]:
    return sorted(
        (Claimed(StoredMessage.from_row(t.row), t.previous_owner) for t in taken), key=_by_id
    )


_ID = operator.itemgetter(0)


def _claimed_due(rows: list[tuple[Any, ...]]) -> list[Claimed]:
    """:func:`_claimed` for rows none of which was taken over (most claims): sorted as they
    come, by a key in C, with no ``Taken`` made for each."""
    rows.sort(key=_ID)
    return [Claimed(StoredMessage.from_row(row)) for row in rows]


async def _commit_without_waiting(conn: psycopg.AsyncConnection[Any]) -> None:
    """A claim need not wait for its commit to reach the disk. Lost in a crash, it leaves its
    rows due again, for anyone, which is all the lease would have led to: the worker sends
    nothing before the row's start is written, and that write (a commit that does wait) makes
    every commit before it durable too, the claim included."""
    await conn.execute("SET synchronous_commit TO off")


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTx(Tx):
    __slots__ = ("_cur",)

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._cur
        cur.execute(sql.replace("?", "%s"), params or None)
        return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(sql.replace("?", "%s"), rows)

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def copy_in(
        self, table: str, columns: str, types: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Append ``rows`` to ``table`` with a binary COPY: the cheapest way in, on both ends
        (a quarter of the client's CPU of a text COPY). ``types``: the columns' types."""
        with self._cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write(row)


class PostgresStore(SqlStore):
    engine: ClassVar[str] = "postgresql"
    skip_locked: ClassVar[str] = " FOR UPDATE SKIP LOCKED"  # workers never queue on a row
    # Two group commits in flight hide a write's round trip as well as four did, and each
    # carries more rows: a statement costs the server per row and per statement, and the
    # smaller groups of four writers cost it more CPU per message (docs/postgresql.md, *Figures*).
    parallel_writes: ClassVar[int] = 2
    _for_update: ClassVar[str] = " FOR UPDATE"

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        self._messages: PgLeaseQueue = self.lease_queue(MESSAGES)
        parts = urlsplit(url.raw)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.schema = query.pop("schema", None)
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ConfigError(
                f"store option schema={self.schema!r} must be a lower-case SQL identifier",
                field="store",
            )
        try:
            pool_size = int(query.pop("pool_size", "10"))
        except ValueError:
            raise ConfigError(
                "store option pool_size must be a whole number", field="store"
            ) from None
        scheme = "postgresql"
        conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))
        kwargs: dict[str, Any] = {"autocommit": True}
        if self.schema is not None:
            kwargs["options"] = f"-c search_path={self.schema}"
        self._conninfo = conninfo
        self._kwargs = kwargs
        try:
            # One direct connection first: a wrong URL fails now, with libpq's reason.
            psycopg.connect(conninfo, connect_timeout=10, **kwargs).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if parts.password:
                reason = reason.replace(parts.password, "***")
            raise ConfigError(
                f"cannot connect to the store {self.url}: {reason}", field="store"
            ) from None
        self._pool = ConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=1,
            max_size=max(1, pool_size),
            open=True,
            name="smsgate-outbox",
        )
        self._closed = threading.Event()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PgTx(cur)

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield _PgTx(cur)

    @contextmanager
    def _migration_lock(self) -> Iterator[Tx]:
        with self._write() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            if self.schema is not None:
                tx.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            yield tx

    def _wake_workers(self, tx: Tx) -> None:
        tx.execute(_NOTIFY_DUE)

    def _version_table_exists(self, tx: Tx) -> bool:
        rows = tx.execute("SELECT to_regclass('smsgate_schema_version') IS NOT NULL")
        return bool(rows[0][0])

    def _insert_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        # One statement for both tables, the rows as JSON: psycopg adapts a list of 10,000
        # strings element by element in Python, the JSON encoder does it in C.
        # The statement also wakes the workers listening (one notification per insert, sent
        # when it commits): the extra NULL row says it did.
        return {
            r[0] for r in tx.execute(_INSERT_JSON, (dumps(rows), dumps(events))) if r[0] is not None
        }

    def _append_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        assert isinstance(tx, _PgTx)
        tx.copy_in(
            "smsgate_messages",
            _MESSAGE_INSERT_COLUMNS,
            _MESSAGE_INSERT_TYPES,
            ((*row, row[-1]) for row in rows),
        )
        tx.copy_in("smsgate_events", _EVENT_INSERT_COLUMNS, _EVENT_INSERT_TYPES, events)
        self._wake_workers(tx)
        return {row[0] for row in rows}

    def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        """The worker's group commit in one statement (one round trip) for the usual case; the
        rows a receipt moved meanwhile, and releases, take the general path."""
        if not (starts or transitions):
            return super().write(owner, starts, transitions, releases, now, lease_until)
        transitions, parted = split_parted(transitions)
        params = _fast_write_params(owner, starts, transitions, now)
        with self._read() as tx:  # autocommit: the one statement is its own transaction
            rows = tx.execute(_FAST_WRITE, params)
        started, finished, rest, with_ids = _after_fast_write(transitions, rows)
        rest = [*rest, *parted]
        if rest or releases or with_ids:
            finished |= self._write_rest(owner, rest, releases, with_ids, now)
        return started, finished

    def _write_rest(
        self,
        owner: str,
        rest: Sequence[Transition],
        releases: Sequence[str],
        with_ids: Sequence[tuple[str, str]],
        now: float,
    ) -> set[str]:
        """What ``_FAST_WRITE`` leaves to the general path: outcomes of rows a receipt moved
        meanwhile, releases, and receipts that came before the provider's id was recorded.
        Returns the ids of ``rest`` finished."""
        finished: set[str] = set()
        with self._write() as tx:
            if rest:
                held = self._held(tx, owner, [t.id for t in rest])
                finished = self._finish_in(tx, held, rest, now)
            if releases:
                self._release_in(tx, owner, releases, now)
            if with_ids:
                self._apply_pending(tx, with_ids, now)
        return finished

    async def open_calls(self) -> StoreCalls:
        """Claims and writes on the loop (:meth:`open_loop_calls`) where psycopg can wait on
        it; the rest, and everything on a loop it cannot wait on, on threads."""
        writes = self.parallel_writes
        executor = ThreadPoolExecutor(writes, thread_name_prefix="smsgate-store")
        calls = await self.open_loop_calls(executor, writes, owns_executor=True)
        if calls is None:
            return StoreCalls(self, executor, parallel=writes, owns_executor=True)
        return calls

    async def open_loop_calls(
        self, executor: Executor, writes: int, *, owns_executor: bool = False
    ) -> PgLoopCalls | None:
        """The worker's claims and group commits as non-blocking statements on the running
        event loop, through connections of its own: one for claims, up to ``writes`` for
        writes (see :class:`PgLoopCalls`); ``executor`` runs what they leave to the general
        path. None on a loop psycopg cannot wait on (Windows' proactor loop): the caller
        uses threads."""
        proactor = getattr(asyncio, "ProactorEventLoop", None)
        if proactor is not None and isinstance(asyncio.get_running_loop(), proactor):
            return None
        claims = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=1,
            open=False,
            configure=_commit_without_waiting,
            name="smsgate-worker-claims",
        )
        pool = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=max(1, writes),
            open=False,
            name="smsgate-worker-writes",
        )
        # not waiting: an unreachable server fails the first claim, which the worker retries
        await claims.open(wait=False)
        await pool.open(wait=False)
        return PgLoopCalls(self, claims, pool, executor, owns_executor=owns_executor)

    def lease_queue(self, table: LeasedTable) -> PgLeaseQueue:
        return PgLeaseQueue(table)

    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        if limit < 1:
            return []
        # without a take over, one statement: autocommit, one round trip
        with self._write() if take_over else self._read() as tx:
            taken = self._messages.claim(tx, owner, limit, now, lease_until, take_over=take_over)
        return _claimed(taken)

    def _ensure_buckets(self, tx: Tx, keys: Sequence[str]) -> None:
        tx.execute(
            "INSERT INTO smsgate_rate_buckets (key, tokens, updated_at) "
            "SELECT unnest(?::text[]), 0, -1 ON CONFLICT (key) DO NOTHING",
            (list(keys),),
        )


class PgLoopCalls(StoreCalls):
    """The worker's claims and group commits, run on its event loop with psycopg's non-blocking
    connections (:meth:`PostgresStore.open_loop_calls`).

    Through a thread, each of these statements took milliseconds for a fraction of one in the
    server: the thread must win the GIL back from the busy event loop after every wait on the
    socket, and the loop hands it over only when it sleeps or its switch interval (5 ms) runs
    out; the claim, then every message it brings, waited that long. On the loop, a statement
    costs its round trip and the loop's own CPU, nothing more. What the fast write leaves to the
    general path (rare: a receipt moved a row meanwhile, releases, early receipts) runs on
    ``executor``, as does everything else the worker asks of the store.

    Claims go through a connection of their own, whose commits do not wait for the disk (see
    ``_commit_without_waiting``); writes through a pool whose commits do.
    """

    _FAST_WRITE = _pg(_FAST_WRITE)

    def __init__(
        self,
        store: PostgresStore,
        claims: AsyncConnectionPool,
        writes: AsyncConnectionPool,
        executor: Executor,
        *,
        owns_executor: bool = False,
    ) -> None:
        super().__init__(store, executor, parallel=writes.max_size, owns_executor=owns_executor)
        self._store = store
        self._queue = queue = store._messages
        self._claim_due = _pg(queue.claim_due_sql)
        self._take_over = _pg(queue.take_over_sql)
        self._drop_stale = _pg(queue.drop_stale_all_sql)
        self._claims = claims
        self._pool = writes
        self._executor = executor
        self._listener: asyncio.Task[None] | None = None

    def on_work(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever messages of this store become due on another connection
        (LISTEN on its own connection; NOTIFY is sent by inserts and releases)."""
        self._listener = asyncio.create_task(self._listen(wake), name="smsgate-listen")

    async def _listen(self, wake: Callable[[], None]) -> None:
        store = self._store
        schema = store.schema or "public"
        pause = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(store._conninfo, **store._kwargs)
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    pause = 0.5
                    wake()  # what became due while nobody listened
                    async for note in conn.notifies():
                        if note.payload == schema:
                            wake()
            except psycopg.Error as exc:
                # the claimer still polls meanwhile; listen again when the server is back
                logger.warning("listening for new messages failed (%s); retrying", exc)
                await asyncio.sleep(pause)
                pause = min(30.0, pause * 2)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._claims.close()
        await self._pool.close()
        await super().aclose()

    async def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        """:meth:`PostgresStore.claim`, the same statements."""
        if limit < 1:
            return []
        queue = self._queue
        async with self._claims.connection() as conn:
            if not take_over:  # autocommit: one statement, one round trip
                params = queue.claim_due_params(owner, limit, now, lease_until)
                cur = await conn.execute(self._claim_due, params)
                return _claimed_due(await cur.fetchall())
            async with conn.transaction():
                # Expired leases first: under a backlog, due rows would fill every claim, and a
                # dead worker's rows would wait for the backlog to drain (see docs/multi-host.md).
                cur = await conn.execute(
                    self._take_over, queue.take_over_params(owner, limit, now, lease_until)
                )
                taken = queue.taken_over(await cur.fetchall())
                await conn.execute(self._drop_stale, queue.drop_stale_all_params(now))
                room = limit - len(taken)
                if room > 0:
                    cur = await conn.execute(
                        self._claim_due, queue.claim_due_params(owner, room, now, lease_until)
                    )
                    taken.extend(Taken(row) for row in await cur.fetchall())
        return _claimed(taken)

    async def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        """:meth:`PostgresStore.write`, the same statements."""
        loop = asyncio.get_running_loop()
        store = self._store
        if not (starts or transitions):
            return await loop.run_in_executor(
                self._executor, store.write, owner, starts, transitions, releases, now, lease_until
            )
        transitions, parted = split_parted(transitions)
        params = _fast_write_params(owner, starts, transitions, now)
        async with self._pool.connection() as conn:  # autocommit: one statement
            cur = await conn.execute(self._FAST_WRITE, params)
            rows = await cur.fetchall()
        started, finished, rest, with_ids = _after_fast_write(transitions, rows)
        rest = [*rest, *parted]
        if rest or releases or with_ids:
            finished |= await loop.run_in_executor(
                self._executor, store._write_rest, owner, rest, releases, with_ids, now
            )
        return started, finished
