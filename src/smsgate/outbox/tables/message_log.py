"""What the console reads of the messages and events tables: the message log with its filters,
and the overview's figures.

The log pages by id (keyset pagination: ``before`` is the last id shown), newest first. Message
ids begin with their creation time in milliseconds (``smsgate.ids``), so a time range is an id
range and every filter runs on the primary key's order: the first page of a filtered log reads
rows from the newest down until it has a page, with no count and no offset.

The overview aggregates in SQL over a time window found on the events table's id: events are
appended in time order, so a binary search over ids finds the first event of the window in a
few dozen primary-key reads, and the aggregates scan only the window.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

import phonenumbers

from smsgate.errors import ConfigError
from smsgate.ids import _ALPHABET, _base32
from smsgate.outbox.sql import SqlStore, Tx, Where
from smsgate.outbox.store import MESSAGE_COLUMNS, State, StoredMessage
from smsgate.outbox.tables.base import Table

#: the public counters of the overview
OUTCOMES = ("sent", "delivered", "failed", "undelivered")


def id_floor(at: float, prefix: str = "msg") -> str:
    """The smallest id made at or after ``at`` (epoch seconds)."""
    return f"{prefix}_{_base32(max(0, math.ceil(at * 1000)), 10)}{'0' * 16}"


def id_time(message_id: str) -> float | None:
    """When ``message_id`` was made (epoch seconds), from its first ten characters."""
    _, _, rest = message_id.rpartition("_")
    if len(rest) < 10:
        return None
    value = 0
    for char in rest[:10]:
        index = _ALPHABET.find(char)
        if index < 0:
            return None
        value = value * 32 + index
    return value / 1000


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The log's filters as the form sends them; empty strings mean "any"."""

    since: float | None = None
    until: float | None = None
    states: tuple[State, ...] = ()
    provider: str = ""
    route: str = ""
    purpose: str = ""
    country: str = ""
    recipient: str = ""
    error: str = ""
    search: str = ""
    before: str = ""

    def country_prefix(self) -> str | None:
        """``+44`` for "GB", "gb" or "44"; a :class:`ConfigError` naming ``country`` otherwise."""
        text = self.country.strip().lstrip("+")
        if not text:
            return None
        if text.isdigit() and 1 <= len(text) <= 3:
            return "+" + text
        code = phonenumbers.country_code_for_region(text.upper())
        if not code:
            raise ConfigError(
                f"country {self.country!r} is neither a region code (GB) nor a calling code (44)",
                field="country",
            )
        return f"+{code}"


@dataclass(slots=True)
class LogPage:
    rows: list[StoredMessage]
    #: the id to pass as ``before`` for the next (older) page, or None on the last page
    next_before: str | None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class MessageLog(Table):
    """The log and the overview, read from ``store``'s messages and events."""

    needs = "the console"

    def page(self, f: LogFilter, limit: int) -> LogPage:
        """One page of the log, newest first, up to ``limit`` rows."""
        return _list_log(self._store, f, limit)

    def overview(self, now: float, *, hours: int = 24) -> Overview:
        """The figures of the last ``hours`` hours up to ``now``."""
        return _overview(self._store, now, hours=hours)


def _list_log(store: SqlStore, f: LogFilter, limit: int) -> LogPage:
    where = Where()
    with store.read_transaction() as tx:
        if f.states:
            where.states(tx, f.states)
        # an empty filter field is no filter, as None is
        where.equal("provider", f.provider or None)
        where.equal("route", f.route or None)
        where.equal("purpose", f.purpose or None)
        where.equal("to_number", f.recipient or None)
        prefix = f.country_prefix()
        if prefix:
            where.add("to_number LIKE ? ESCAPE '\\'", _escape_like(prefix) + "%")
        if f.search:
            digits = "".join(c for c in f.search if c.isdigit() or c == "+")
            if not digits:
                raise ConfigError(
                    f"search {f.search!r}: type some digits of the recipient's number",
                    field="search",
                )
            where.add("to_number LIKE ? ESCAPE '\\'", "%" + _escape_like(digits) + "%")
        if f.error:
            # last_error is compact JSON with "error" (the kind) and "code" (the provider's)
            code = _escape_like(json.dumps(f.error.strip()))
            where.add(
                "(last_error LIKE ? ESCAPE '\\' OR last_error LIKE ? ESCAPE '\\')",
                f'%"code":{code}%',
                f'%"error":{code}%',
            )
        if f.since is not None:
            where.add("id >= ?", id_floor(f.since))
        if f.until is not None:
            where.add("id < ?", id_floor(f.until))
        where.before(f.before or None)
        rows = [
            StoredMessage.from_row(row)
            for row in where.newest(tx, MESSAGE_COLUMNS, "smsgate_messages", limit + 1)
        ]
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows, rows[-1].id if more and rows else None)


