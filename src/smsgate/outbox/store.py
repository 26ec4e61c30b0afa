"""The store behind the outbox: the rows, the lifecycle, and the contract both engines keep.

A message row moves through an explicit state machine (Oban's habit: the states read like the
docs). ``scheduled``, ``queued``, ``retrying`` and ``reconciling`` wait for a worker, with
``next_attempt_at`` saying from when; a worker *claims* a due row by taking a lease on it
(``lease_owner`` / ``lease_expires_at``) and, right before the HTTP request, moves it to
``sending``. The lease is the only lock: a worker that dies leaves rows whose lease expires, and
another worker takes them over. A row it had only claimed is sent normally; a row left in
``sending`` may or may not have reached the provider, so the route's ambiguous-send policy decides.

Every change of the public :class:`~smsgate.message.Status` is a row in ``smsgate_events``,
written in the same transaction as the change; events are never updated or deleted.

Both engines implement :class:`Store` with the same semantics; the shared test suite in
``tests/outbox`` runs against each.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import importlib
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

from smsgate.errors import ConfigError, SmsgateError
from smsgate.message import JsonObject, Status
from smsgate.ratelimit import BucketSpec, BucketState
from smsgate.redact import redact_url

T = TypeVar("T")


class State(enum.StrEnum):
    """Where a row is in the outbox lifecycle; :attr:`status` is what users see."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    #: waiting for the next try after a failed one (public: queued)
    RETRYING = "retrying"
    #: waiting to look the message up at the provider after an ambiguous send (public: sending)
    RECONCILING = "reconciling"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def status(self) -> Status:
        return _PUBLIC[self]

    @property
    def waiting(self) -> bool:
        """Waiting for a worker (has a ``next_attempt_at``)."""
        return self in WAITING

    @classmethod
    def for_status(cls, status: Status) -> State:
        """The state a provider receipt with ``status`` moves a row to."""
        return cls(status.value)


_PUBLIC: dict[State, Status] = {
    state: Status.QUEUED
    if state is State.RETRYING
    else Status.SENDING
    if state is State.RECONCILING
    else Status(state.value)
    for state in State
}
#: state by its stored value (faster than calling the enum)
STATES: dict[str, State] = {state.value: state for state in State}
#: the stored value of each state's public status, as events record it (a dict lookup: on
#: Python 3.11 ``state.status.value`` is two enum property calls, and the worker needs a few
#: for every message)
STATUS_VALUES: dict[State, str] = {state: _PUBLIC[state].value for state in State}
WAITING = frozenset({State.SCHEDULED, State.QUEUED, State.RETRYING, State.RECONCILING})
#: states a worker's outcome replaces, whatever it is (the other ones a receipt set; see
#: merge_state)
REPLACEABLE = WAITING | {State.SENDING}
#: the stored values of the REPLACEABLE states: the rows a lease may still hold work on
REPLACEABLE_VALUES = frozenset(state.value for state in REPLACEABLE)
#: states with an entry in the partial index smsgate_messages_state: the states the generated
#: column listed_state keeps (migration 0010 lists them again)
INDEXED_STATES = (
    "scheduled",
    "reconciling",
    "failed",
    "undelivered",
    "rejected",
    "expired",
    "canceled",
    "unknown",
)
#: states no worker moves a row out of (``sent`` still waits for its receipt): the only ones
#: retention deletes
FINAL_STATES: tuple[State, ...] = tuple(
    state for state in State if state.status.is_final and state is not State.SENT
)
#: states a user may cancel: nothing has been handed to a provider yet
CANCELABLE = frozenset({State.SCHEDULED, State.QUEUED, State.RETRYING})


def states_for(status: Status) -> tuple[State, ...]:
    """The row states shown to users as ``status`` (for filtering)."""
    return tuple(state for state, public in _PUBLIC.items() if public is status)


#: the suppression row of a recipient who opted out of every number of ours (STOPALL)
ALL_NUMBERS = "*"

# -- rows -----------------------------------------------------------------------------------


