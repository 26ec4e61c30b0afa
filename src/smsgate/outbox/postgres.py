"""The PostgreSQL store: many workers on many hosts share one database.

Claims lock rows with ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint batches
without waiting for each other; every other multi-row write locks its rows in id order. Bulk
inserts are one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` per batch, which
is also what makes concurrent submits of one idempotency key safe: the loser waits for the
winner's commit and then maps to its row.

URL: ``postgresql://user:password@host:5432/dbname``; smsgate's own options, removed before the
URL reaches libpq: ``schema=NAME`` (tables live in that schema, created by ``db upgrade``) and
``pool_size=N`` (connections per process, default 10). Every other query parameter is libpq's.
"""

# ruff: noqa: S608 -- statements interpolate only column lists, engine fragments and placeholder
# lists built here, never values; every value is a bound parameter

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from smsgate.errors import ConfigError
from smsgate.outbox.sql import CHUNK, SqlStore, Tx
from smsgate.outbox.store import (
    MESSAGE_COLUMNS,
    WAITING,
    Claimed,
    NewEvent,
    NewMessageRow,
    StartSend,
    StoredMessage,
    StoreURL,
    Transition,
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_WAITING_OR_SENDING = sorted({state.value for state in WAITING} | {"sending"})
_MESSAGE_COLUMNS_M = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
_LOCK_KEY = 0x5356_6174  # "smsgate" migrations: one advisory lock per database
_WAITING = sorted(state.value for state in WAITING)
_CLAIM_DUE = (
    "WITH due AS (SELECT id FROM smsgate_messages WHERE next_attempt_at <= ? "
    "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) "
    "UPDATE smsgate_messages m SET lease_owner = ?, lease_expires_at = ?, "
    "next_attempt_at = NULL, updated_at = ? FROM due WHERE m.id = due.id "
    f"RETURNING {_MESSAGE_COLUMNS_M}"
)
# Starts, outcomes and their events in one statement. Only rows still held by the writer and in
# the state the worker expects are touched; the caller finishes the others the general way.
_FAST_WRITE = """
WITH s_in AS (
    SELECT * FROM unnest(?::text[], ?::text[], ?::int[], ?::text[])
        AS t(id, provider, provider_attempt, route)
), started AS (
    UPDATE smsgate_messages m SET state = 'sending', attempts = m.attempts + 1,
        provider = s_in.provider, provider_attempt = s_in.provider_attempt, route = s_in.route,
        updated_at = ?
    FROM s_in WHERE m.id = s_in.id AND m.lease_owner = ? AND m.state = ANY(?)
    RETURNING m.id
), f_in AS (
    SELECT * FROM unnest(?::text[], ?::text[], ?::float8[], ?::text[], ?::int[], ?::text[],
                         ?::text[], ?::text[])
        AS t(id, state, next_attempt_at, provider, provider_attempt, route, provider_message_id,
             last_error)
), finished AS (
    UPDATE smsgate_messages m SET state = f_in.state, next_attempt_at = f_in.next_attempt_at,
        provider = COALESCE(f_in.provider, m.provider),
        provider_attempt = COALESCE(f_in.provider_attempt, m.provider_attempt),
        route = COALESCE(f_in.route, m.route),
        provider_message_id = COALESCE(f_in.provider_message_id, m.provider_message_id),
        last_error = COALESCE(f_in.last_error, m.last_error),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
    FROM f_in WHERE m.id = f_in.id AND m.lease_owner = ? AND m.state = ANY(?)
    RETURNING m.id
), e_in AS (
    SELECT * FROM unnest(?::text[], ?::float8[], ?::text[], ?::text[], ?::text[], ?::text[],
                         ?::text[], ?::int[], ?::text[], ?::text[])
        AS e(message_id, at, from_status, to_status, source, reason, provider, attempt,
             event_key, raw)
), written AS (
    INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, reason,
                                provider, attempt, event_key, raw)
    SELECT e_in.* FROM e_in
    WHERE e_in.message_id IN (SELECT id FROM started UNION ALL SELECT id FROM finished)
)
SELECT 's', id FROM started
UNION ALL SELECT 'f', id FROM finished
UNION ALL SELECT 'p', NULL WHERE EXISTS (SELECT 1 FROM smsgate_pending_receipts)
"""


def _by_id(claimed: Claimed) -> str:
    return claimed.row.id


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


class PostgresStore(SqlStore):
    engine: ClassVar[str] = "postgresql"
    _for_update: ClassVar[str] = " FOR UPDATE"

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
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

    def _version_table_exists(self, tx: Tx) -> bool:
        rows = tx.execute("SELECT to_regclass('smsgate_schema_version') IS NOT NULL")
        return bool(rows[0][0])

    def _insert_rows(
        self, tx: Tx, rows: Sequence[NewMessageRow], events: Sequence[NewEvent]
    ) -> set[str]:
        columns = list(zip(*rows, strict=True))
        inserted = {
            r[0]
            for r in tx.execute(
                "INSERT INTO smsgate_messages (id, state, purpose, to_number, sender, "
                "idempotency_key, payload, send_at, expires_at, next_attempt_at, created_at, "
                "updated_at) SELECT t.*, t.created_at FROM unnest(?::text[], ?::text[], "
                "?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::float8[], ?::float8[], "
                "?::float8[], ?::float8[]) AS t(id, state, purpose, to_number, sender, "
                "idempotency_key, payload, send_at, expires_at, next_attempt_at, created_at) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [list(column) for column in columns],
            )
        }
        kept = [event for event in events if event[0] in inserted]
        if kept:
            self._insert_events(tx, kept)
        return inserted

    def _insert_events(self, tx: Tx, events: Sequence[NewEvent]) -> None:
        columns = list(zip(*events, strict=True))
        tx.execute(
            "INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, reason, "
            "provider, attempt, event_key, raw) SELECT * FROM unnest(?::text[], ?::float8[], "
            "?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int[], ?::text[], ?::text[])",
            [list(column) for column in columns],
        )

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
        events = [s.event for s in starts] + [t.event for t in transitions]
        ecols = [list(c) for c in zip(*events, strict=True)]
        params: list[Any] = [
            [s.id for s in starts],
            [s.provider for s in starts],
            [s.provider_attempt for s in starts],
            [s.route for s in starts],
            now,
            owner,
            _WAITING,
            [t.id for t in transitions],
            [t.state.value for t in transitions],
            [t.next_attempt_at if t.state.waiting else None for t in transitions],
            [t.provider for t in transitions],
            [t.provider_attempt for t in transitions],
            [t.route for t in transitions],
            [t.provider_message_id for t in transitions],
            [t.last_error for t in transitions],
            now,
            owner,
            _WAITING_OR_SENDING,
            *ecols,
        ]
        with self._read() as tx:  # autocommit: the one statement is its own transaction
            rows = tx.execute(_FAST_WRITE, params)
        started = {i for kind, i in rows if kind == "s"}
        finished = {i for kind, i in rows if kind == "f"}
        pending = any(kind == "p" for kind, _ in rows)
        rest = [t for t in transitions if t.id not in finished]
        with_ids = [
            (t.provider, t.provider_message_id)
            for t in transitions
            if t.id in finished and t.provider and t.provider_message_id
        ]
        if rest or releases or (pending and with_ids):
            with self._write() as tx:
                if rest:
                    held = self._held(tx, owner, [t.id for t in rest])
                    finished |= self._finish_in(tx, held, rest, now)
                if releases:
                    self._release_in(tx, owner, releases, now)
                if pending and with_ids:
                    self._apply_pending(tx, with_ids, now)
        return started, finished

    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        if limit < 1:
            return []
        if not take_over:
            with self._read() as tx:  # autocommit: one statement, one round trip
                rows = tx.execute(_CLAIM_DUE, (now, limit, owner, lease_until, now))
            return sorted((Claimed(StoredMessage.from_row(row)) for row in rows), key=_by_id)
        with self._write() as tx:
            rows = tx.execute(
                "WITH due AS (SELECT id FROM smsgate_messages WHERE next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) "
                "UPDATE smsgate_messages m SET lease_owner = ?, lease_expires_at = ?, "
                "next_attempt_at = NULL, updated_at = ? FROM due WHERE m.id = due.id "
                f"RETURNING {_MESSAGE_COLUMNS_M}",
                (now, limit, owner, lease_until, now),
            )
            claimed = [Claimed(StoredMessage.from_row(row)) for row in rows]
            room = limit - len(claimed)
            if room > 0:
                taken = tx.execute(
                    "WITH expired AS (SELECT id, lease_owner AS previous FROM smsgate_messages "
                    "WHERE lease_expires_at < ? AND state = ANY(?) "
                    "ORDER BY lease_expires_at LIMIT ? FOR UPDATE SKIP LOCKED) "
                    "UPDATE smsgate_messages m SET lease_owner = ?, lease_expires_at = ?, "
                    "next_attempt_at = NULL, updated_at = ? FROM expired WHERE m.id = expired.id "
                    f"RETURNING expired.previous, {_MESSAGE_COLUMNS_M}",
                    (now, _WAITING_OR_SENDING, room, owner, lease_until, now),
                )
                claimed.extend(
                    Claimed(StoredMessage.from_row(row[1:]), previous_owner=row[0]) for row in taken
                )
                # A receipt can finish a row while its sender holds the lease; if that sender
                # died, nothing is left to do but drop the stale lease.
                tx.execute(
                    "UPDATE smsgate_messages SET lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE id IN (SELECT id FROM smsgate_messages WHERE lease_expires_at < ? "
                    "AND NOT (state = ANY(?)) LIMIT ? FOR UPDATE SKIP LOCKED)",
                    (now, _WAITING_OR_SENDING, CHUNK),
                )
        claimed.sort(key=lambda c: c.row.id)
        return claimed

    def _ensure_buckets(self, tx: Tx, keys: Sequence[str]) -> None:
        tx.execute(
            "INSERT INTO smsgate_rate_buckets (key, tokens, updated_at) "
            "SELECT unnest(?::text[]), 0, -1 ON CONFLICT (key) DO NOTHING",
            (list(keys),),
        )
