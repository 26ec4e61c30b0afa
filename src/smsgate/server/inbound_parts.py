"""Concatenated inbound messages put back together, durably.

A long text a person sends reaches some providers (Vonage) as separate webhooks, one per part,
in any order and sometimes more than once. Each part is stored as it arrives, before the
provider gets its 200, so a crash loses nothing the provider considers delivered. When the last
part is stored the whole message, its parts in order, is handed on to be recorded like any other
inbound message, once: its id is derived from the parts, and recording it is itself idempotent,
so a crash between recording it and marking its parts assembled only repeats a no-op.

Each part is committed before the waiting parts are counted, in a separate read: of two last
parts arriving together, the one committed second always sees both.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.message import InboundMessage
from smsgate.outbox.tables.inbound_parts import InboundPartTable, PartGroup


class InboundParts:
    def __init__(self, table: InboundPartTable, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.table = table
        self.clock = clock

    def add(self, message: InboundMessage) -> InboundMessage | None:
        """Store ``message`` (a part); the whole message once every part is stored, else None."""
        part = message.part
        if part is None:
            return message
        received = message.received_at.timestamp() if message.received_at else self.clock.time()
        group = PartGroup(message.provider, message.sender, message.to, part.reference, part.total)
        self.table.add(
            group, part.number, message.provider_message_id, message.body, received, message.raw
        )
        first: dict[int, tuple[str, str, float, str | None]] = {}
        for stored in self.table.waiting(group):
            first.setdefault(
                stored.number,
                (stored.provider_message_id, stored.body, stored.received_at, stored.raw),
            )
        if len(first) < part.total:
            return None
        ordered = [first[number] for number in range(1, part.total + 1)]
        return replace(
            message,
            # Derived from the parts, so a repeat of the assembly is the same message.
            provider_message_id="concat:" + "+".join(part_id for part_id, *_ in ordered),
            body="".join(body for _, body, _, _ in ordered),
            received_at=datetime.fromtimestamp(max(at for *_, at, _ in ordered), UTC),
            raw={"parts": [None if raw is None else json.loads(raw) for *_, raw in ordered]},
            part=None,
        )

    def assembled(self, whole: InboundMessage) -> None:
        """Mark the parts of ``whole`` (returned by :meth:`add` and recorded) as done."""
        ids = whole.provider_message_id.removeprefix("concat:").split("+")
        self.table.mark_assembled(whole.provider, ids)
