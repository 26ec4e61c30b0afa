"""The part ids of long messages (migration 0009), so their receipts fold after a restart.

A provider that reports one receipt per part (SMPP) gives each part an id of its own. The worker
writes them in the transaction that records the send (:func:`record_parts_in`, called by the SQL
store where it writes results); :mod:`smsgate.server.part_receipts` finds a part by the id its
receipt quotes, stores the part's final status and, once every part has one, folds them into the
message's status. See docs/smpp.md, *What survives a reconnect and a restart*.
"""

# ruff: noqa: S608 -- statements interpolate only placeholder lists and a locking clause

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from smsgate.message import Status
from smsgate.outbox.tables.base import Table

if TYPE_CHECKING:
    from smsgate.outbox.sql import Tx
    from smsgate.outbox.store import Transition


def part_key(part_id: str) -> str:
    """The form a part id is stored under: lower case, without leading zeros."""
    return part_id.strip().lower().lstrip("0") or "0"


class SentParts(NamedTuple):
    """The parts of one message as a send result named them."""

    provider: str
    message_id: str
    part_ids: Sequence[str]


class StoredPart(NamedTuple):
    number: int
    part_id: str
    #: the part's final status, None while its receipt has not come
    status: Status | None
    error_code: str | None


class PartFold(NamedTuple):
    """A message one of whose parts a receipt was for, with every part as stored now."""

    message_id: str
    #: the part the receipt was for (numbered from 1)
    number: int
    parts: list[StoredPart]

    @property
    def complete(self) -> bool:
        return all(part.status is not None for part in self.parts)


def record_parts_in(tx: Tx, sent: Sequence[SentParts]) -> None:
    """Inside the transaction recording the sends: remember each part of ``sent`` (a part id
    already known keeps its message)."""
    rows = [
        (s.provider, part_key(part_id), s.message_id, number, len(s.part_ids), part_id)
        for s in sent
        for number, part_id in enumerate(s.part_ids, start=1)
    ]
    if rows:
        tx.executemany(
            "INSERT INTO smsgate_message_parts (provider, part_key, message_id, part_number, "
            "total, part_id) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (provider, part_key) DO NOTHING",
            rows,
        )


def forget_parts_in(tx: Tx, message_ids: Sequence[str]) -> None:
    """Inside the transaction pruning messages: drop their parts (receipts that never came)."""
    where, params = tx.in_list("message_id", message_ids)
    tx.execute(f"DELETE FROM smsgate_message_parts WHERE {where}", params)


def parts_of(transitions: Sequence[Transition]) -> list[SentParts]:
    """The parts the transitions recording sends name (usually none)."""
    return [
        SentParts(t.provider, t.id, t.part_ids)
        for t in transitions
        if t.part_ids and t.provider is not None
    ]


def split_parted(
    transitions: Sequence[Transition],
) -> tuple[Sequence[Transition], list[Transition]]:
    """``transitions`` as those naming no parts and those that do, for an engine whose fast
    write cannot record parts in its one statement (they take its general path instead)."""
    if not any(t.part_ids for t in transitions):
        return transitions, []
    return [t for t in transitions if not t.part_ids], [t for t in transitions if t.part_ids]


class MessagePartTable(Table):
    needs = "folding the receipts of a long message's parts"

    def fold(
        self,
        provider: str,
        id_forms: Sequence[str],
        status: Status | None,
        error_code: str | None,
    ) -> PartFold | None:
        """The message a part receipt is for, found by any of ``id_forms`` (the forms the
        receipt's id may take), with ``status`` stored as the part's final status when given;
        None when no stored part has that id."""
        keys = sorted({part_key(form) for form in id_forms})
        with self._store.write_transaction() as tx:
            where, params = tx.in_list("part_key", keys)
            found = tx.execute(
                "SELECT message_id, part_number, part_key FROM smsgate_message_parts "
                f"WHERE provider = ? AND {where}",
                [provider, *params],
            )
            if not found:
                return None
            message_id, number, key = found[0]
            # Locked first, so two parts' receipts recorded at once do not both miss the other.
            rows = tx.execute(
                "SELECT part_number, part_id, status, error_code FROM smsgate_message_parts "
                "WHERE message_id = ? AND provider = ? ORDER BY part_number"
                + self._store._for_update,
                (message_id, provider),
            )
            parts = [
                StoredPart(int(n), str(pid), None if st is None else Status(st), code)
                for n, pid, st, code in rows
            ]
            if status is not None:
                tx.execute(
                    "UPDATE smsgate_message_parts SET status = ?, error_code = ? "
                    "WHERE provider = ? AND part_key = ?",
                    (status.value, error_code, provider, key),
                )
                parts = [
                    p._replace(status=status, error_code=error_code) if p.number == number else p
                    for p in parts
                ]
        return PartFold(str(message_id), int(number), parts)

    def forget(self, provider: str, message_id: str) -> None:
        """Drop a message's parts once their receipts have been folded."""
        with self._store.write_transaction() as tx:
            tx.execute(
                "DELETE FROM smsgate_message_parts WHERE message_id = ? AND provider = ?",
                (message_id, provider),
            )
