"""What every part of the worker shares: the job a claim makes, the counters, and the one place
that turns a decision about a message into the transition the committer writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from smsgate.clock import Clock
from smsgate.errors import ConfigError, SmsgateError
from smsgate.message import Message, SendResult, Status
from smsgate.outbox.store import (
    STATUS_VALUES,
    NewEvent,
    State,
    StoredMessage,
    Transition,
    dumps,
    error_json,
    to_datetime,
)
from smsgate.routing import Action, Decision

#: provider statuses that mean "accepted, not yet delivered": recorded as ``sent``
ACCEPTED = frozenset({Status.SCHEDULED, Status.QUEUED, Status.SENDING, Status.SENT, Status.UNKNOWN})
# looked up once: on Python 3.11 an enum member looked up on its class, or its ``.value``, costs
# a tenth of a microsecond or more, and every message's outcome needs several
_SENT = State.SENT
_STATUS_VALUES = {status: status.value for status in Status}


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
    #: sent messages without a receipt past their timeout, looked up at the provider and found
    #: in a final status
    receipts_looked_up: int = 0
    #: sent messages that ended unknown: no receipt by the end of their validity period
    receipts_timed_out: int = 0
    released: int = 0
    dropped: int = 0
    store_errors: int = 0
    #: messages and events deleted by retention
    pruned_messages: int = 0
    pruned_events: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class Job:
    """One claimed row while this worker holds it."""

    row: StoredMessage
    previous_owner: str | None
    message: Message | None = None
    started: bool = False


def state_for(status: Status) -> State:
    """The state a provider's answer leaves a message in."""
    return _SENT if status in ACCEPTED else State.for_status(status)


@dataclass(frozen=True, slots=True)
class ReceiptTimeout:
    """How long a provider's delivery receipt is waited for.

    ``after``: seconds after a send with no final receipt before the message is looked up at
    the provider (where it has a status fetch), and the first wait between look-ups, which
    double while the provider still has no final status. ``validity``: the provider's validity
    period, in seconds from when the message was due; no receipt can come after it (nor after
    the message's own validity), so a message still without one ends ``unknown``.
    """

    after: float = 3600.0
    validity: float = 72 * 3600.0

    def __post_init__(self) -> None:
        if not (self.after > 0 and self.validity > 0):
            raise ConfigError(
                "a receipt timeout needs positive seconds (after, validity)",
                field="receipt_timeout",
            )


class Outcomes:
    """Builds the transitions of one worker (its event source, its clock, its counters).

    ``receipts``: the receipt timeout of each provider by name (``default`` for the others).
    """

    def __init__(
        self,
        source: str,
        clock: Clock,
        stats: WorkerStats,
        *,
        default: ReceiptTimeout | None = None,
        receipts: Mapping[str, ReceiptTimeout] | None = None,
    ) -> None:
        self.source = source
        self.clock = clock
        self.stats = stats
        self._default = default or ReceiptTimeout()
        self._receipts = dict(receipts or {})

    def receipt_timeout(self, provider: str) -> ReceiptTimeout:
        return self._receipts.get(provider, self._default)

    def transition(
        self,
        job: Job,
        state: State,
        reason: str,
        *,
        error: SmsgateError | None = None,
        next_attempt_at: float | None = None,
        provider_attempt: int | None = None,
        from_status: Status | None = None,
        source: str | None = None,
    ) -> Transition:
        """Move ``job``'s row to ``state`` for ``reason`` (no send involved)."""
        row = job.row
        before = from_status or row.status
        return Transition(
            row.id,
            state,
            NewEvent(
                row.id,
                self.clock.time(),
                _STATUS_VALUES[before],
                STATUS_VALUES[state],
                source or self.source,
                reason,
                row.provider,
                None,
            ),
            next_attempt_at=next_attempt_at,
            provider_attempt=provider_attempt,
            last_error=None if error is None else error_json(error),
        )

    def from_decision(self, job: Job, decision: Decision, *, from_status: Status) -> Transition:
        """What the router decided (retry at T, fail over, look up, wait, fail), counted."""
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
                _STATUS_VALUES[from_status],
                STATUS_VALUES[state],
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

    def provider_answer(
        self,
        job: Job,
        name: str,
        result: SendResult,
        reason: str,
        *,
        from_status: Status,
        attempt: int | None,
        plan: Decision | None = None,
        source: str | None = None,
    ) -> Transition:
        """The provider's answer about the message (a send accepted, a lookup that found it).
        A message left ``sent`` is due for a receipt look-up when its receipt timeout ends."""
        row = job.row
        state = state_for(result.status)
        now = self.clock.time()
        part_ids = result.part_ids
        return Transition(
            row.id,
            state,
            NewEvent(
                row.id,
                now,
                _STATUS_VALUES[from_status],
                STATUS_VALUES[state],
                source or self.source,
                reason,
                name,
                attempt,
                None,
                raw_json(result.raw),
            ),
            next_attempt_at=now + self.receipt_timeout(name).after if state is _SENT else None,
            provider=name,
            provider_attempt=None if plan is None else plan.attempt,
            route=None if plan is None else plan.route,
            provider_message_id=result.provider_message_id,
            part_ids=part_ids if len(part_ids) > 1 else (),
        )


def raw_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return dumps(value)
    except (TypeError, ValueError):
        return dumps(repr(value))


def iso(ts: float) -> str:
    return to_datetime(ts).isoformat()


def with_reason(decision: Decision, reason: str) -> Decision:
    return replace(decision, reason=reason)
