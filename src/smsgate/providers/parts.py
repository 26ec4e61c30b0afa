"""The receipts of a long message's parts folded into one event for the message.

A provider that gives each part of a long message an id of its own (SMPP) gets one receipt per
part. The message's status is the worst of its parts' final states once every part has one (a
message one part of which failed has failed). The SMPP provider folds in memory
(:mod:`smsgate.providers.smpp`); after a restart the server folds from the stored parts
(:mod:`smsgate.server.part_receipts`). Both build the event here, under the same ``event_id``,
so a fold that both make is recorded once. See docs/smpp.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from smsgate.message import DeliveryEvent, Status

#: the worse of two final statuses wins the fold
SEVERITY = {
    Status.DELIVERED: 0,
    Status.UNKNOWN: 1,
    Status.EXPIRED: 2,
    Status.UNDELIVERED: 3,
    Status.FAILED: 4,
    Status.REJECTED: 5,
}


def folded_event(
    provider: str,
    message_id: str,
    part_ids: Sequence[str],
    states: Mapping[int, Status],
    codes: Mapping[int, str | None],
    *,
    to: str | None,
    last: Any,
) -> DeliveryEvent:
    """The message's event from each part's final state (``states`` and ``codes`` by part
    index from 0); ``last`` is the raw receipt that completed the fold."""
    folded = max(states.values(), key=lambda s: SEVERITY.get(s, 1))
    worst = min(i for i, s in states.items() if s == folded)
    return DeliveryEvent(
        provider=provider,
        provider_message_id=part_ids[0],
        message_id=message_id,
        status=folded,
        event_id=f"{part_ids[0]}:folded:{folded.value}",
        to=to,
        error_code=codes.get(worst),
        reason=f"{len(part_ids)} parts: "
        + ", ".join(f"{i + 1} {states[i].value}" for i in sorted(states)),
        raw={"part_ids": list(part_ids), "last": last},
    )


def is_folded(event: DeliveryEvent) -> bool:
    """Whether ``event`` is a fold built by :func:`folded_event`."""
    return isinstance(event.raw, dict) and "part_ids" in event.raw
