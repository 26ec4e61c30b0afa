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
    StoredMessage,
    StoreURL,
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_WAITING_OR_SENDING = sorted({state.value for state in WAITING} | {"sending"})
_MESSAGE_COLUMNS_M = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
_LOCK_KEY = 0x5356_6174  # "smsgate" migrations: one advisory lock per database


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

    def claim(self, owner: str, limit: int, now: float, lease_until: float) -> list[Claimed]:
        if limit < 1:
            return []
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
                    "WHERE lease_expires_at < ? AND state = ANY(?) ORDER BY lease_expires_at "
                    "LIMIT ? FOR UPDATE SKIP LOCKED) "
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