class NewMessageRow(NamedTuple):
    """A validated message ready to insert (column order of the insert statements)."""

    id: str
    state: str
    purpose: str
    to_number: str
    sender: str | None
    idempotency_key: str | None
    payload: str
    send_at: float | None
    expires_at: float | None
    next_attempt_at: float
    created_at: float


class NewEvent(NamedTuple):
    """An event row to append."""

    message_id: str
    at: float
    from_status: str | None
    to_status: str
    source: str
    reason: str | None = None
    provider: str | None = None
    attempt: int | None = None
    event_key: str | None = None
    raw: str | None = None


MESSAGE_COLUMNS = (
    "id, state, purpose, to_number, sender, idempotency_key, payload, attempts, provider, "
    "provider_attempt, route, provider_message_id, send_at, expires_at, next_attempt_at, "
    "lease_owner, lease_expires_at, last_error, created_at, updated_at"
)
EVENT_COLUMNS = "id, message_id, at, from_status, to_status, source, reason, provider, attempt, raw"


class StoredMessage(NamedTuple):
    """One row of ``smsgate_messages`` as stored (times are epoch seconds)."""

    id: str
    state: State
    purpose: str
    to_number: str
    sender: str | None
    idempotency_key: str | None
    payload: str
    attempts: int
    provider: str | None
    provider_attempt: int
    route: str | None
    provider_message_id: str | None
    send_at: float | None
    expires_at: float | None
    next_attempt_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredMessage:
        # _make: the tuple as it is, rather than binding twenty arguments (every claimed row)
        return cls._make((row[0], STATES[row[1]], *row[2:]))

    @property
    def status(self) -> Status:
        return _PUBLIC[self.state]


class Claimed(NamedTuple):
    """A row a worker now holds. ``previous_owner`` is set when its lease was taken over."""

    row: StoredMessage
    previous_owner: str | None = None


class StartSend(NamedTuple):
    """Move a held row to ``sending`` right before its request: the crash-safety marker."""

    id: str
    provider: str
    provider_attempt: int
    route: str
    event: NewEvent


