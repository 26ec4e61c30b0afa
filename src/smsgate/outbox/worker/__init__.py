"""The worker: claims due messages, sends them through their routes, records every outcome.

One worker is one asyncio task group in one process; run several processes (on several hosts,
with PostgreSQL) for more throughput or for availability. It is made of parts, as River splits
its producer, executor, completer and rescuer, each in a module of its own and tested alone:

- the :class:`~.claimer.Claimer` leases due rows to this worker in batches (``lease_owner``,
  expiry), taking over rows whose lease another worker let run out, and hands them to the
  senders through a :class:`~.handoff.Handoff`;
- the :class:`~.sender.Sender` plans each row's route, takes rate-limit tokens, **starts** it
  (the row moves to ``sending`` in a committed write *before* the request: the crash-safety
  mark), sends it and turns the answer into an outcome;
- the :class:`~.reconciler.Reconciler` settles sends nobody knows the outcome of (a row a dead
  worker left in ``sending``, one the router chose to look up, a ``sent`` one whose receipt
  did not come in time);
- the :class:`~.committer.Committer` writes starts, outcomes and releases in group commits;
- the :class:`~.leases.LeaseKeeper` renews the leases held and gives back the unstarted ones;
- the :class:`~.pruner.Pruner` (when a ``retention`` is given) deletes finished messages past
  their age between sends, one small batch at a time.

The store's async calls come from :meth:`~smsgate.outbox.store.Store.open_calls`, so no part
knows which engine it runs on. On SIGTERM/SIGINT the worker stops claiming, gives back what it
has not started, lets in-flight sends finish for ``shutdown_grace`` seconds, records as
ambiguous any it had to abandon, writes everything and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.message import Status
from smsgate.outbox.retention import Retention
from smsgate.outbox.store import StartSend, State, Store, StoreCalls, Transition
from smsgate.outbox.worker.claimer import Claimer
from smsgate.outbox.worker.committer import Committer
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.handoff import Handoff
from smsgate.outbox.worker.leases import LeaseKeeper
from smsgate.outbox.worker.outcomes import Job, Outcomes, ReceiptTimeout, WorkerStats
from smsgate.outbox.worker.pruner import Pruner
from smsgate.outbox.worker.reconciler import Reconciler
from smsgate.outbox.worker.sender import Dropped, Sender
from smsgate.routing import Route, Router

if TYPE_CHECKING:
    from smsgate.providers.base import Provider
    from smsgate.ratelimit import RateLimiter

__all__ = ["ReceiptTimeout", "Worker", "WorkerStats"]

logger = logging.getLogger("smsgate.worker")


@runtime_checkable
class HasStore(Protocol):
    """What the worker takes from an :class:`~smsgate.outbox.Outbox`: its store and clock."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...


