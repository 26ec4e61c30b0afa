"""The reconciler: settles sends whose outcome nobody knows.

A row a dead worker left in ``sending`` may have reached the provider: the route's
ambiguous-send policy decides (look it up, retry with the same key, re-send, or ``unknown``).
A row in ``reconciling`` is looked up at its provider (by its id where the provider has a
status fetch, else by content) and recorded as found, or decided again as not sent.

A row ``sent`` whose delivery receipt has not come by its receipt timeout (providers retry
their callbacks little or not at all, so one that met a restart is lost) is looked up where
the provider has a status fetch, and a final status found is recorded as if the receipt had
arrived. Otherwise it is looked up again later, each wait twice the one before, and once the
validity period has passed (no receipt can come after it) it ends ``unknown`` with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from smsgate.errors import AmbiguousSend, ConfigError, SmsgateError
from smsgate.message import SendResult, Status
from smsgate.outbox.store import State, Transition
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, WorkerStats, iso, with_reason
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

    async def check_receipt(self, job: Job) -> Transition:
        """A ``sent`` row whose receipt timeout ended without a final receipt."""
        row = job.row
        outcomes = self._outcomes
        name = row.provider or ""
        provider = self._providers.get(name)
        timeout = outcomes.receipt_timeout(name)
        now = outcomes.clock.time()
        due = max(row.created_at, row.send_at or 0.0)
        give_up = row.expires_at if row.expires_at is not None else due + timeout.validity
        waited = max(0.0, now - due)
        source = f"receipt-lookup:{name}"
        pmid = row.provider_message_id
        can_fetch = provider is not None and provider.capabilities.status_fetch and bool(pmid)
        if provider is not None and pmid and can_fetch:
            try:
                found = await self._deadlines.call(provider, provider.afetch_status(pmid))
            except SmsgateError as error:
                why = f"looking it up at {name} failed: {error}"
            else:
                if found.status.is_final and found.status is not Status.UNKNOWN:
                    self._stats.receipts_looked_up += 1
                    return outcomes.provider_answer(
                        job,
                        name,
                        found,
                        f"no delivery receipt came in {waited:.0f} s; {name} reports "
                        f"{found.status} when asked",
                        from_status=row.status,
                        attempt=None,
                        source=source,
                    )
                why = f"{name} still reports {found.status} when asked"
        elif provider is None:
            why = f"provider {name!r} is not configured on this worker, so it cannot be asked"
        else:
            why = f"{name} cannot be asked for a message's status"
        if now >= give_up:
            self._stats.receipts_timed_out += 1
            return outcomes.transition(
                job,
                State.UNKNOWN,
                f"no delivery receipt from {name} by the end of the validity period "
                f"({iso(give_up)}); {why}; the outcome is unknown",
                source=source,
            )
        # Ask again after twice as long as it has waited so far (a provider reports most
        # outcomes within minutes, a few within days), never past the validity period.
        again = min(give_up, now + max(timeout.after, waited)) if can_fetch else give_up
        return outcomes.transition(
            job,
            State.SENT,
            f"no delivery receipt in {waited:.0f} s; {why}; "
            + (f"asking again at {iso(again)}" if can_fetch else f"waiting until {iso(again)}"),
            next_attempt_at=again,
            source=source,
        )
