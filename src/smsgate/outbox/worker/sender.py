"""The sender: takes one claimed row through its route (River's executor).

Plan (the router picks a provider, skipping open circuits), rate limit (tokens from the shared
buckets), **start** (the row moves to ``sending`` in a committed write *before* the request: the
crash-safety mark), send, then decide: success records the provider's id, an error goes to the
router, whose decision (retry at T, fail over, look up, fail) is the outcome. Rows that need a
lookup rather than a send go to the :class:`~.reconciler.Reconciler`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from smsgate.clock import Clock
from smsgate.errors import AmbiguousSend, ConfigError, ProviderUnavailable, SmsgateError
from smsgate.message import Status
from smsgate.outbox.codec import UnreadableRow, message_from_row
from smsgate.outbox.store import STATUS_VALUES, WAITING, NewEvent, StartSend, State, Transition
from smsgate.outbox.worker.committer import Committer
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, WorkerStats, iso, state_for
from smsgate.outbox.worker.reconciler import Reconciler
from smsgate.providers.base import Provider
from smsgate.ratelimit import RateLimiter
from smsgate.routing import Action, Decision, Router

logger = logging.getLogger("smsgate.worker")
T = TypeVar("T")

# The members the send path compares with, once: on Python 3.11 looking a member up on its enum
# class (``State.SENT``) costs about 0.1 µs, and its ``.value`` twice that, for every message.
_SENDING, _SENT, _RECONCILING = State.SENDING, State.SENT, State.RECONCILING
_EXPIRED = State.EXPIRED
_SENDING_STATUS = Status.SENDING
_SENDING_VALUE = Status.SENDING.value
_WAIT, _HOLD = Action.WAIT, Action.HOLD


class TokenPool:
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


class Sender:
    """Works one claimed row to an outcome, handed to ``committer``."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        router: Router,
        committer: Committer,
        outcomes: Outcomes,
        reconciler: Reconciler,
        deadlines: Deadlines,
        *,
        owner: str,
        clock: Clock,
        stats: WorkerStats,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._providers = providers
        self._router = router
        self._committer = committer
        self._outcomes = outcomes
        self._reconciler = reconciler
        self._deadlines = deadlines
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self._limiter = limiter
        self._pools: dict[tuple[str, str | None], TokenPool] = {}

    async def process(self, job: Job) -> Transition | None:
        """Work ``job``; returns its outcome (None: nothing to record, let the row go), or
        raises :class:`Dropped` when the row is no longer this worker's."""
        row = job.row
        now = self._clock.time()
        try:
            job.message = message_from_row(row)
        except UnreadableRow as exc:
            # Quarantine: retrying a row that does not decode would fail at every lease expiry.
            self._stats.failed += 1
            return self._outcomes.transition(job, State.FAILED, exc.message, error=exc)
        state = row.state
        if state is _SENDING:
            return self._reconciler.after_takeover(job)
        if state is _SENT:  # its receipt timeout ended without a receipt
            return await self._reconciler.check_receipt(job)
        if row.expires_at is not None and now >= row.expires_at:
            self._stats.expired += 1
            return self._outcomes.transition(
                job,
                _EXPIRED,
                f"its validity ended at {iso(row.expires_at)} before it could be sent",
            )
        if state is _RECONCILING:
            return await self._reconciler.reconcile(job)
        if state in WAITING:
            return await self.send(job)
        return None  # finished meanwhile (a receipt): nothing to do but let go

    async def send(self, job: Job) -> Transition:
        row = job.row
        message = job.message
        assert message is not None
        outcomes = self._outcomes
        try:
            plan = self._router.plan(message, provider=row.provider, attempt=row.provider_attempt)
        except ConfigError as exc:
            self._stats.failed += 1
            return outcomes.transition(job, State.FAILED, str(exc), error=exc)
        action = plan.action
        if action is _WAIT or action is _HOLD:
            self._stats.waited += 1
            return outcomes.from_decision(job, plan, from_status=row.status)
        name = plan.provider
        assert name is not None
        provider = self._providers.get(name)
        if provider is None:
            error = ProviderUnavailable(
                f"provider {name!r} is in route {plan.route} but not configured on this worker",
                provider=name,
            )
            decision = self._router.decide(
                message, provider=name, attempt=plan.attempt, error=error
            )
            return outcomes.from_decision(job, decision, from_status=row.status)
        if self._limiter is not None:
            await self._pool(name, message.sender or provider.sender).take()
        attempt = row.attempts + 1
        start = StartSend(
            row.id,
            name,
            plan.attempt,
            plan.route,
            NewEvent(
                row.id,
                self._clock.time(),
                STATUS_VALUES[row.state],
                _SENDING_VALUE,
                outcomes.source,
                f"attempt {attempt}: {plan.reason}",
                name,
                attempt,
            ),
        )
        # If this task is cancelled while waiting, nothing was sent: the committer hands the
        # start back to be undone once it is written.
        if not await self._committer.start(start):
            # canceled, or our lease was lost: someone else owns it now
            self._stats.dropped += 1
            raise Dropped(row.id)
        job.started = True
        try:
            result = await self._deadlines.call(provider, provider.asend(message))
        except SmsgateError as error:
            return self._after_error(job, name, plan, error)
        except asyncio.CancelledError:
            stopped = AmbiguousSend(
                f"worker {self._owner} stopped while waiting for {name}'s answer", provider=name
            )
            self._committer.finish(self._after_error(job, name, plan, stopped))
            raise
        except Exception as exc:  # a provider bug after the request may have gone out
            logger.exception("worker %s: %s raised unexpectedly", self._owner, name)
            broken = AmbiguousSend(f"{name} raised {type(exc).__name__}: {exc}", provider=name)
            return self._after_error(job, name, plan, broken)
        if result.error is not None:
            return self._after_error(job, name, plan, result.error)
        self._router.record_success(name)
        self._stats.sent += 1
        pmid = result.provider_message_id
        reason = f"accepted by {name}" + (f" as {pmid}" if pmid else "")
        if state_for(result.status) is not _SENT:
            reason += f" (provider status {result.status})"
        return outcomes.provider_answer(
            job, name, result, reason, from_status=_SENDING_STATUS, attempt=attempt, plan=plan
        )

    def _after_error(self, job: Job, name: str, plan: Decision, error: SmsgateError) -> Transition:
        assert job.message is not None
        caps = self._providers[name].capabilities
        decision = self._router.decide(
            job.message,
            provider=name,
            attempt=plan.attempt,
            error=error,
            provider_dedupes=caps.dedupes,
            provider_can_lookup=caps.reconcile,
        )
        if decision.penalty and self._limiter is not None:
            task = asyncio.ensure_future(self._limiter.penalize(name, decision.penalty))
            task.add_done_callback(_log_failure)
        return self._outcomes.from_decision(job, decision, from_status=Status.SENDING)

    def _pool(self, provider: str, sender: str | None) -> TokenPool:
        key = (provider, sender)
        pool = self._pools.get(key)
        if pool is None:
            assert self._limiter is not None
            pool = self._pools[key] = TokenPool(self._limiter, provider, sender)
        return pool


class Dropped(Exception):
    """The row is no longer this worker's (canceled, or its lease taken over) before a send."""


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("slowing a provider's bucket failed: %s", task.exception())
