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

# ruff: noqa: S608 -- statements interpolate only a constant condition and placeholder lists

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.message import InboundMessage
from smsgate.outbox.sql import SqlStore

_GROUP = "provider = ? AND sender = ? AND to_number = ? AND reference = ? AND total = ?"


class InboundParts:
    def __init__(self, store: SqlStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    def add(self, message: InboundMessage) -> InboundMessage | None:
        """Store ``message`` (a part); the whole message once every part is stored, else None."""
        part = message.part
        if part is None:
            return message
        received = message.received_at.timestamp() if message.received_at else self.clock.time()
        group = (message.provider, message.sender, message.to, part.reference, part.total)
        with self.store.write_transaction() as tx:
            tx.execute(
                "INSERT INTO smsgate_inbound_parts (provider, provider_message_id, sender, "
                "to_number, reference, part_number, total, body, received_at, raw) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider, provider_message_id) DO NOTHING",
                (
                    message.provider,
                    message.provider_message_id,
                    message.sender,
                    message.to,
                    part.reference,
                    part.number,
                    part.total,
                    message.body,
                    received,
                    None if message.raw is None else json.dumps(message.raw, default=str),
                ),
            )
        with self.store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT part_number, provider_message_id, body, received_at, raw "
                f"FROM smsgate_inbound_parts WHERE {_GROUP} AND assembled = 0 "
                "ORDER BY part_number, received_at, provider_message_id",
                group,
            )
        first: dict[int, tuple[str, str, float, str | None]] = {}
        for number, part_id, body, at, raw in rows:
            first.setdefault(int(number), (str(part_id), str(body), float(at), raw))
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
        with self.store.write_transaction() as tx:
            where, params = tx.in_list("provider_message_id", ids)
            tx.execute(
                f"UPDATE smsgate_inbound_parts SET assembled = 1 WHERE provider = ? AND {where}",
                [whole.provider, *params],
            )
