"""The parts of concatenated inbound messages (migration 0007), stored as they arrive.

:mod:`smsgate.server.inbound_parts` decides when a message is whole; this module keeps its parts:
each part committed on its own, the waiting parts of one message read in a separate read (of two
last parts arriving together, the one committed second always sees both), and the parts of a
recorded message marked assembled.
"""

# ruff: noqa: S608 -- statements interpolate only a constant condition and placeholder lists

from __future__ import annotations

import json
from typing import NamedTuple

from smsgate.outbox.tables.base import Table

_GROUP = "provider = ? AND sender = ? AND to_number = ? AND reference = ? AND total = ?"


class PartGroup(NamedTuple):
    """What the parts of one message share."""

    provider: str
    sender: str
    to: str
    reference: str
    total: int


class StoredPart(NamedTuple):
    number: int
    provider_message_id: str
    body: str
    received_at: float
    #: the provider's payload of the part, as JSON text (None when it sent none)
    raw: str | None


class InboundPartTable(Table):
    needs = "the server"

    def add(
        self,
        group: PartGroup,
        number: int,
        provider_message_id: str,
        body: str,
        received_at: float,
        raw: object,
    ) -> None:
        """Store one part (a repeat of a stored part changes nothing)."""
        with self._store.write_transaction() as tx:
            tx.execute(
                "INSERT INTO smsgate_inbound_parts (provider, provider_message_id, sender, "
                "to_number, reference, part_number, total, body, received_at, raw) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider, provider_message_id) DO NOTHING",
                (
                    group.provider,
                    provider_message_id,
                    group.sender,
                    group.to,
                    group.reference,
                    number,
                    group.total,
                    body,
                    received_at,
                    None if raw is None else json.dumps(raw, default=str),
                ),
            )

    def waiting(self, group: PartGroup) -> list[StoredPart]:
        """The group's parts not yet assembled, by part number (repeats in arrival order)."""
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT part_number, provider_message_id, body, received_at, raw "
                f"FROM smsgate_inbound_parts WHERE {_GROUP} AND assembled = 0 "
                "ORDER BY part_number, received_at, provider_message_id",
                tuple(group),
            )
        return [
            StoredPart(int(number), str(part_id), str(body), float(at), raw)
            for number, part_id, body, at, raw in rows
        ]

    def mark_assembled(self, provider: str, provider_message_ids: list[str]) -> None:
        with self._store.write_transaction() as tx:
            where, params = tx.in_list("provider_message_id", provider_message_ids)
            tx.execute(
                f"UPDATE smsgate_inbound_parts SET assembled = 1 WHERE provider = ? AND {where}",
                [provider, *params],
            )
