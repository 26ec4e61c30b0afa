"""The server's tables (migration 0003: API keys, suppressions, inbound messages, webhook
subscriptions and deliveries, the event relay's cursor), in the outbox's store: one database, one
transaction model.

Everything goes through the outbox engine's transactions (``write_transaction`` /
``read_transaction``), so SQLite writers queue on the same lock as the worker's and PostgreSQL
uses the same connections. The methods are synchronous and thread-safe like the outbox store's;
the async server calls them on worker threads. Statements use ``?`` placeholders; the PostgreSQL engine rewrites them.
"""

# ruff: noqa: S608 -- statements interpolate only column lists and placeholder lists, never values

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from smsgate.ids import new_id
from smsgate.outbox.leasequeue import LeasedTable
from smsgate.outbox.migrate import check_version
from smsgate.outbox.sql import SqlStore, Tx, Where
from smsgate.outbox.store import chunks, dumps
from smsgate.outbox.tables.base import Table

#: ids per ``IN (...)`` list
_CHUNK = 500


def _list_or_none(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    secret_hash: str
    purposes: tuple[str, ...] | None = None
    senders: tuple[str, ...] | None = None
    rate: str | None = None
    burst: int | None = None
    quota: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None

    COLUMNS: ClassVar[str] = (
        "id, name, secret_hash, purposes, senders, rate, burst, quota, created_at, revoked_at"
    )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApiKeyRecord:
        return cls(
            id=row[0],
            name=row[1],
            secret_hash=row[2],
            purposes=_list_or_none(row[3]),
            senders=_list_or_none(row[4]),
            rate=row[5],
            burst=row[6],
            quota=row[7],
            created_at=float(row[8]),
            revoked_at=None if row[9] is None else float(row[9]),
        )


@dataclass(frozen=True, slots=True)
class Suppression:
    recipient: str
    our_number: str
    source: str
    keyword: str | None
    reason: str | None
    created_at: float

    COLUMNS: ClassVar[str] = "recipient, our_number, source, keyword, reason, created_at"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Suppression:
        return cls(row[0], row[1], row[2], row[3], row[4], float(row[5]))


@dataclass(frozen=True, slots=True)
class InboundRecord:
    id: str
    provider: str
    provider_message_id: str
    sender: str
    to: str
    body: str
    media: tuple[str, ...]
    action: str | None
    received_at: float

    COLUMNS: ClassVar[str] = (
        "id, provider, provider_message_id, sender, to_number, body, media, action, received_at"
    )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> InboundRecord:
        return cls(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            tuple(json.loads(row[6])),
            row[7],
            float(row[8]),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    description: str | None
    created_at: float

    COLUMNS: ClassVar[str] = "id, url, events, secret, description, created_at"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Subscription:
        return cls(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], float(row[5]))

    def wants(self, event_type: str) -> bool:
        return wants(self.events, event_type)


def wants(patterns: Iterable[str], event_type: str) -> bool:
    """``"*"`` matches everything, ``"message.*"`` a family, anything else exactly."""
    family = event_type.split(".", 1)[0] + ".*"
    return any(p in ("*", event_type, family) for p in patterns)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event_id: str
    subscription_id: str
    event_type: str
    payload: str
    state: str
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float

    COLUMNS: ClassVar[str] = (
        "id, event_id, subscription_id, event_type, payload, state, attempts, next_attempt_at, "
        "last_status, last_error, created_at, updated_at"
    )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Delivery:
        return cls(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            int(row[6]),
            None if row[7] is None else float(row[7]),
            row[8],
            row[9],
            float(row[10]),
            float(row[11]),
        )


#: user-webhook deliveries as jobs of the outbox's lease queue: a pending one is due at its
#: next attempt; an expired lease on a pending one (its server died mid-attempt) is taken over
DELIVERIES = LeasedTable(
    name="smsgate_webhook_deliveries",
    columns=Delivery.COLUMNS,
    waiting="state = 'pending'",
    takeable="state = 'pending'",
    due_if="state = 'pending'",
)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery taken for one attempt, with where and how to send it."""

    delivery: Delivery
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    """A user-webhook event to fan out to every subscription that wants its type."""

    id: str
    type: str
    payload: str


class EventRow(NamedTuple):
    """One row of ``smsgate_events`` with the message fields metrics and webhooks need.

    A named tuple made straight from the row (``EventRow._make``): the metrics read every event
    of the store, tens of thousands a second, and both engines return these columns as int,
    float and str already."""

    id: int
    message_id: str
    at: float
    from_status: str | None
    to_status: str
    source: str
    reason: str | None
    provider: str | None
    attempt: int | None
    to: str | None
    route: str | None
    purpose: str | None
    sender: str | None
    created_at: float | None
    send_at: float | None
    last_error: str | None
    provider_message_id: str | None
    payload: str | None


_EVENT_SELECT = (
    "SELECT e.id, e.message_id, e.at, e.from_status, e.to_status, e.source, e.reason, "
    "e.provider, e.attempt, m.to_number, m.route, m.purpose, m.sender, m.created_at, m.send_at, "
    "m.last_error, m.provider_message_id, {payload} FROM smsgate_events e "
    "LEFT JOIN smsgate_messages m ON m.id = e.message_id WHERE e.id > ? ORDER BY e.id LIMIT ?"
)


class GapWatch:
    """Decides how far a reader of ``smsgate_events`` may move past gaps in the ids.

    On PostgreSQL an event id can become visible after a higher one (transactions commit out of
    order), so a reader stops before a gap until it has seen the gap for ``settle`` seconds: a
    gap that old is a rolled-back insert, not a late one. SQLite writers are serialized, so gaps
    there are rollbacks and settle the same way.
    """

    def __init__(self, settle: float = 10.0) -> None:
        self.settle = settle
        self._first_seen: dict[int, float] = {}

    def settled(self, rows: Sequence[EventRow], position: int, now: float) -> list[EventRow]:
        """The leading rows of ``rows`` (read past ``position``) that are safe to pass on."""
        taken: list[EventRow] = []
        expected = position + 1
        for row in rows:
            if row.id != expected:
                seen = self._first_seen.setdefault(expected, now)
                if now - seen < self.settle:
                    break
            taken.append(row)
            expected = row.id + 1
        for gap in [g for g in self._first_seen if g < expected]:
            del self._first_seen[gap]
        return taken


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """What one relay step did: ``held`` is False when another server holds the relay lease."""

    held: bool
    relayed: int = 0
    position: int = 0


# -- the store ---------------------------------------------------------------------------------


class ServerStore(Table):
    """The server's rows, stored next to the outbox's (see migration 0003)."""

    needs = "the server"

    def __init__(self, store: SqlStore) -> None:
        super().__init__(store)
        self._deliveries = store.lease_queue(DELIVERIES)

    def _write(self) -> AbstractContextManager[Tx]:
        return self._store.write_transaction()

    def _read(self) -> AbstractContextManager[Tx]:
        return self._store.read_transaction()

    def check(self) -> None:
        """Raise unless the store answers and has the schema this smsgate needs."""
        found = self._store.schema_version()
        check_version(found, self._store.url)

    # -- API keys -----------------------------------------------------------------------------

    def add_key(self, key: ApiKeyRecord) -> None:
        with self._write() as tx:
            tx.execute(
                f"INSERT INTO smsgate_api_keys ({ApiKeyRecord.COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.name,
                    key.secret_hash,
                    None if key.purposes is None else dumps(list(key.purposes)),
                    None if key.senders is None else dumps(list(key.senders)),
                    key.rate,
                    key.burst,
                    key.quota,
                    key.created_at,
                    key.revoked_at,
                ),
            )

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {ApiKeyRecord.COLUMNS} FROM smsgate_api_keys WHERE id = ?", (key_id,)
            )
        return ApiKeyRecord.from_row(rows[0]) if rows else None

    def list_keys(self) -> list[ApiKeyRecord]:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {ApiKeyRecord.COLUMNS} FROM smsgate_api_keys ORDER BY created_at, id"
            )
        return [ApiKeyRecord.from_row(row) for row in rows]

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self._write() as tx:
            rows = tx.execute(
                "UPDATE smsgate_api_keys SET revoked_at = ? "
                "WHERE id = ? AND revoked_at IS NULL RETURNING id",
                (now, key_id),
            )
        return bool(rows)

    def consume_quota(self, key_id: str, window_start: float, count: int, limit: int) -> bool:
        """Count ``count`` messages against the key's window if they fit under ``limit``."""
        if count > limit:
            return False
        with self._write() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_api_key_usage (key_id, window_start, used) VALUES (?, ?, ?) "
                "ON CONFLICT (key_id, window_start) DO UPDATE "
                "SET used = smsgate_api_key_usage.used + excluded.used "
                "WHERE smsgate_api_key_usage.used + excluded.used <= ? RETURNING used",
                (key_id, window_start, count, limit),
            )
        return bool(rows)

    def quota_used(self, key_id: str, window_start: float) -> int:
        with self._read() as tx:
            rows = tx.execute(
                "SELECT used FROM smsgate_api_key_usage WHERE key_id = ? AND window_start = ?",
                (key_id, window_start),
            )
        return int(rows[0][0]) if rows else 0

    # -- suppressions -------------------------------------------------------------------------

    def add_suppression(self, item: Suppression, events: Sequence[OutboundEvent] = ()) -> bool:
        with self._write() as tx:
            created = self._add_suppression(tx, item)
            if created:
                self._fan_out(tx, events, item.created_at)
        return created

    def _add_suppression(self, tx: Tx, item: Suppression) -> bool:
        rows = tx.execute(
            f"INSERT INTO smsgate_suppressions ({Suppression.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (recipient, our_number) DO NOTHING RETURNING recipient",
            (
                item.recipient,
                item.our_number,
                item.source,
                item.keyword,
                item.reason,
                item.created_at,
            ),
        )
        return bool(rows)

    def remove_suppressions(
        self,
        recipient: str,
        our_numbers: Sequence[str] | None,
        events: Sequence[OutboundEvent] = (),
        now: float = 0.0,
    ) -> int:
        """Lift opt-outs of ``recipient`` for ``our_numbers`` (None: all of them)."""
        with self._write() as tx:
            removed = self._remove_suppressions(tx, recipient, our_numbers)
            if removed:
                self._fan_out(tx, events, now)
        return removed

    def _remove_suppressions(
        self, tx: Tx, recipient: str, our_numbers: Sequence[str] | None
    ) -> int:
        if our_numbers is None:
            rows = tx.execute(
                "DELETE FROM smsgate_suppressions WHERE recipient = ? RETURNING recipient",
                (recipient,),
            )
        else:
            clause, params = tx.in_list("our_number", list(our_numbers))
            rows = tx.execute(
                f"DELETE FROM smsgate_suppressions WHERE recipient = ? AND {clause} "
                "RETURNING recipient",
                [recipient, *params],
            )
        return len(rows)

    def list_suppressions(
        self, recipient: str | None = None, after: tuple[str, str] | None = None, limit: int = 100
    ) -> list[Suppression]:
        where = Where()
        where.equal("recipient", recipient)
        if after is not None:
            where.add(
                "(recipient > ? OR (recipient = ? AND our_number > ?))",
                after[0],
                after[0],
                after[1],
            )
        sql = f"SELECT {Suppression.COLUMNS} FROM smsgate_suppressions{where.sql}"
        sql += " ORDER BY recipient, our_number LIMIT ?"
        with self._read() as tx:
            rows = tx.execute(sql, [*where.params, limit])
        return [Suppression.from_row(row) for row in rows]

    # -- inbound ------------------------------------------------------------------------------

    def record_inbound(
        self,
        record: InboundRecord,
        raw: Any,
        *,
        add: Suppression | None = None,
        remove: tuple[str, Sequence[str] | None] | None = None,
        events: Sequence[OutboundEvent] = (),
        change_events: Sequence[OutboundEvent] = (),
    ) -> bool:
        """Store an inbound message once (per provider message id) and apply its opt-out action,
        with its webhook events, in one transaction. ``change_events`` are fanned out only when
        the suppression list actually changed. Returns False for a duplicate."""
        with self._write() as tx:
            rows = tx.execute(
                f"INSERT INTO smsgate_inbound ({InboundRecord.COLUMNS}, raw) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider, provider_message_id) DO NOTHING RETURNING id",
                (
                    record.id,
                    record.provider,
                    record.provider_message_id,
                    record.sender,
                    record.to,
                    record.body,
                    dumps(list(record.media)),
                    record.action,
                    record.received_at,
                    None if raw is None else dumps(raw),
                ),
            )
            if not rows:
                return False
            changed = False
            if add is not None:
                changed = self._add_suppression(tx, add)
            if remove is not None:
                changed = self._remove_suppressions(tx, remove[0], remove[1]) > 0
            self._fan_out(tx, [*events, *(change_events if changed else ())], record.received_at)
        return True

    def list_inbound(
        self,
        sender: str | None = None,
        to: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[InboundRecord]:
        where = Where()
        where.equal("sender", sender)
        where.equal("to_number", to)
        where.before(before_id)
        with self._read() as tx:
            rows = where.newest(tx, InboundRecord.COLUMNS, "smsgate_inbound", limit)
        return [InboundRecord.from_row(row) for row in rows]

    def get_inbound(self, inbound_id: str) -> InboundRecord | None:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {InboundRecord.COLUMNS} FROM smsgate_inbound WHERE id = ?", (inbound_id,)
            )
        return next((InboundRecord.from_row(row) for row in rows), None)

    # -- webhook subscriptions ----------------------------------------------------------------

    def add_subscription(self, sub: Subscription) -> None:
        with self._write() as tx:
            tx.execute(
                f"INSERT INTO smsgate_webhook_subscriptions ({Subscription.COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sub.id,
                    sub.url,
                    dumps(list(sub.events)),
                    sub.secret,
                    sub.description,
                    sub.created_at,
                ),
            )

    def get_subscription(self, sub_id: str) -> Subscription | None:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {Subscription.COLUMNS} FROM smsgate_webhook_subscriptions WHERE id = ?",
                (sub_id,),
            )
        return Subscription.from_row(rows[0]) if rows else None

    def list_subscriptions(self) -> list[Subscription]:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {Subscription.COLUMNS} FROM smsgate_webhook_subscriptions ORDER BY id"
            )
        return [Subscription.from_row(row) for row in rows]

    def delete_subscription(self, sub_id: str) -> bool:
        """Delete a subscription and its pending deliveries (its dead letters stay visible)."""
        with self._write() as tx:
            rows = tx.execute(
                "DELETE FROM smsgate_webhook_subscriptions WHERE id = ? RETURNING id", (sub_id,)
            )
            if rows:
                tx.execute(
                    "DELETE FROM smsgate_webhook_deliveries "
                    "WHERE subscription_id = ? AND state = 'pending'",
                    (sub_id,),
                )
        return bool(rows)

    def has_subscriptions(self) -> bool:
        with self._read() as tx:
            return bool(tx.execute("SELECT 1 FROM smsgate_webhook_subscriptions LIMIT 1"))

    # -- webhook deliveries -------------------------------------------------------------------

    def enqueue(self, events: Sequence[OutboundEvent], now: float) -> int:
        """Queue ``events`` for every subscription that wants them; returns deliveries made."""
        if not events:
            return 0
        with self._write() as tx:
            return self._fan_out(tx, events, now)

    def _fan_out(self, tx: Tx, events: Sequence[OutboundEvent], now: float) -> int:
        if not events:
            return 0
        subs = [
            Subscription.from_row(row)
            for row in tx.execute(
                f"SELECT {Subscription.COLUMNS} FROM smsgate_webhook_subscriptions"
            )
        ]
        rows = [
            (
                new_id("whd"),
                event.id,
                sub.id,
                event.type,
                event.payload,
                "pending",
                0,
                now,
                now,
                now,
            )
            for event in events
            for sub in subs
            if sub.wants(event.type)
        ]
        tx.executemany(
            "INSERT INTO smsgate_webhook_deliveries (id, event_id, subscription_id, event_type, "
            "payload, state, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return len(rows)

    def claim_deliveries(
        self, owner: str, limit: int, now: float, lease_until: float
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` due deliveries for one attempt each under ``owner``'s lease
        (the lease queue's claim): a server that dies mid-attempt leaves them to be taken over
        once the lease expires."""
        with self._write() as tx:
            taken = self._deliveries.claim(tx, owner, limit, now, lease_until)
            deliveries = [Delivery.from_row(t.row) for t in taken]
            subs: dict[str, Subscription] = {}
            ids = sorted({d.subscription_id for d in deliveries})
            for part in chunks(ids, _CHUNK):
                clause, params = tx.in_list("id", part)
                for row in tx.execute(
                    f"SELECT {Subscription.COLUMNS} FROM smsgate_webhook_subscriptions "
                    f"WHERE {clause}",
                    params,
                ):
                    sub = Subscription.from_row(row)
                    subs[sub.id] = sub
            orphans = [d.id for d in deliveries if d.subscription_id not in subs]
            for part in chunks(orphans, _CHUNK):
                clause, params = tx.in_list("id", part)
                tx.execute(f"DELETE FROM smsgate_webhook_deliveries WHERE {clause}", params)
        return [
            ClaimedDelivery(d, subs[d.subscription_id].url, subs[d.subscription_id].secret)
            for d in deliveries
            if d.subscription_id in subs
        ]

    def finish_delivery(
        self,
        delivery_id: str,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float | None,
        now: float,
    ) -> None:
        with self._write() as tx:
            tx.execute(
                "UPDATE smsgate_webhook_deliveries SET state = ?, attempts = attempts + 1, "
                "next_attempt_at = ?, last_status = ?, last_error = ?, updated_at = ?, "
                "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                (state, next_attempt_at, status, error, now, delivery_id),
            )

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT {Delivery.COLUMNS} FROM smsgate_webhook_deliveries WHERE id = ?",
                (delivery_id,),
            )
        return Delivery.from_row(rows[0]) if rows else None

    def list_deliveries(
        self,
        *,
        state: str | None = None,
        subscription_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        where = Where()
        where.equal("state", state)
        where.equal("subscription_id", subscription_id)
        where.before(before_id)
        with self._read() as tx:
            rows = where.newest(tx, Delivery.COLUMNS, "smsgate_webhook_deliveries", limit)
        return [Delivery.from_row(row) for row in rows]

    def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        """The deliveries of these events (a message's: ``evt_msg_<event id>``), oldest first."""
        if not event_ids:
            return []
        with self._read() as tx:
            clause, params = tx.in_list("event_id", list(event_ids))
            rows = tx.execute(
                f"SELECT {Delivery.COLUMNS} FROM smsgate_webhook_deliveries "
                f"WHERE {clause} ORDER BY created_at, id",
                params,
            )
        return [Delivery.from_row(row) for row in rows]

    def requeue_delivery(self, delivery_id: str, now: float) -> None:
        """Queue a finished delivery again as it is, due now: same event id, so the subscriber
        dedupes (a dead letter goes back through :meth:`redeliver`)."""
        with self._write() as tx:
            tx.execute(
                "UPDATE smsgate_webhook_deliveries SET state = 'pending', next_attempt_at = ?, "
                "updated_at = ? WHERE id = ? AND state <> 'pending'",
                (now, now, delivery_id),
            )

    def redeliver(self, delivery_id: str, now: float) -> Delivery | None:
        """Put a dead letter back in the queue, due now, with a fresh retry horizon."""
        with self._write() as tx:
            rows = tx.execute(
                "UPDATE smsgate_webhook_deliveries SET state = 'pending', next_attempt_at = ?, "
                "created_at = ?, updated_at = ? WHERE id = ? AND state = 'dead' "
                f"RETURNING {Delivery.COLUMNS}",
                (now, now, now, delivery_id),
            )
        return Delivery.from_row(rows[0]) if rows else None

    # -- following smsgate_events -------------------------------------------------------------

    def last_event_id(self) -> int:
        with self._read() as tx:
            rows = tx.execute("SELECT max(id) FROM smsgate_events")
        return int(rows[0][0] or 0)

    def events_after(self, after_id: int, limit: int, *, payload: bool = False) -> list[EventRow]:
        sql = _EVENT_SELECT.format(payload="m.payload" if payload else "NULL")
        with self._read() as tx:
            rows = tx.execute(sql, (after_id, limit))
        return list(map(EventRow._make, rows))

    def relay(
        self,
        name: str,
        owner: str,
        now: float,
        lease_until: float,
        limit: int,
        convert: Callable[[list[EventRow]], Sequence[OutboundEvent]],
        gaps: GapWatch,
    ) -> RelayOutcome:
        """One step of a leased reader of ``smsgate_events``: read past the stored position,
        turn rows into webhook events with ``convert(rows)`` (only when someone subscribes), queue
        them and move
        the position, all in one transaction. See :class:`GapWatch` for gaps in the ids.
        """
        with self._write() as tx:
            rows = tx.execute(
                "SELECT position, owner, lease_expires_at FROM smsgate_event_cursors "
                "WHERE name = ?",
                (name,),
            )
            if not rows:
                start = tx.execute("SELECT max(id) FROM smsgate_events")[0][0] or 0
                tx.execute(
                    "INSERT INTO smsgate_event_cursors (name, position, owner, lease_expires_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (name, int(start), owner, lease_until),
                )
                return RelayOutcome(True, 0, int(start))
            position, holder, expires = int(rows[0][0]), rows[0][1], rows[0][2]
            if holder not in (None, owner) and expires is not None and expires > now:
                return RelayOutcome(False, 0, position)
            if tx.execute("SELECT 1 FROM smsgate_webhook_subscriptions LIMIT 1"):
                sql = _EVENT_SELECT.format(payload="m.payload")
                events = list(map(EventRow._make, tx.execute(sql, (position, limit))))
                taken = gaps.settled(events, position, now)
                if taken:
                    self._fan_out(tx, convert(taken), now)
                relayed, new_position = len(taken), taken[-1].id if taken else position
            else:
                # Nobody listens: nothing to queue, and events before a subscription are not
                # sent to it, so the position simply follows the table.
                last = tx.execute("SELECT max(id) FROM smsgate_events")[0][0]
                relayed, new_position = 0, max(position, int(last or 0))
            tx.execute(
                "UPDATE smsgate_event_cursors SET position = ?, owner = ?, lease_expires_at = ? "
                "WHERE name = ?",
                (new_position, owner, lease_until, name),
            )
        return RelayOutcome(True, relayed, new_position)

    def release_relay(self, name: str, owner: str) -> None:
        with self._write() as tx:
            tx.execute(
                "UPDATE smsgate_event_cursors SET owner = NULL, lease_expires_at = NULL "
                "WHERE name = ? AND owner = ?",
                (name, owner),
            )
