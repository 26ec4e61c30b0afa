"""The worker: claims due messages, sends them through their routes, records every outcome.

One worker is one asyncio task group in one process; run several processes (on several hosts,
with PostgreSQL) for more throughput or for availability. The path of one message:

1. **claim** (a batch): the store leases due rows to this worker (``lease_owner``, expiry);
2. **plan**: the :class:`~smsgate.routing.Router` picks the provider (skipping open circuits);
3. **rate limit**: tokens from the provider's and sender's buckets (shared through the store);
4. **start**: the row moves to ``sending`` in a group-committed write, *before* the request. This
   is the crash-safety marker: a row a dead worker had only claimed is sent normally by the next
   worker, while a row it left in ``sending`` may have reached the provider, so the route's
   ambiguous-send policy decides (retry with the same key, look it up, re-send an OTP, or
   ``unknown``);
5. **send**, then **decide**: success records the provider's id; an error goes to the router,
   whose decision (retry at T, fail over, look up, fail) is written with its reason;
6. **finish**: outcomes are written in batches (one transaction per batch) and leases freed.

Leases are renewed while held. On SIGTERM/SIGINT the worker stops claiming, gives back what it
has not started, lets in-flight sends finish for ``shutdown_grace`` seconds, records as
ambiguous any it had to abandon, writes everything and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from smsgate.clock import Clock
from smsgate.errors import AmbiguousSend, ConfigError, ProviderUnavailable, SmsgateError
from smsgate.message import Message, SendResult, Status
from smsgate.outbox.codec import UnreadableRow, message_from_row
from smsgate.outbox.store import (
    NewEvent,
    StartSend,
    State,
    StoredMessage,
    Transition,
    dumps,
    error_json,
)
from smsgate.ratelimit import RateLimiter
from smsgate.routing import (
    Action,
    AmbiguousPolicy,
    Decision,
    Route,
    Router,
    resolve_ambiguous_policy,
)

if TYPE_CHECKING:
    from smsgate.outbox.outbox import Outbox
    from smsgate.outbox.postgres import PgLoopCalls
    from smsgate.providers.base import Provider

logger = logging.getLogger("smsgate.worker")
T = TypeVar("T")

#: the first wait when nothing is due; it doubles up to ``poll_interval`` while nothing comes
_FIRST_IDLE_PAUSE = 0.002
#: the longest wait between looks for due messages while messages are coming in
_BUSY_POLL = 0.01
#: provider statuses that mean "accepted, not yet delivered": recorded as ``sent``
_ACCEPTED = frozenset(
    {Status.SCHEDULED, Status.QUEUED, Status.SENDING, Status.SENT, Status.UNKNOWN}
)


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker run (also exported as metrics by the server)."""

    claimed: int = 0
    taken_over: int = 0
    sent: int = 0
    retried: int = 0
    failed_over: int = 0
    reconciling: int = 0
    reconciled: int = 0
    failed: int = 0
    unknown: int = 0
    expired: int = 0
    waited: int = 0
    released: int = 0
    dropped: int = 0
    store_errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Job:
    row: StoredMessage
    previous_owner: str | None
    message: Message | None = None
    started: bool = False


class _TokenPool:
    """Tokens for one (provider, sender) taken from the shared buckets in batches: one backend
    round trip serves every send of this worker waiting on the same buckets."""

    def __init__(self, limiter: RateLimiter, provider: str, sender: str | None) -> None:
        self._limiter = limiter
        self._provider = provider
        self._sender = sender
        self._tokens = 0
        self._waiting = 0
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        if self._tokens > 0:
            self._tokens -= 1
            return
        self._waiting += 1
        try:
            async with self._lock:
                if self._tokens > 0:
                    self._tokens -= 1
                    return
                granted = await self._limiter.acquire_batch(
                    self._provider, self._sender, max(1, self._waiting)
                )
                self._tokens += granted - 1
        finally:
            self._waiting -= 1