class Worker:
    """Sends the messages of a store (or of an :class:`~smsgate.outbox.Outbox`, whose store
    and clock it then uses).

    ``providers``: the provider objects, by name (or a sequence, named by ``provider.name``).
    ``router``: routes and retry policy (default: one route through all providers in order).
    ``limiter``: rate limits; build it with :func:`smsgate.outbox.buckets.shared_limiter` so all
    workers of the store share the buckets (default: no limits).
    ``concurrency``: sends in flight at once. ``batch_size``: rows per claim (default: the
    concurrency). ``lease``: seconds a claim lasts without renewal; a dead worker's messages are
    taken over that long after it stopped renewing. ``poll_interval``: the longest wait between
    two looks for due messages when idle. ``receipt_timeout``: how long a sent message waits
    for its delivery receipt before it is looked up, and when it ends ``unknown`` (see
    :class:`~.outcomes.ReceiptTimeout`; default one hour, then 72 hours);
    ``receipt_timeouts``: the same by provider name, for the providers that differ.
    ``retention``: what to delete, and how often (default: nothing is ever deleted).
    """

    def __init__(
        self,
        outbox: Store | HasStore,
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
        receipt_timeout: ReceiptTimeout | None = None,
        receipt_timeouts: Mapping[str, ReceiptTimeout] | None = None,
        retention: Retention | None = None,
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
        if isinstance(outbox, HasStore):
            self.store: Store = outbox.store
            self.clock: Clock = clock or outbox.clock
        else:
            self.store = outbox
            self.clock = clock or SYSTEM_CLOCK
        self.router = router or Router(
            [Route(name="default", providers=tuple(self.providers))], clock=self.clock
        )
        self.limiter = limiter
        self.concurrency = concurrency
        self.batch_size = batch_size or max(concurrency, 10)
        self.lease = lease
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.write_delay = write_delay
        self.close_providers = close_providers
        self.retention = retention
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.source = f"worker:{self.id}"
        self.stats = WorkerStats()
        #: the rows this worker holds a lease on, by id
        self.held: dict[str, Job] = {}
        self.outcomes = Outcomes(
            self.source,
            self.clock,
            self.stats,
            default=receipt_timeout,
            receipts=receipt_timeouts,
        )
        self.deadlines = Deadlines(send_timeout)
        self.reconciler = Reconciler(
            self.providers, self.router, self.outcomes, self.deadlines, self.stats
        )
        self._queue: Handoff[Job | None] = Handoff()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._in_flight = 0
        self._ran = False
        # the parts that call the store, made once its calls are open (in run)
        self._committer: Committer | None = None
        self._claimer: Claimer | None = None

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, store={self.store.url!r}, providers={list(self.providers)})"

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully (what a first SIGTERM/SIGINT does); a second call stops at once,
        recording abandoned sends as ambiguous."""
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Windows loops have no signal handlers (NotImplementedError), and only the main
            # thread may set them (RuntimeError): a worker run elsewhere stops through stop().
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
        calls = await self.store.open_calls()
        committer = self._committer = Committer(
            calls,
            self.id,
            self.clock,
            self.stats,
            lease=self.lease,
            delay=self.write_delay,
            parallel=calls.parallel,
            on_done=self._done,
            on_orphan=self._orphan,
            stopping=self._force,
        )
        claimer = self._claimer = Claimer(
            calls,
            self.id,
            self.clock,
            self.stats,
            self.held,
            self._queue,
            capacity=self.concurrency,
            batch_size=self.batch_size,
            lease=self.lease,
            poll_interval=self.poll_interval,
            stopping=self._stopping,
        )
        calls.on_work(claimer.wake)  # woken by the store where it can, else polling
        keeper = LeaseKeeper(calls, self.id, self.clock, self.stats, self.held, lease=self.lease)
        sender = Sender(
            self.providers,
            self.router,
            committer,
            self.outcomes,
            self.reconciler,
            self.deadlines,
            owner=self.id,
            clock=self.clock,
            stats=self.stats,
            limiter=self.limiter,
        )
        senders = [
            asyncio.create_task(self._send_loop(sender), name=f"smsgate-send-{i}")
            for i in range(self.concurrency)
        ]
        writer = asyncio.create_task(committer.run(), name="smsgate-writer")
        helpers = [asyncio.create_task(keeper.run()), asyncio.create_task(self.deadlines.watch())]
        if self.retention is not None and self.retention.enabled:
            pruner = Pruner(calls, self.id, self.clock, self.stats, self.retention)
            helpers.append(asyncio.create_task(pruner.run(), name="smsgate-pruner"))
        try:
            await claimer.run(self._idle(calls, committer) if until_idle else None)
        finally:
            self._stopping.set()
            unstarted = self._drain_queue()
            for _ in senders:
                self._queue.put_nowait(None)
            await self._shutdown(senders)
            committer.close()
            await asyncio.gather(writer, return_exceptions=True)
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await keeper.release_unstarted(unstarted)
            await calls.aclose()
            if watcher is not None:
                watcher.cancel()
            if self.close_providers:
                for provider in self.providers.values():
                    with contextlib.suppress(Exception):
                        await provider.aclose()
            logger.info("worker %s stopped: %s", self.id, self.stats.to_dict())
        return self.stats

    # -- wiring -------------------------------------------------------------------------------

    async def _send_loop(self, sender: Sender) -> None:
        stopping = self._stopping
        while True:
            job = await self._queue.get()
            if job is None:
                return
            if stopping.is_set():
                # Stopped before this job was started: it goes back with the rest not started
                # (the claimer's task may not have run since stop() to take the queue back).
                return
            self._in_flight += 1
            try:
                self._finish(job, await sender.process(job))
            except Dropped:
                self.held.pop(job.row.id, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not kill the worker: leave the row leased; when the lease expires
                # it is taken over (as an ambiguous send if it was started).
                logger.exception("worker %s: unexpected error processing %s", self.id, job.row.id)
                self.held.pop(job.row.id, None)
            finally:
                self._in_flight -= 1

    def _finish(self, job: Job, transition: Transition | None) -> None:
        """Queue the outcome for the next batch write (None: just let the row go)."""
        assert self._committer is not None and self._claimer is not None
        if transition is None:
            self._committer.release(job.row.id)
        else:
            self._committer.finish(transition)
            self._claimer.due_at(transition.next_attempt_at)

    def _done(self, ids: list[str]) -> None:
        """The committer wrote the outcomes (or releases) of ``ids``: no longer ours."""
        for message_id in ids:
            self.held.pop(message_id, None)
        if self._claimer is not None:
            self._claimer.room()

    def _orphan(self, start: StartSend, now: float) -> None:
        """A start written after its sender stopped waiting for it: nothing was sent."""
        job = self.held.get(start.id)
        if job is None or self._committer is None:
            return
        self._committer.finish(
            self.outcomes.transition(
                job,
                State.RETRYING,
                f"worker {self.id} stopped before the request was made",
                next_attempt_at=now,
                from_status=Status.SENDING,
            )
        )

    def _idle(self, calls: StoreCalls, committer: Committer) -> Callable[[], Awaitable[bool]]:
        async def idle() -> bool:
            if self.held or self._in_flight or committer.pending:
                return False
            due, leased = await calls.work_left()
            return due is None and leased is None

        return idle

    # -- stopping -----------------------------------------------------------------------------

    async def _shutdown(self, senders: list[asyncio.Task[None]]) -> None:
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

    def _drain_queue(self) -> list[str]:
        ids: list[str] = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                ids.append(job.row.id)
        return ids