# -- the overview ------------------------------------------------------------------------------


def first_event_at(tx: Tx, since: float) -> int | None:
    """The id of the first event at or after ``since`` (events are appended in time order)."""
    bounds = tx.execute("SELECT min(id), max(id) FROM smsgate_events")
    low, high = bounds[0]
    if low is None:
        return None
    last = tx.execute("SELECT at FROM smsgate_events WHERE id = ?", (high,))
    if not last or last[0][0] < since:
        return None
    low, high = int(low), int(high)
    while low < high:
        middle = (low + high) // 2
        row = tx.execute(
            "SELECT at FROM smsgate_events WHERE id >= ? ORDER BY id LIMIT 1", (middle,)
        )
        if row and row[0][0] >= since:
            high = middle
        else:
            low = middle + 1
    return low


def queue_depth(tx: Tx) -> dict[str, int]:
    """Messages not finished, by state, read from the partial indexes only (a GROUP BY over the
    whole table would read every message ever sent): those waiting for a worker, those a
    worker holds, and those stopped at ``unknown``."""
    depth: dict[str, int] = defaultdict(int)
    for sql in (
        "SELECT state, count(*) FROM smsgate_messages WHERE next_attempt_at IS NOT NULL "
        "GROUP BY state",
        "SELECT state, count(*) FROM smsgate_messages WHERE lease_expires_at IS NOT NULL "
        "AND next_attempt_at IS NULL GROUP BY state",
        "SELECT state, count(*) FROM smsgate_messages WHERE listed_state = 'unknown' "
        "GROUP BY state",
    ):
        for state, n in tx.execute(sql):
            depth[str(state)] += int(n)
    return dict(depth)


@dataclass(slots=True)
class Bucket:
    start: float
    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def delivery_rate(self) -> float | None:
        done = sum(self.counts.get(k, 0) for k in ("delivered", "failed", "undelivered"))
        return None if done == 0 else self.counts.get("delivered", 0) / done

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Overview:
    now: float
    depth: dict[str, int]
    #: provider -> window ("hour", "day") -> outcome -> count
    per_provider: dict[str, dict[str, dict[str, int]]]
    buckets: list[Bucket]
    #: how many delivered receipts the latency figures were taken from
    latency_sample: int


#: at most this many delivered events feed the latency percentiles (the newest of the window)
LATENCY_SAMPLE = 20_000


def _overview(store: SqlStore, now: float, *, hours: int = 24) -> Overview:
    since = now - hours * 3600
    with store.read_transaction() as tx:
        depth = queue_depth(tx)
        start = first_event_at(tx, since)
        per: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: {"hour": defaultdict(int), "day": defaultdict(int)}
        )
        buckets = [Bucket(since + i * 3600) for i in range(hours)]
        sample = 0
        if start is not None:
            rows = tx.execute(
                "SELECT provider, to_status, CAST((at - ?) / 3600 AS INTEGER) AS slot, count(*) "
                "FROM smsgate_events WHERE id >= ? AND to_status IN "
                "('sent', 'delivered', 'failed', 'undelivered') AND from_status IS NOT NULL "
                "AND from_status <> to_status GROUP BY provider, to_status, slot",
                (since, start),
            )
            for provider, status, slot, count in rows:
                name = provider or "(none)"
                per[name]["day"][status] += int(count)
                # the last of the hourly slots is the last hour (they count back from now);
                # the window's last instant, or a clock slightly ahead, counts in it too
                index = min(int(slot), hours - 1)
                if index == hours - 1:
                    per[name]["hour"][status] += int(count)
                if index >= 0:
                    buckets[index].counts[status] = buckets[index].counts.get(status, 0) + int(
                        count
                    )
            delivered = tx.execute(
                "SELECT message_id, at FROM smsgate_events WHERE id >= ? "
                "AND to_status = 'delivered' AND from_status <> 'delivered' "
                "ORDER BY id DESC LIMIT ?",
                (start, LATENCY_SAMPLE),
            )
            for message_id, at in delivered:
                made = id_time(message_id)
                slot = min(int((at - since) // 3600), hours - 1)
                if made is not None and slot >= 0:
                    buckets[slot].latencies.append(max(0.0, at - made))
                    sample += 1
    plain = {
        name: {window: dict(counts) for window, counts in windows.items()}
        for name, windows in per.items()
    }
    return Overview(now, depth, plain, buckets, sample)
