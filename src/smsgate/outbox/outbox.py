"""The durable outbox: ``submit`` stores a message and returns at once; workers send it.

>>> outbox = Outbox("sqlite:///smsgate.db")
>>> mid = outbox.submit(Message(to="+15555550100", body="Your order shipped", idempotency_key="o-42"))
>>> outbox.status(mid).status
<Status.QUEUED: 'queued'>

Every method is synchronous and thread-safe; the ``a``-prefixed twins run the same call on a
worker thread for async code (the HTTP service). Times come from ``clock`` so tests can move them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import InvalidMessage, SmsgateError
from smsgate.ids import good_id
from smsgate.message import DeliveryEvent, Message, Status
from smsgate.outbox import migrate as migrations
from smsgate.outbox.codec import Validator, parse_time
from smsgate.outbox.records import (
    MessageNotFound,
    MessageRecord,
    NotCancelable,
    Page,
    RecordResult,
    SubmitOutcome,
    SubmitReport,
)
from smsgate.outbox.store import (
    Inserter,
    ListQuery,
    NewEvent,
    NewMessageRow,
    Receipt,
    State,
    Store,
    dumps,
    open_store,
    states_for,
)
from smsgate.outbox.suppressions import OptOutScreen
from smsgate.phone import normalize

if TYPE_CHECKING:
    from smsgate.outbox.worker import Worker, WorkerStats
    from smsgate.providers.base import Provider
    from smsgate.ratelimit import RateLimiter
    from smsgate.routing import Router

Item = Message | Mapping[str, Any]
#: the most recipients handled per transaction by ``submit_many``
DEFAULT_BATCH = 2000
MAX_PAGE = 1000


class _Rollback(Exception):
    pass


class Outbox:
    """A durable queue of messages on SQLite (``sqlite:///path.db``) or PostgreSQL
    (``postgresql://user@host/db``).

    ``migrate``: ``True`` upgrades an older schema; ``False`` never touches it; ``None`` (default)
    creates the schema in a brand-new SQLite file and otherwise refuses a store that is not at the
    current version, naming the command to run (``smsgate db upgrade``).
    ``region``: the default region for national numbers in mapping items (``"US"``).

    Every submit refuses recipients on the suppression list (they replied STOP to the sender, see
    :mod:`smsgate.outbox.suppressions`) with :class:`~smsgate.errors.OptedOut`: marketing and
    transactional messages always, otp messages unless ``otp_honors_opt_outs`` is False.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        migrate: bool | None = None,
        region: str | None = None,
        otp_honors_opt_outs: bool = True,
    ) -> None:
        self.store: Store = open_store(url)
        self.clock = clock
        self.otp_honors_opt_outs = otp_honors_opt_outs
        self._validator = Validator(region=region)
        try:
            self._check_schema(migrate)
        except BaseException:
            self.store.close()
            raise

    @property
    def url(self) -> str:
        """The store URL with any password masked."""
        return self.store.url

    def __repr__(self) -> str:
        return f"Outbox({self.url!r})"

    def _check_schema(self, migrate: bool | None) -> None:
        found = self.store.schema_version()
        if found == migrations.LATEST:
            return
        fresh = migrate is None and found == 0 and self.store.migrates_when_new
        if (migrate or fresh) and found < migrations.LATEST:
            self.store.migrate()
            found = self.store.schema_version()
        migrations.check_version(found, self.url)

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submit -------------------------------------------------------------------------------

    def submit(self, message: Item, *, check_opt_outs: bool = True) -> str:
        """Store one message and return its id (an earlier message's id if its idempotency key,
        or its id, was submitted before: then nothing new is stored or sent).

        A mapping is validated like ``Message(**mapping)``; bad input raises
        :class:`~smsgate.errors.SmsgateError` naming the field, a suppressed recipient
        :class:`~smsgate.errors.OptedOut` (unless the message is stored already).
        ``check_opt_outs`` False is for the replies an opted-out recipient may still get: those
        to their own keywords (the confirmation of a STOP, the answer to HELP or START).
        """
        row, event, fresh = self._validator.build(message, self.clock.time())
        screen = self.opt_out_screen([row]) if check_opt_outs else None
        with self.store.inserter(atomic=False) as inserter:
            (stored,) = inserter.insert([row], [event], fresh_ids=fresh, screen=screen)
        if stored is not None:
            return stored[0]
        assert screen is not None  # only a screen refuses a row
        raise screen.refused[0]

    def submit_stream(
        self, items: Iterable[Item], *, batch_size: int = DEFAULT_BATCH, source: str = "submit"
    ) -> Iterator[SubmitOutcome]:
        """Validate and store ``items`` in batches, yielding one outcome per item in order.

        Streaming: only one batch is in memory. Each batch is stored in one transaction, so a crash leaves whole
        batches; submitting again with the same idempotency keys stores only what is missing.
        Invalid items are refused (``outcome.error``), never stored.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        with self.store.inserter(atomic=False) as inserter:
            yield from self._stream(items, batch_size, source, inserter)

    def opt_out_screen(self, rows: Sequence[Sequence[Any]]) -> OptOutScreen:
        """The screen (``inserter.insert(rows, ..., screen=...)``) refusing the validated
        ``rows`` whose recipient opted out, as this outbox does; for loaders that insert rows
        themselves (:mod:`smsgate.outbox.bulk`)."""
        return OptOutScreen(rows, include_otp=self.otp_honors_opt_outs)

    def _stream(
        self,
        items: Iterable[Item],
        batch_size: int,
        source: str,
        inserter: Inserter,
    ) -> Iterator[SubmitOutcome]:
        # One thread: SQLite's driver takes the GIL back after every row, so a writer thread
        # would crawl behind a validating one; bulk loaders parallelize with a process instead
        # (smsgate.outbox.bulk).
        for batch in self._batches(items, batch_size, source):
            yield from self._store_batch(batch, inserter)

    def _store_batch(self, batch: _Batch, inserter: Inserter) -> list[SubmitOutcome]:
        rows = batch.rows
        screen = self.opt_out_screen(rows)
        stored = iter(
            inserter.insert(rows, batch.events, fresh_ids=batch.fresh, screen=screen)
            if rows
            else ()
        )
        outcomes: list[SubmitOutcome] = []
        position = -1
        for slot in batch.slots:
            if isinstance(slot, int):
                position += 1
                to = rows[position].to_number
                result = next(stored)
                if result is not None:
                    outcomes.append(SubmitOutcome(slot, result[0], result[1], None, to))
                else:
                    error = screen.refused[position]
                    outcomes.append(SubmitOutcome(slot, None, False, error, to))
            else:
                outcomes.append(slot)
        return outcomes

    def _batches(self, items: Iterable[Item], batch_size: int, source: str) -> Iterator[_Batch]:
        build = self._validator.build
        clock = self.clock
        rows: list[NewMessageRow] = []
        events: list[NewEvent] = []
        slots: list[SubmitOutcome | int] = []
        fresh = True
        now = clock.time()
        for index, item in enumerate(items):
            try:
                row, event, fresh_id = build(item, now, source)
            except SmsgateError as exc:
                slots.append(SubmitOutcome(index, None, False, exc, _recipient(item)))
            except (TypeError, ValueError) as exc:
                error = InvalidMessage(f"item {index} is not a message: {exc}", field="item")
                slots.append(SubmitOutcome(index, None, False, error, _recipient(item)))
            else:
                rows.append(row)
                events.append(event)
                fresh = fresh and fresh_id
                slots.append(index)
            if len(slots) >= batch_size:
                yield _Batch(rows, events, slots, fresh)
                rows, events, slots, fresh = [], [], [], True
                now = clock.time()
        if slots:
            yield _Batch(rows, events, slots, fresh)

    def submit_many(
        self,
        items: Iterable[Item],
        *,
        batch_size: int = DEFAULT_BATCH,
        atomic: bool = False,
        on_outcome: Callable[[SubmitOutcome], None] | None = None,
        max_errors: int = 1000,
        source: str = "submit",
    ) -> SubmitReport:
        """Store many messages, streaming (a million recipients never sit in memory at once).

        Invalid items are refused with per-item errors and never stored; valid ones are stored
        in batches, each batch whole or not at all. With ``atomic=True`` the whole call is one
        transaction and nothing at all is stored if any item is refused. ``on_outcome`` sees
        every item's outcome (to write a rejects file, for example).
        """
        report = SubmitReport()
        started = time.perf_counter()

        def count(outcomes: Iterable[SubmitOutcome]) -> None:
            for outcome in outcomes:
                report.total += 1
                if outcome.error is not None:
                    report.rejected += 1
                    if len(report.errors) < max_errors:
                        report.errors.append(outcome)
                elif outcome.created:
                    report.accepted += 1
                else:
                    report.duplicates += 1
                if on_outcome is not None:
                    on_outcome(outcome)

        if not atomic:
            count(self.submit_stream(items, batch_size=batch_size, source=source))
        else:
            try:
                with self.store.inserter(atomic=True) as inserter:
                    count(self._stream(items, batch_size, source, inserter))
                    if report.rejected:
                        raise _Rollback
            except _Rollback:
                report.committed = False
                report.duplicates += report.accepted
                report.accepted = 0
        report.elapsed = time.perf_counter() - started
        return report

    # -- look and change ----------------------------------------------------------------------

    def status(self, message_id: str) -> MessageRecord:
        """The message, its status and its full event history."""
        row = self.store.get(message_id) if _is_id(message_id) else None
        if row is None:
            raise MessageNotFound(f"no message {message_id!r} in this outbox", field="id")
        return MessageRecord.from_stored(row, tuple(self.store.events(message_id)))

    def get(self, message_id: str) -> MessageRecord | None:
        """The message without its history, or None."""
        row = self.store.get(message_id) if _is_id(message_id) else None
        return None if row is None else MessageRecord.from_stored(row)

    def cancel(self, message_id: str, *, reason: str = "canceled by request") -> MessageRecord:
        """Stop a scheduled or queued message (also one waiting for a retry).

        Raises :class:`MessageNotFound`, or :class:`NotCancelable` once the message has been
        handed to a provider. Canceling a canceled message is a no-op.
        """
        if not _is_id(message_id):
            raise MessageNotFound(f"no message {message_id!r} in this outbox", field="id")
        row, canceled = self.store.cancel(message_id, self.clock.time(), reason)
        if row is None:
            raise MessageNotFound(f"no message {message_id!r} in this outbox", field="id")
        if not canceled and row.state is not State.CANCELED:
            raise NotCancelable(
                f"message {message_id} is {row.status.value}; only scheduled or queued messages "
                "can be canceled",
                status=row.status,
                field="id",
            )
        return MessageRecord.from_stored(row)

    def list(
        self,
        *,
        status: Status | str | Iterable[Status | str] | None = None,
        to: str | None = None,
        since: float | Any = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Messages newest first, filtered by status(es), recipient and creation time."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidMessage(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        states: tuple[State, ...] = ()
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            collected: list[State] = []
            for value in wanted:
                try:
                    collected.extend(states_for(Status(value)))
                except ValueError:
                    raise InvalidMessage(
                        f"status {value!r} is not one of {', '.join(s.value for s in Status)}",
                        field="status",
                    ) from None
            states = tuple(collected)
        number = None if to is None else normalize(to, strict=False, field="to")
        if cursor is not None and not _is_id(cursor):
            raise InvalidMessage(
                "cursor is not one this outbox returned (it is a message id)", field="cursor"
            )
        rows = self.store.list_messages(
            ListQuery(states, number, parse_time(since, "since"), cursor, limit + 1)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [MessageRecord.from_stored(row) for row in rows]
        return Page(items, rows[-1].id if more and rows else None)

    def counts(self) -> dict[Status, int]:
        """How many messages are in each status."""
        totals: dict[Status, int] = {}
        for state, n in self.store.counts().items():
            totals[state.status] = totals.get(state.status, 0) + n
        return totals

    def record_event(self, event: DeliveryEvent) -> RecordResult:
        """Record a provider receipt (from a verified webhook or a status lookup).

        The message moves only forward (:meth:`Status.can_move_to`); a receipt that does not move
        it is kept in the history as such. The same ``event.event_id`` from the same provider is
        recorded once. A receipt for a send that is still being recorded is kept and applied as
        soon as it is.
        """
        # The history is in the order things were learnt: the provider's own time (often to the
        # minute only) goes into the reason.
        receipt = receipt_of(event, self.clock.time())
        outcome, message_id = self.store.record_receipt(receipt, self.clock.time())
        return RecordResult(outcome, message_id)

    # -- async twins --------------------------------------------------------------------------

    async def asubmit(self, message: Item) -> str:
        """Async twin of :meth:`submit`."""
        return await asyncio.to_thread(self.submit, message)

    async def asubmit_many(self, items: Iterable[Item], **options: Any) -> SubmitReport:
        """Async twin of :meth:`submit_many`."""
        return await asyncio.to_thread(lambda: self.submit_many(items, **options))

    async def astatus(self, message_id: str) -> MessageRecord:
        """Async twin of :meth:`status`."""
        return await asyncio.to_thread(self.status, message_id)

    async def acancel(
        self, message_id: str, *, reason: str = "canceled by request"
    ) -> MessageRecord:
        """Async twin of :meth:`cancel`."""
        return await asyncio.to_thread(lambda: self.cancel(message_id, reason=reason))

    async def alist(self, **filters: Any) -> Page:
        """Async twin of :meth:`list`."""
        return await asyncio.to_thread(lambda: self.list(**filters))

    async def acounts(self) -> dict[Status, int]:
        """Async twin of :meth:`counts`."""
        return await asyncio.to_thread(self.counts)

    async def arecord_event(self, event: DeliveryEvent) -> RecordResult:
        """Async twin of :meth:`record_event`."""
        return await asyncio.to_thread(self.record_event, event)

    # -- workers ------------------------------------------------------------------------------

    def worker(
        self,
        providers: Sequence[Provider] | Mapping[str, Provider],
        *,
        router: Router | None = None,
        limiter: RateLimiter | None = None,
        **options: Any,
    ) -> Worker:
        """A worker sending this outbox's messages through ``providers`` (see
        :class:`~smsgate.outbox.worker.Worker` for the options)."""
        from smsgate.outbox.worker import Worker

        return Worker(self, providers, router=router, limiter=limiter, **options)

    async def arun_worker(
        self,
        providers: Sequence[Provider] | Mapping[str, Provider],
        **options: Any,
    ) -> WorkerStats:
        """Run a worker in this event loop until it is stopped (or, with ``until_idle``, until
        nothing is left to do)."""
        until_idle = bool(options.pop("until_idle", False))
        worker = self.worker(providers, **options)
        return await worker.run(until_idle=until_idle)

    def run_worker(
        self,
        providers: Sequence[Provider] | Mapping[str, Provider],
        **options: Any,
    ) -> WorkerStats:
        """Run a worker on a new event loop until SIGTERM/SIGINT (or ``until_idle``).

        The providers' connections belong to that loop, so they are closed when it ends
        (pass ``close_providers=False`` to keep them for another run on another loop).
        """
        handle_signals = bool(options.pop("handle_signals", True))
        until_idle = bool(options.pop("until_idle", False))
        options.setdefault("close_providers", True)

        async def main() -> WorkerStats:
            worker = self.worker(providers, **options)
            if handle_signals:
                worker.install_signal_handlers()
            return await worker.run(until_idle=until_idle)

        from smsgate.eventloop import run

        return run(main())


class _Batch(NamedTuple):
    rows: list[NewMessageRow]
    events: list[NewEvent]
    #: per item in order: its refusal, or its index among the items
    slots: list[SubmitOutcome | int]
    fresh: bool


def _recipient(item: Any) -> Any:
    if isinstance(item, Message):
        return item.to
    if isinstance(item, Mapping):
        return item.get("to")
    return None


def receipt_of(event: DeliveryEvent, at: float) -> Receipt:
    """``event`` in store terms, learnt at ``at`` (for recorders that batch receipts, like the
    server's)."""
    return Receipt(
        provider=event.provider,
        provider_message_id=event.provider_message_id,
        status=Status(event.status),
        event_key=f"{event.provider}:{event.event_id}",
        at=at,
        message_id=event.message_id,
        reason=_receipt_reason(event),
        raw=None if event.raw is None else dumps(event.raw),
    )


def _receipt_reason(event: DeliveryEvent) -> str | None:
    parts = []
    if event.reason and event.reason != event.status.value:
        parts.append(event.reason)
    if event.error_code and event.error_code not in (event.reason or ""):
        parts.append(f"code {event.error_code}")
    if event.opted_out:
        parts.append("recipient opted out")
    if event.parts:
        parts.append(f"part {event.part} of {event.parts}")
    if event.occurred_at is not None:
        parts.append(f"at {event.occurred_at.isoformat()} by the provider's clock")
    return "; ".join(parts) or None


def _is_id(value: Any) -> bool:
    """Whether ``value`` can be a message id: anything else is looked up nowhere (a NUL in it
    would break a PostgreSQL query; it could not have been stored anyway)."""
    return isinstance(value, str) and good_id(value)
