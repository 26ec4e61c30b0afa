"""Retention: how long finished messages and their history are kept, and the pruning itself.

Only messages in a final state (delivered, undelivered, failed, rejected, expired, canceled,
unknown) are ever deleted, once they have been in it longer than their state's age; a message's
events go with it. ``events`` additionally drops the history entries older than it of messages
that are final (the message itself stays). Suppressions (opt-outs) are never pruned.

A pruned message's idempotency key is free again: submitting with it afterwards creates a new
message. Keep messages longer than any client may retry with the same key.

Pruning runs in batches of at most ``batch_size`` messages, one store transaction each, so a
writer waiting behind it (the worker's committer) waits for one small batch at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from smsgate.outbox.store import FINAL_STATES, State, Store

__all__ = ["FINAL_STATES", "PruneResult", "Retention", "prune"]


class PruneResult(NamedTuple):
    """What one prune pass deleted (or, dry, would delete)."""

    messages: int = 0
    events: int = 0

    def __add__(self, other: object) -> PruneResult:
        if not isinstance(other, PruneResult):
            return NotImplemented
        return PruneResult(self.messages + other.messages, self.events + other.events)

    def to_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "events": self.events}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long to keep things, in seconds (None: forever).

    ``messages``: the age of every final state without one of its own in ``states``.
    ``events``: history entries of final messages older than this go (the message stays).
    ``batch_size``: messages (or events) per transaction. ``interval``: seconds the worker
    waits after a pass that found nothing more to prune.
    """

    messages: float | None = None
    states: Mapping[State, float] = field(default_factory=lambda: MappingProxyType({}))
    events: float | None = None
    batch_size: int = 500
    interval: float = 60.0

    def __post_init__(self) -> None:
        for state in self.states:
            if state not in FINAL_STATES:
                raise ValueError(f"{state.value!r} is not a final state; only those are pruned")

    @property
    def enabled(self) -> bool:
        return self.messages is not None or bool(self.states) or self.events is not None

    def cutoffs(self, now: float) -> dict[State, float]:
        """For each final state with an age, the time before which its messages go."""
        cutoffs: dict[State, float] = {}
        for state in FINAL_STATES:
            age = self.states.get(state, self.messages)
            if age is not None:
                cutoffs[state] = now - age
        return cutoffs

    def events_cutoff(self, now: float) -> float | None:
        return None if self.events is None else now - self.events

    @classmethod
    def older_than(cls, age: float, *, batch_size: int = 500) -> Retention:
        """Every final state after ``age`` seconds (what ``smsgate db prune --older-than``
        applies)."""
        return cls(messages=age, batch_size=batch_size)


def prune(store: Store, retention: Retention, now: float, *, dry_run: bool = False) -> PruneResult:
    """Apply ``retention`` to ``store`` until nothing more is due, batch by batch (what
    ``smsgate db prune`` does); ``dry_run``: count what would go instead."""
    cutoffs = retention.cutoffs(now)
    events_before = retention.events_cutoff(now)
    if dry_run:
        return PruneResult(*store.prune(cutoffs, events_before, retention.batch_size, dry_run=True))
    total = PruneResult()
    while True:
        done = PruneResult(*store.prune(cutoffs, events_before, retention.batch_size))
        total += done
        if not any(done):
            return total
