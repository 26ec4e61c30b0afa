"""The reconciler: settles sends whose outcome nobody knows.

A row a dead worker left in ``sending`` may have reached the provider: the route's
ambiguous-send policy decides (look it up, retry with the same key, re-send, or ``unknown``).
A row in ``reconciling`` is looked up at its provider (by its id where the provider has a
status fetch, else by content) and recorded as found, or decided again as not sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from smsgate.errors import AmbiguousSend, ConfigError, SmsgateError
from smsgate.message import SendResult
from smsgate.outbox.store import State, Transition
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, WorkerStats, with_reason
from smsgate.providers.base import Provider
from smsgate.routing import AmbiguousPolicy, Router, resolve_ambiguous_policy


class Reconciler:
    """Settles one worker's ambiguous sends through ``providers``."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        router: Router,
        outcomes: Outcomes,
        deadlines: Deadlines,
        stats: WorkerStats,
    ) -> None:
        self._providers = providers
        self._router = router
        self._outcomes = outcomes
        self._deadlines = deadlines
        self._stats = stats

    def after_takeover(self, job: Job) -> Transition:
        """A row left in ``sending`` by a worker whose lease expired: it may have been sent."""
        row = job.row
        message = job.message
        assert message is not None
        outcomes = self._outcomes
        name = row.provider or ""
        provider = self._providers.get(name)
        what = (
            f"worker {job.previous_owner} stopped during attempt {row.attempts} through {name} "
            "(its lease expired), so the message may have been sent"
        )
        try:
            route = self._router.route_for(message)
        except ConfigError as exc:
            self._stats.unknown += 1
            return outcomes.transition(job, State.UNKNOWN, f"{what}; {exc}")
        policy, why = resolve_ambiguous_policy(
            route.ambiguous,
            purpose=message.purpose,
            provider_dedupes=provider is not None and provider.capabilities.dedupes,
            provider_can_lookup=provider is not None and provider.capabilities.reconcile,
        )
        now = outcomes.clock.time()
        if policy is AmbiguousPolicy.RECONCILE:
            self._stats.reconciling += 1
            return outcomes.transition(
                job,
                State.RECONCILING,
                f"{what}; looking it up at {name} because {why}",
                next_attempt_at=now,
            )
        if policy in (AmbiguousPolicy.RETRY_SAME_KEY, AmbiguousPolicy.RESEND) and (
            route.retry.allows_retry(row.provider_attempt)
        ):
            self._stats.retried += 1
            how = (
                "re-sending (it may arrive twice)"
                if policy is AmbiguousPolicy.RESEND
                else "retrying with the same idempotency key"
            )
            return outcomes.transition(
                job,
                State.RETRYING,
                f"{what}; {how} because {why}",
                next_attempt_at=now,
                provider_attempt=row.provider_attempt + 1,
            )
        self._stats.unknown += 1
        return outcomes.transition(
            job,
            State.UNKNOWN,
            f"{what}; not sending again because {why}; status unknown until a receipt arrives",
        )

    async def reconcile(self, job: Job) -> Transition:
        """Look a row in ``reconciling`` up at its provider."""
        row = job.row
        message = job.message
        assert message is not None
        outcomes = self._outcomes
        name = row.provider or ""
        provider = self._providers.get(name)
        if provider is None:
            self._stats.unknown += 1
            return outcomes.transition(
                job,
                State.UNKNOWN,
                f"cannot look the message up: provider {name!r} is not configured on this "
                "worker; status unknown until a receipt arrives",
            )
        try:
            if row.provider_message_id and provider.capabilities.status_fetch:
                found: SendResult | None = await self._deadlines.call(
                    provider, provider.afetch_status(row.provider_message_id)
                )
            else:
                found = await self._deadlines.call(
                    provider, provider.areconcile(message, since=row.created_at)
                )
        except SmsgateError as error:
            lookup = AmbiguousSend(f"looking the message up failed: {error}", provider=name)
            decision = self._router.decide(
                message,
                provider=name,
                attempt=row.provider_attempt,
                error=lookup,
                provider_dedupes=provider.capabilities.dedupes,
                provider_can_lookup=True,
            )
            return outcomes.from_decision(job, decision, from_status=row.status)
        if found is None:
            decision = self._router.lookup_missed(
                message, provider=name, attempt=row.provider_attempt
            )
            decision = with_reason(
                decision, f"{name} has no record of it, so it was not sent; {decision.reason}"
            )
            return outcomes.from_decision(job, decision, from_status=row.status)
        self._stats.reconciled += 1
        pmid = found.provider_message_id
        return outcomes.provider_answer(
            job,
            name,
            found,
            f"found at {name}"
            + (f" as {pmid}" if pmid else "")
            + ": the ambiguous send did arrive, so it is not sent again",
            from_status=row.status,
            attempt=None,
        )