class Transition(NamedTuple):
    """The outcome of work on a held row: its new state, written with one event, lease freed.

    A receipt may have moved the row while the worker held it (a fast provider calls back before
    the result is written); then the row keeps whichever status ranks higher.
    """

    id: str
    state: State
    event: NewEvent
    next_attempt_at: float | None = None
    provider: str | None = None
    provider_attempt: int | None = None
    route: str | None = None
    provider_message_id: str | None = None
    last_error: str | None = None
    #: the ids of a long message's parts, each receipted on its own (see
    #: smsgate.outbox.tables.message_parts), written with the result
    part_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a message's history."""

    id: int
    message_id: str
    at: datetime
    from_status: Status | None
    to_status: Status
    source: str
    reason: str | None
    provider: str | None
    attempt: int | None
    raw: Any

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EventRecord:
        return cls(
            id=int(row[0]),
            message_id=row[1],
            at=to_datetime(row[2]),
            from_status=None if row[3] is None else Status(row[3]),
            to_status=Status(row[4]),
            source=row[5],
            reason=row[6],
            provider=row[7],
            attempt=row[8],
            raw=None if row[9] is None else json.loads(row[9]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "from": None if self.from_status is None else self.from_status.value,
            "to": self.to_status.value,
            "source": self.source,
            "reason": self.reason,
            "provider": self.provider,
            "attempt": self.attempt,
            "raw": self.raw,
        }


class ReceiptOutcome(enum.StrEnum):
    """What :meth:`Store.record_receipt` did with a provider receipt."""

    #: the message moved to the receipt's status
    APPLIED = "applied"
    #: kept in the history, but the message already had an equal or later status
    STALE = "stale"
    #: the same receipt (provider and event id) was recorded before; nothing changed
    DUPLICATE = "duplicate"
    #: no message matches yet (the send is still being recorded); applied when it is
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider receipt in store terms (built from a :class:`~smsgate.message.DeliveryEvent`)."""

    provider: str
    provider_message_id: str
    status: Status
    event_key: str
    at: float
    message_id: str | None = None
    reason: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    states: tuple[State, ...] = ()
    to: str | None = None
    since: float | None = None
    before_id: str | None = None
    limit: int = 100


# -- the contract ---------------------------------------------------------------------------


class Store(Protocol):
    """What the outbox needs from an engine. All methods are synchronous and thread-safe."""

    engine: ClassVar[str]
    #: an empty database of this engine is set up when first opened, unasked (an embedded file
    #: nobody else manages); others are migrated only when asked (``smsgate db migrate``)
    migrates_when_new: ClassVar[bool]
    #: the clause that makes a claim's row lock skip rows another transaction holds ("" where
    #: writers are serialized anyway)
    skip_locked: ClassVar[str]
    #: the store URL with any password masked
    url: str

    def schema_version(self) -> int: ...

    def migrate(self, target: int | None = None) -> list[int]:
        """Apply missing migrations up to ``target`` (default: all); returns versions applied."""
        ...

    def close(self) -> None: ...

    def inserter(self, *, atomic: bool) -> AbstractContextManager[Inserter]:
        """A context for inserting batches: each batch is one transaction, or, with ``atomic``,
        everything until the context exits is one (rolled back if it exits with an error)."""
        ...

    def get(self, message_id: str) -> StoredMessage | None: ...

    def events(self, message_id: str) -> list[EventRecord]: ...

    def list_messages(self, query: ListQuery) -> list[StoredMessage]: ...

    def counts(self) -> dict[State, int]: ...

    def work_left(self) -> tuple[float | None, float | None]:
        """The earliest ``next_attempt_at`` and the earliest lease expiry (None: there is none)."""
        ...

    def cancel(self, message_id: str, now: float, reason: str) -> tuple[StoredMessage | None, bool]:
        """Cancel a row that has not been handed to a provider: (row after, whether canceled)."""
        ...

    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        """Lease up to ``limit`` rows: due waiting rows first, then (with ``take_over``) rows
        whose lease expired."""
        ...

    def start(
        self, owner: str, starts: Sequence[StartSend], now: float, lease_until: float
    ) -> set[str]:
        """Move held rows to ``sending``; returns the ids still held (others must not be sent)."""
        ...

    def finish(self, owner: str, transitions: Sequence[Transition], now: float) -> set[str]:
        """Write outcomes of held rows and free their leases; returns the ids written."""
        ...

    def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        """``start``, ``finish`` and ``release`` in one transaction: (ids started, finished)."""
        ...

    def renew(self, owner: str, ids: Sequence[str], lease_until: float) -> set[str]:
        """Extend leases; returns the ids still held."""
        ...

    def release(self, owner: str, ids: Sequence[str], now: float) -> int:
        """Give back held rows that were never started (they are due again at once)."""
        ...

    def record_receipt(self, receipt: Receipt, now: float) -> tuple[ReceiptOutcome, str | None]:
        """Apply a provider receipt; returns the outcome and the message id it matched."""
        ...

    def record_receipts(
        self, receipts: Sequence[Receipt], now: float
    ) -> list[tuple[ReceiptOutcome, str | None]]:
        """:meth:`record_receipt` for each of ``receipts``, in one transaction."""
        ...

    def take_tokens(self, specs: Sequence[BucketSpec], n: int, now: float) -> float: ...

    def take_tokens_up_to(
        self, specs: Sequence[BucketSpec], wanted: int, now: float
    ) -> tuple[int, float]:
        """Up to ``wanted`` tokens from every bucket, as many as they all hold once that is half
        a burst, or none (:func:`smsgate.ratelimit.take_up_to`): how many, and else the seconds
        to wait."""
        ...

    def penalize_bucket(self, spec: BucketSpec, seconds: float, now: float) -> None: ...

    def bucket_state(self, key: str) -> BucketState | None:
        """The stored state of one rate bucket (not refilled); None if it was never used."""
        ...

    def prune(
        self,
        cutoffs: Mapping[State, float],
        events_before: float | None,
        limit: int,
        *,
        dry_run: bool = False,
    ) -> tuple[int, int]:
        """Delete up to ``limit`` messages in one transaction, each in a final state since
        before its state's cutoff, with their events; then, with ``events_before``, up to the
        rest of ``limit`` older events of final messages. Returns (messages, events) deleted;
        ``dry_run``: counts everything that would go, deleting nothing."""
        ...

    async def open_calls(self) -> StoreCalls:
        """The worker's calls in async form, for the running event loop (see
        :class:`StoreCalls`); close them with ``aclose``."""
        ...


class StoreCalls:
    """The store calls a worker makes from its event loop: claim, the batched write, renew,
    release and the idle check, in async form.

    This default runs each on a thread of ``executor``: any engine works this way. An engine
    with a faster path overrides some of them (SQLite runs a call on the loop itself while
    nothing holds its lock; PostgreSQL claims and writes on non-blocking connections).
    ``parallel``: writes the engine usefully takes at once (SQLite has a single writer).
    """

    def __init__(
        self, store: Store, executor: Executor, *, parallel: int, owns_executor: bool = False
    ) -> None:
        self.store = store
        self.executor = executor
        self.parallel = max(1, parallel)
        self._owns_executor = owns_executor

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a synchronous store call without blocking the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def claim(
        self, owner: str, limit: int, now: float, lease_until: float, *, take_over: bool = True
    ) -> list[Claimed]:
        return await self.call(
            functools.partial(self.store.claim, take_over=take_over), owner, limit, now, lease_until
        )

    async def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        return await self.call(
            self.store.write, owner, starts, transitions, releases, now, lease_until
        )

    async def renew(self, owner: str, ids: Sequence[str], lease_until: float) -> set[str]:
        return await self.call(self.store.renew, owner, ids, lease_until)

    async def release(self, owner: str, ids: Sequence[str], now: float) -> int:
        return await self.call(self.store.release, owner, ids, now)

    async def work_left(self) -> tuple[float | None, float | None]:
        return await self.call(self.store.work_left)

    async def prune(
        self, cutoffs: Mapping[State, float], events_before: float | None, limit: int
    ) -> tuple[int, int]:
        """One batch of :meth:`Store.prune`, queued with the worker's other store calls."""
        return await self.call(self.store.prune, cutoffs, events_before, limit)

    def on_work(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when messages become due through another connection (a submit, a
        release). This default never does: the claimer polls. PostgreSQL LISTENs."""

    async def aclose(self) -> None:
        if self._owns_executor:
            self.executor.shutdown(wait=True)


#: the suppression list as an insert's transaction reads it: those ``recipients`` who opted out
#: of messages from ``our_number`` (None: from any number of ours)
Suppressed = Callable[[Sequence[str], str | None], set[str]]
#: called by :meth:`Inserter.insert` with the positions of the rows it would create and the
#: suppression list; returns the positions it must not store
Screen = Callable[[Sequence[int], Suppressed], Collection[int]]


class Inserter(Protocol):
    def insert(
        self,
        rows: Sequence[NewMessageRow],
        events: Sequence[NewEvent],
        *,
        fresh_ids: bool = False,
        screen: Screen | None = None,
    ) -> list[tuple[str, bool] | None]:
        """Insert rows (and, for the rows actually inserted, their events) as one unit.

        Returns, per row, ``(id, created)``: the id of the stored message (an earlier one with
        the same idempotency key or id) and whether this call created it; None for a row
        ``screen`` refused. ``events[i]`` belongs to ``rows[i]``. ``fresh_ids``: the ids were
        just generated, so none can be stored already.

        ``screen`` sees only the rows that would be created, in the insert's transaction: a row
        whose key or id is stored already maps to that message whatever the screen would say
        (sending the same message again returns it, even after its recipient opted out).
        """
        ...


# -- helpers shared by the engines ----------------------------------------------------------


def to_datetime(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False
)


def dumps(value: Any) -> str:
    """Compact JSON for storage (one encoder, built once: this runs for every message); a
    provider's JSON object as the provider sent it."""
    if type(value) is JsonObject:
        try:
            return value.body.decode("utf-8")
        except UnicodeDecodeError:  # UTF-16 or -32, which JSON allows: stored as UTF-8 text
            pass
    return _ENCODER.encode(value)


def error_json(error: SmsgateError) -> str:
    return dumps(error.to_dict())


def merge_state(current: State, wanted: State, *, as_seen: bool = False) -> State:
    """The state a worker's outcome leaves when a receipt may have moved the row meanwhile.
    ``as_seen``: the row is still in the status the worker saw (a ``sent`` row it looked up
    after no receipt came), so nothing moved it and the outcome applies as it is."""
    if current in REPLACEABLE or as_seen:
        return wanted
    return wanted if current.status.can_move_to(wanted.status) else current


def receipt_target(current: State, status: Status) -> State | None:
    """The state a receipt moves ``current`` to, or None when it does not move it forward.

    A receipt proves the provider has the message, so provider-side "queued"/"sending" count as
    ``sent``; "unknown" says nothing and never moves a row.
    """
    if status is Status.UNKNOWN:
        return None
    if status.rank < Status.SENT.rank:
        status = Status.SENT
    if current.status.can_move_to(status):
        return State.for_status(status)
    return None


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL; ``masked`` is safe to print."""

    engine: str
    raw: str
    masked: str
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                f"store URL {url!r} is not a URL; use sqlite:///path/to/smsgate.db or "
                "postgresql://user@host/dbname",
                field="store",
            )
        scheme = url.split("://", 1)[0].lower()
        if scheme == "sqlite":
            return cls._sqlite(url)
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            return cls("postgresql", url, redact_url(url))
        if scheme in ENGINES:  # an engine registered by another package
            return cls(scheme, url, redact_url(url))
        raise ConfigError(
            f"store URL scheme {scheme!r} is not supported; use sqlite:///path/to/smsgate.db "
            "or postgresql://user@host/dbname",
            field="store",
        )

    def missing_file(self) -> str | None:
        """The store's file where the engine keeps the store in one and it does not exist."""
        return self.path if self.path and not Path(self.path).exists() else None

    @classmethod
    def _sqlite(cls, url: str) -> StoreURL:
        rest = url.split("://", 1)[1]
        if not rest.startswith("/"):
            raise ConfigError(
                f"sqlite store URL {url!r} needs three slashes: sqlite:///relative.db or "
                "sqlite:////absolute/path.db",
                field="store",
            )
        path, _, query = rest[1:].partition("?")
        if not path or path == ":memory:":
            raise ConfigError(
                "the sqlite store needs a file (workers and the API share it); "
                "use sqlite:///smsgate.db",
                field="store",
            )
        options = dict(item.partition("=")[::2] for item in query.split("&") if item)
        return cls("sqlite", url, redact_url(url), path=path, options=options)


@dataclass(frozen=True, slots=True)
class Engine:
    """Where an engine's store class is (``module:Class``, taking a :class:`StoreURL`), imported
    when a store of it is first opened; ``install``: what to do when that import fails (its
    driver is an optional dependency)."""

    factory: str
    install: str = ""


#: the engines, by :attr:`StoreURL.engine`. A registry rather than imports, so this contract
#: names no engine and an engine's driver is only imported when a store of it is opened.
ENGINES: dict[str, Engine] = {}


def register_engine(name: str, factory: str, *, install: str = "") -> None:
    """Make URLs of engine ``name`` open ``factory`` (``"package.module:StoreClass"``)."""
    ENGINES[name] = Engine(factory, install)


register_engine("sqlite", "smsgate.outbox.sqlite:SqliteStore")
register_engine(
    "postgresql",
    "smsgate.outbox.postgres:PostgresStore",
    install="the postgresql store needs psycopg 3: pip install 'smsgate[postgres]'",
)


def open_store(url: str) -> Store:
    """The store for ``url`` (``sqlite:///...`` or ``postgresql://...``), not yet checked."""
    parsed = StoreURL.parse(url)
    engine = ENGINES.get(parsed.engine)
    if engine is None:
        raise ConfigError(
            f"no store engine {parsed.engine!r} is registered; known: {', '.join(sorted(ENGINES))}",
            field="store",
        )
    module, _, name = engine.factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except ImportError as exc:  # its driver is not installed
        raise ConfigError(
            engine.install or f"cannot load {engine.factory}: {exc}", field="store"
        ) from exc
    store: Store = factory(parsed)
    return store


def iter_ids(rows: Iterable[StoredMessage]) -> list[str]:
    return [row.id for row in rows]