class Worker:
    """Sends an :class:`~smsgate.outbox.Outbox`'s messages.

    ``providers``: the provider objects, by name (or a sequence, named by ``provider.name``).
    ``router``: routes and retry policy (default: one route through all providers in order).
    ``limiter``: rate limits; build it with :func:`smsgate.outbox.buckets.shared_limiter` so all
    workers of the store share the buckets (default: no limits).
    ``concurrency``: sends in flight at once. ``batch_size``: rows per claim (default: the
    concurrency). ``lease``: seconds a claim lasts without renewal; a dead worker's messages are
    taken over that long after it stopped renewing. ``poll_interval``: the longest wait between
    two looks for due messages when idle.
    """

    def __init__(
        self,
        outbox: Outbox,
        providers: Sequence[Provider] | Mapping[str, Provider],
        *,
        router: Router | None = None,
        limiter: RateLimiter | None = None,
        concurrency: int = 50,
        batch_size: int | None = None,
        lease: float = 30.0,
        poll_interval: float = 0.1,
        shutdown_grace: float = 10.0,
        send_timeout: float | None = None,
        write_delay: float = 0.002,
        worker_id: str | None = None,
        clock: Clock | None = None,
        close_providers: bool = False,
    ) -> None:
        if isinstance(providers, Mapping):
            self.providers: dict[str, Provider] = dict(providers)
        else:
            self.providers = {provider.name: provider for provider in providers}
        if not self.providers:
            raise ConfigError("a worker needs at least one provider", field="providers")
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1", field="concurrency")
        if lease < 1:
            raise ConfigError("lease must be at least 1 second", field="lease")
        self.outbox = outbox
        self.store = outbox.store
        self.clock: Clock = clock or outbox.clock
        self.router = router or Router(
            [Route(name="default", providers=tuple(self.providers))], clock=self.clock
        )
        self.limiter = limiter
        self.concurrency = concurrency
        self.batch_size = batch_size or max(concurrency, 10)
        self.lease = lease
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.send_timeout = send_timeout
        self.write_delay = write_delay
        self.close_providers = close_providers
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.source = f"worker:{self.id}"
        self.stats = WorkerStats()
        self._held: dict[str, _Job] = {}
        self._inbox: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._releases: list[str] = []
        self._closing = False
        self._in_flight = 0
        self._starts: list[tuple[StartSend, asyncio.Future[bool], _Job]] = []
        self._finishes: list[Transition] = []
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._wake = asyncio.Event()
        self._write_signal = asyncio.Event()
        self._room = asyncio.Event()
        self._next_takeover = 0.0
        self._pools: dict[tuple[str, str | None], _TokenPool] = {}
        self._db_threads = 1 if self.store.engine == "sqlite" else 4
        self._db = ThreadPoolExecutor(self._db_threads, thread_name_prefix="smsgate-worker-db")
        # PostgreSQL: claims and group commits on the loop itself (see PgLoopCalls)
        self._loop_calls: PgLoopCalls | None = None
        self._ran = False
        self._db_busy = False
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: dict[asyncio.Task[Any], bool] = {}

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, store={self.store.url!r}, providers={list(self.providers)})"

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully (what a first SIGTERM/SIGINT does); a second call stops at once,
        recording abandoned sends as ambiguous."""
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)

    def circuits(self) -> dict[str, str]:
        """Each provider's circuit-breaker state in this worker (closed, open, half_open)."""
        return {name: state.value for name, state in self.router.breakers.states().items()}

    async def run(
        self, *, until_idle: bool = False, stop: asyncio.Event | None = None
    ) -> WorkerStats:
        """Work until :meth:`stop` is called or ``stop`` is set (or, with ``until_idle``, until
        no message is waiting, being sent or leased by anyone). Returns the counters."""
        if self._ran:
            raise RuntimeError("a Worker runs once; make a new one to run again")
        self._ran = True
        watcher: asyncio.Future[Any] | None = None
        if stop is not None:
            watcher = asyncio.ensure_future(stop.wait())
            watcher.add_done_callback(lambda done: None if done.cancelled() else self.stop())
        logger.info(
            "worker %s started on %s (%s)", self.id, self.store.url, ", ".join(self.providers)
        )
        open_loop_calls = getattr(self.store, "open_loop_calls", None)
        if open_loop_calls is not None:
            # one connection per write in flight (claims have one of their own)
            self._loop_calls = await open_loop_calls(self._db, self._db_threads)
        senders = [
            asyncio.create_task(self._sender(), name=f"smsgate-send-{i}")
            for i in range(self.concurrency)
        ]
        writer = asyncio.create_task(self._write_loop(), name="smsgate-writer")
        renewer = asyncio.create_task(self._renew_loop())
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._claim_loop(until_idle)
        finally:
            self._stopping.set()
            unstarted = self._drain_inbox()
            for _ in senders:
                self._inbox.put_nowait(None)
            await self._shutdown(senders)
            self._closing = True
            self._write_signal.set()
            await asyncio.gather(writer, return_exceptions=True)
            renewer.cancel()
            watchdog.cancel()
            await asyncio.gather(renewer, watchdog, return_exceptions=True)
            await self._release_unstarted(unstarted)
            if self._loop_calls is not None:
                await self._loop_calls.aclose()
            self._db.shutdown(wait=True)
            if watcher is not None:
                watcher.cancel()
            if self.close_providers:
                for provider in self.providers.values():
                    with contextlib.suppress(Exception):
                        await provider.aclose()
            logger.info("worker %s stopped: %s", self.id, self.stats.to_dict())
        return self.stats

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        call_now = getattr(self.store, "call_now", None)
        if call_now is not None and not self._db_busy:
            # SQLite: on the loop itself (see SqliteStore.call_now), unless it is locked
            from smsgate.outbox.sqlite import StoreBusy

            try:
                return call_now(fn, *args)  # type: ignore[no-any-return]
            except StoreBusy:
                self._db_busy = True
        try:
            return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)
        finally:
            self._db_busy = False

    # -- claiming -----------------------------------------------------------------------------

    async def _claim_loop(self, until_idle: bool) -> None:
        idle = _FIRST_IDLE_PAUSE
        loop = asyncio.get_running_loop()
        recent = 0.0
        while not self._stopping.is_set():
            # Keep a batch ready beyond what is in flight, so senders never wait on a claim.
            room = self.concurrency + self.batch_size - len(self._held)
            if room < max(1, self.batch_size // 2):
                # busy: claim again as soon as outcomes free enough room
                self._room.clear()
                await self._pause(self.poll_interval, self._room)
                continue
            now = self.clock.time()
            # Expired leases are rare: look for them about once a second, not on every claim.
            take_over = now >= self._next_takeover
            if take_over:
                self._next_takeover = now + min(1.0, self.lease / 4)
            calls = self._loop_calls
            try:
                if calls is not None:
                    claimed = await calls.claim(
                        self.id,
                        min(room, self.batch_size),
                        now,
                        now + self.lease,
                        take_over=take_over,
                    )
                else:
                    claimed = await self._db_call(
                        functools.partial(self.store.claim, take_over=take_over),
                        self.id,
                        min(room, self.batch_size),
                        now,
                        now + self.lease,
                    )
            except Exception:
                self.stats.store_errors += 1
                logger.exception("worker %s: claiming failed; retrying", self.id)
                await self._pause(1.0)
                continue
            for item in claimed:
                if item.row.id in self._held:
                    # Still ours in memory (our lease ran out while we worked on it, which only
                    # a stalled loop or a fake clock makes happen): the lease is ours again,
                    # and the work already under way stays the only one.
                    continue
                job = _Job(item.row, item.previous_owner)
                self._held[item.row.id] = job
                self.stats.claimed += 1
                if item.previous_owner is not None:
                    self.stats.taken_over += 1
                    logger.info(
                        "worker %s took over %s from %s (lease expired)",
                        self.id,
                        item.row.id,
                        item.previous_owner,
                    )
                self._inbox.put_nowait(job)
            if claimed:
                idle = _FIRST_IDLE_PAUSE
                recent = loop.time() + 1.0
                if len(claimed) < min(room, self.batch_size):
                    # caught up: let a little more arrive before the next claim
                    await self._pause(_FIRST_IDLE_PAUSE)
                continue
            if until_idle and await self._idle():
                return
            # Nothing due: look again soon, then less and less often, up to poll_interval (but
            # no more than 10 ms apart while messages kept coming in the last second).
            await self._pause(idle)
            ceiling = _BUSY_POLL if loop.time() < recent else self.poll_interval
            idle = min(ceiling, idle * 2)

    async def _idle(self) -> bool:
        if self._held or self._in_flight or self._finishes or self._starts or self._releases:
            return False
        due, leased = await self._db_call(self.store.work_left)
        return due is None and leased is None

    async def _pause(self, seconds: float, also: asyncio.Event | None = None) -> None:
        """Sleep on the clock, waking early when a new outcome makes something due soon (or
        when ``also`` is set)."""
        if seconds <= 0 or self._stopping.is_set():
            return
        self._wake.clear()
        waits = {
            asyncio.ensure_future(self.clock.sleep(seconds)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        if also is not None:
            waits.add(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    # -- the per-message pipeline -------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            job = await self._inbox.get()
            if job is None:
                return
            self._in_flight += 1
            try:
                await self._process(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not kill the worker: leave the row leased; when the lease expires
                # it is taken over (as an ambiguous send if it was started).
                logger.exception("worker %s: unexpected error processing %s", self.id, job.row.id)
                self._held.pop(job.row.id, None)
            finally:
                self._in_flight -= 1

    async def _process(self, job: _Job) -> None:
        row = job.row
        now = self.clock.time()
        try:
            job.message = message_from_row(row)
        except UnreadableRow as exc:
            # Quarantine: retrying a row that does not decode would fail at every lease expiry.
            self.stats.failed += 1
            self._finish(job, self._transition(job, State.FAILED, exc.message, error=exc))
            return
        if row.state is State.SENDING:
            self._finish(job, self._after_takeover(job))
            return
        if row.expires_at is not None and now >= row.expires_at:
            self.stats.expired += 1
            self._finish(
                job,
                self._transition(
                    job,
                    State.EXPIRED,
                    f"its validity ended at {_iso(row.expires_at)} before it could be sent",
                ),
            )
            return
        if row.state is State.RECONCILING:
            await self._reconcile(job)
            return
        if row.state.waiting:
            await self._send(job)
            return
        # Finished meanwhile (a receipt): nothing to do but let go.
        self._finish(job, None)

    async def _send(self, job: _Job) -> None:
        row = job.row
        message = job.message
        assert message is not None
        try:
            plan = self.router.plan(message, provider=row.provider, attempt=row.provider_attempt)
        except ConfigError as exc:
            self.stats.failed += 1
            self._finish(job, self._transition(job, State.FAILED, str(exc), error=exc))
            return
        if plan.action in (Action.WAIT, Action.HOLD):
            self.stats.waited += 1
            self._finish(job, self._from_decision(job, plan, from_status=row.status))
            return
        name = plan.provider
        assert name is not None
        provider = self.providers.get(name)
        if provider is None:
            error = ProviderUnavailable(
                f"provider {name!r} is in route {plan.route} but not configured on this worker",
                provider=name,
            )
            decision = self.router.decide(message, provider=name, attempt=plan.attempt, error=error)
            self._finish(job, self._from_decision(job, decision, from_status=row.status))
            return
        if self.limiter is not None:
            await self._pool(name, message.sender or provider.sender).take()
        start = StartSend(
            row.id,
            name,
            plan.attempt,
            plan.route,
            NewEvent(
                row.id,
                self.clock.time(),
                row.status.value,
                Status.SENDING.value,
                self.source,
                f"attempt {row.attempts + 1}: {plan.reason}",
                name,
                row.attempts + 1,
            ),
        )
        # If this task is cancelled while waiting, nothing was sent: the writer undoes the
        # start once it is recorded (see _write_batch).
        started = await self._start(start, job)
        if not started:
            # canceled, or our lease was lost: someone else owns it now
            self.stats.dropped += 1
            self._held.pop(row.id, None)
            return
        job.started = True
        try:
            result = await self._call(provider, provider.asend(message))
        except SmsgateError as error:
            self._after_error(job, name, plan, error)
            return
        except asyncio.CancelledError:
            stopped = AmbiguousSend(
                f"worker {self.id} stopped while waiting for {name}'s answer", provider=name
            )
            self._after_error(job, name, plan, stopped)
            raise
        except Exception as exc:  # a provider bug after the request may have gone out
            logger.exception("worker %s: %s raised unexpectedly", self.id, name)
            broken = AmbiguousSend(f"{name} raised {type(exc).__name__}: {exc}", provider=name)
            self._after_error(job, name, plan, broken)
            return
        if result.error is not None:
            self._after_error(job, name, plan, result.error)
            return
        self.router.record_success(name)
        self._finish(job, self._after_success(job, name, plan, result))

    async def _call(self, provider: Provider, call: Awaitable[T]) -> T:
        """Await a provider call; the watchdog cancels it past its deadline (one timer for all
        calls rather than one per call)."""
        task = asyncio.current_task()
        assert task is not None
        # network time is real time, whatever clock the worker's schedule runs on
        self._deadlines[task] = task.get_loop().time() + self._timeout_for(provider)
        try:
            return await call
        except asyncio.CancelledError:
            if self._expired.pop(task, False):
                task.uncancel()
                raise AmbiguousSend(
                    f"{provider.name} did not answer within {self._timeout_for(provider):g} s",
                    provider=provider.name,
                ) from None
            raise
        finally:
            self._deadlines.pop(task, None)

    def _timeout_for(self, provider: Provider) -> float:
        if self.send_timeout is not None:
            return self.send_timeout
        limits = getattr(provider, "timeout", None)
        connect = float(getattr(limits, "connect", 5.0))
        read = float(getattr(limits, "read", 15.0))
        return connect + read + 5.0

    async def _watchdog(self) -> None:
        """Cancel provider calls that outlive their deadline (the transport's own timeouts
        normally fire first; this catches a provider that never returns)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5)
            now = loop.time()
            for task, deadline in list(self._deadlines.items()):
                if now > deadline and not task.done():
                    self._expired[task] = True
                    task.cancel()

    def _after_success(
        self, job: _Job, name: str, plan: Decision, result: SendResult
    ) -> Transition:
        status = result.status
        state = State.SENT if status in _ACCEPTED else State.for_status(status)
        self.stats.sent += 1
        pmid = result.provider_message_id
        reason = f"accepted by {name}" + (f" as {pmid}" if pmid else "")
        if state is not State.SENT:
            reason += f" (provider status {status})"
        return Transition(
            job.row.id,
            state,
            NewEvent(
                job.row.id,
                self.clock.time(),
                Status.SENDING.value,
                state.status.value,
                self.source,
                reason,
                name,
                job.row.attempts + 1,
                None,
                _raw(result.raw),
            ),
            provider=name,
            provider_attempt=plan.attempt,
            route=plan.route,
            provider_message_id=pmid,
        )

    def _after_error(self, job: _Job, name: str, plan: Decision, error: SmsgateError) -> None:
        assert job.message is not None
        provider = self.providers[name]
        caps = provider.capabilities
        decision = self.router.decide(
            job.message,
            provider=name,
            attempt=plan.attempt,
            error=error,
            provider_dedupes=caps.dedupes,
            provider_can_lookup=caps.reconcile,
        )
        if decision.penalty and self.limiter is not None:
            task = asyncio.ensure_future(self.limiter.penalize(name, decision.penalty))
            task.add_done_callback(_log_failure)
        self._finish(job, self._from_decision(job, decision, from_status=Status.SENDING))

    async def _reconcile(self, job: _Job) -> None:
        row = job.row
        message = job.message
        assert message is not None
        name = row.provider or ""
        provider = self.providers.get(name)
        if provider is None:
            self.stats.unknown += 1
            self._finish(
                job,
                self._transition(
                    job,
                    State.UNKNOWN,
                    f"cannot look the message up: provider {name!r} is not configured on this "
                    "worker; status unknown until a receipt arrives",
                ),
            )
            return
        try:
            if row.provider_message_id and provider.capabilities.status_fetch:
                found: SendResult | None = await self._call(
                    provider, provider.afetch_status(row.provider_message_id)
                )
            else:
                found = await self._call(
                    provider, provider.areconcile(message, since=row.created_at)
                )
        except SmsgateError as error:
            lookup = AmbiguousSend(f"looking the message up failed: {error}", provider=name)
            decision = self.router.decide(
                message,
                provider=name,
                attempt=row.provider_attempt,
                error=lookup,
                provider_dedupes=provider.capabilities.dedupes,
                provider_can_lookup=True,
            )
            self._finish(job, self._from_decision(job, decision, from_status=row.status))
            return
        if found is None:
            decision = self.router.lookup_missed(
                message, provider=name, attempt=row.provider_attempt
            )
            decision = _with_reason(
                decision, f"{name} has no record of it, so it was not sent; {decision.reason}"
            )
            self._finish(job, self._from_decision(job, decision, from_status=row.status))
            return
        self.stats.reconciled += 1
        status = found.status
        state = State.SENT if status in _ACCEPTED else State.for_status(status)
        pmid = found.provider_message_id
        self._finish(
            job,
            Transition(
                row.id,
                state,
                NewEvent(
                    row.id,
                    self.clock.time(),
                    row.status.value,
                    state.status.value,
                    self.source,
                    f"found at {name}"
                    + (f" as {pmid}" if pmid else "")
                    + ": the ambiguous send did arrive, so it is not sent again",
                    name,
                    None,
                    None,
                    _raw(found.raw),
                ),
                provider=name,
                provider_message_id=pmid,
            ),
        )

    def _after_takeover(self, job: _Job) -> Transition:
        """A row left in ``sending`` by a worker whose lease expired: it may have been sent."""
        row = job.row
        message = job.message
        assert message is not None
        name = row.provider or ""
        provider = self.providers.get(name)
        what = (
            f"worker {job.previous_owner} stopped during attempt {row.attempts} through {name} "
            "(its lease expired), so the message may have been sent"
        )
        try:
            route = self.router.route_for(message)
        except ConfigError as exc:
            self.stats.unknown += 1
            return self._transition(job, State.UNKNOWN, f"{what}; {exc}")
        policy, why = resolve_ambiguous_policy(
            route.ambiguous,
            purpose=message.purpose,
            provider_dedupes=provider is not None and provider.capabilities.dedupes,
            provider_can_lookup=provider is not None and provider.capabilities.reconcile,
        )
        now = self.clock.time()
        if policy is AmbiguousPolicy.RECONCILE:
            self.stats.reconciling += 1
            return self._transition(
                job,
                State.RECONCILING,
                f"{what}; looking it up at {name} because {why}",
                next_attempt_at=now,
            )
        if policy in (AmbiguousPolicy.RETRY_SAME_KEY, AmbiguousPolicy.RESEND) and (
            route.retry.allows_retry(row.provider_attempt)
        ):
            self.stats.retried += 1
            how = (
                "re-sending (it may arrive twice)"
                if policy is AmbiguousPolicy.RESEND
                else "retrying with the same idempotency key"
            )
            return self._transition(
                job,
                State.RETRYING,
                f"{what}; {how} because {why}",
                next_attempt_at=now,
                provider_attempt=row.provider_attempt + 1,
            )
        self.stats.unknown += 1
        return self._transition(
            job,
            State.UNKNOWN,
            f"{what}; not sending again because {why}; status unknown until a receipt arrives",
        )

    # -- outcomes -----------------------------------------------------------------------------

    def _from_decision(self, job: _Job, decision: Decision, *, from_status: Status) -> Transition:
        row = job.row
        error = decision.error
        action = decision.action
        next_at: float | None = None
        if action is Action.FAIL:
            state = State.for_status(decision.status or Status.FAILED)
            if state is State.UNKNOWN:
                self.stats.unknown += 1
            else:
                self.stats.failed += 1
        elif action is Action.RECONCILE:
            state, next_at = State.RECONCILING, decision.at
            self.stats.reconciling += 1
        elif action is Action.WAIT:
            state, next_at = (row.state if row.state.waiting else State.QUEUED), decision.at
        elif action is Action.HOLD:  # quiet hours where the recipient is
            state, next_at = State.SCHEDULED, decision.at
        else:
            state, next_at = State.RETRYING, decision.at
            if action is Action.FAILOVER:
                self.stats.failed_over += 1
            else:
                self.stats.retried += 1
        raw: dict[str, Any] = {"decision": decision.to_dict()}
        if error is not None and error.raw is not None:
            raw["response"] = error.raw
        return Transition(
            row.id,
            state,
            NewEvent(
                row.id,
                self.clock.time(),
                from_status.value,
                state.status.value,
                self.source,
                decision.reason,
                decision.provider,
                row.attempts + (1 if job.started else 0),
                None,
                dumps(raw),
            ),
            next_attempt_at=next_at,
            provider=decision.provider,
            provider_attempt=decision.attempt,
            route=decision.route,
            last_error=None if error is None else error_json(error),
        )

    def _transition(
        self,
        job: _Job,
        state: State,
        reason: str,
        *,
        error: SmsgateError | None = None,
        next_attempt_at: float | None = None,
        provider_attempt: int | None = None,
        from_status: Status | None = None,
    ) -> Transition:
        row = job.row
        before = from_status or row.status
        return Transition(
            row.id,
            state,
            NewEvent(
                row.id,
                self.clock.time(),
                before.value,
                state.status.value,
                self.source,
                reason,
                row.provider,
                None,
            ),
            next_attempt_at=next_attempt_at,
            provider_attempt=provider_attempt,
            last_error=None if error is None else error_json(error),
        )

    def _finish(self, job: _Job, transition: Transition | None) -> None:
        """Queue the outcome for the next batch write (None: just let the row go)."""
        if transition is None:
            self._releases.append(job.row.id)
        else:
            self._finishes.append(transition)
            if transition.next_attempt_at is not None and (
                transition.next_attempt_at <= self.clock.time() + self.poll_interval
            ):
                self._wake.set()
        self._write_signal.set()

    # -- group-committed writes ---------------------------------------------------------------

    def _start(self, start: StartSend, job: _Job) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._starts.append((start, future, job))
        self._write_signal.set()
        return future

    async def _write_loop(self) -> None:
        """Group commit: every start, outcome and release queued since the last write goes
        into the next transaction (while one is being written, the next batch gathers)."""
        # SQLite has one writer at a time anyway; PostgreSQL takes a few writes at once, which
        # hides the round trips.
        parallel = 1 if self.store.engine == "sqlite" else self._db_threads
        running: set[asyncio.Task[None]] = set()
        while True:
            await self._write_signal.wait()
            self._write_signal.clear()
            # Gather for a moment: one transaction per couple of milliseconds costs far less
            # per message than one per response, and a send waits at most that long to start.
            if self.write_delay > 0 and not self._closing:
                await asyncio.sleep(self.write_delay)
            while self._starts or self._finishes or self._releases:
                if len(running) >= parallel:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                task = asyncio.create_task(self._write_batch())
                running.add(task)
                task.add_done_callback(running.discard)
                await asyncio.sleep(0)  # let it take its batch before looking again
            if self._closing:
                if running:
                    await asyncio.wait(running)
                if not (self._starts or self._finishes or self._releases):
                    return

    async def _write_batch(self) -> None:
        starts, self._starts = self._starts[:1000], self._starts[1000:]
        batch, self._finishes = self._finishes[:1000], self._finishes[1000:]
        idle, self._releases = self._releases, []
        now = self.clock.time()
        started: set[str] = set()
        for attempt in itertools.count():
            args = (self.id, [start for start, _, _ in starts], batch, idle, now, now + self.lease)
            try:
                if self._loop_calls is not None:
                    started, _ = await self._loop_calls.write(*args)
                else:
                    started, _ = await self._db_call(self.store.write, *args)
                break
            except Exception:
                self.stats.store_errors += 1
                logger.exception("worker %s: writing to the store failed", self.id)
                if attempt >= 20 or (self._force.is_set() and attempt >= 3):
                    # Starts not written were never sent; outcomes not written are resolved
                    # by another worker once our leases expire.
                    logger.error(
                        "worker %s: giving up on %d outcomes; their leases will expire and "
                        "another worker will resolve them",
                        self.id,
                        len(batch),
                    )
                    break
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
        for start, future, job in starts:
            if not future.done():
                future.set_result(start.id in started)
            elif start.id in started:
                # its sender was stopped while waiting for this write: nothing was sent
                self._finish(
                    job,
                    self._transition(
                        job,
                        State.RETRYING,
                        f"worker {self.id} stopped before the request was made",
                        next_attempt_at=now,
                        from_status=Status.SENDING,
                    ),
                )
        for transition in batch:
            self._held.pop(transition.id, None)
        for message_id in idle:
            self._held.pop(message_id, None)
        if batch or idle:
            self._room.set()

    async def _renew_loop(self) -> None:
        interval = self.lease / 3
        while True:
            # real time: a lease must be renewed before it runs out for the other workers
            await asyncio.sleep(interval)
            ids = list(self._held)
            if not ids:
                continue
            now = self.clock.time()
            try:
                kept = await self._db_call(self.store.renew, self.id, ids, now + self.lease)
            except Exception:
                self.stats.store_errors += 1
                logger.exception("worker %s: renewing leases failed", self.id)
                continue
            lost = [i for i in ids if i not in kept and i in self._held]
            if lost:
                logger.warning(
                    "worker %s lost the lease of %d messages (another worker took them over)",
                    self.id,
                    len(lost),
                )

    # -- stopping -----------------------------------------------------------------------------

    async def _shutdown(self, senders: list[asyncio.Task[None]]) -> None:
        self._stopping.set()
        grace = asyncio.ensure_future(asyncio.wait(senders, timeout=self.shutdown_grace))
        force = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({grace, force}, return_when=asyncio.FIRST_COMPLETED)
        force.cancel()
        pending = [task for task in senders if not task.done()]
        if pending:
            logger.warning(
                "worker %s: %d sends still waiting after %.0f s; recording them as ambiguous",
                self.id,
                len(pending),
                self.shutdown_grace,
            )
            for task in pending:
                task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        grace.cancel()

    def _drain_inbox(self) -> list[str]:
        ids: list[str] = []
        while not self._inbox.empty():
            job = self._inbox.get_nowait()
            if job is not None:
                ids.append(job.row.id)
        return ids

    async def _release_unstarted(self, ids: list[str]) -> None:
        """Give back what was claimed but never started: due again at once, for anyone."""
        ids = ids + [i for i, job in self._held.items() if not job.started and i not in ids]
        if not ids:
            return
        try:
            released = await asyncio.to_thread(self.store.release, self.id, ids, self.clock.time())
            self.stats.released += released
        except Exception:
            logger.exception(
                "worker %s: giving back %d messages failed; their leases will expire",
                self.id,
                len(ids),
            )
        for message_id in ids:
            self._held.pop(message_id, None)

    def _pool(self, provider: str, sender: str | None) -> _TokenPool:
        key = (provider, sender)
        pool = self._pools.get(key)
        if pool is None:
            assert self.limiter is not None
            pool = self._pools[key] = _TokenPool(self.limiter, provider, sender)
        return pool


def _raw(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return dumps(value)
    except (TypeError, ValueError):
        return dumps(repr(value))


def _iso(ts: float) -> str:
    from smsgate.outbox.store import to_datetime

    return to_datetime(ts).isoformat()


def _with_reason(decision: Decision, reason: str) -> Decision:
    from dataclasses import replace

    return replace(decision, reason=reason)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("slowing a provider's bucket failed: %s", task.exception())
