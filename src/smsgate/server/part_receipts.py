"""Receipts of a long message's parts that their provider could not fold: it restarted since the
send (or forgot the parts), so a part's receipt arrives under the part's own id, with no message.

The send's result stored each part's id (:mod:`smsgate.outbox.tables.message_parts`); a receipt
found there is recorded in the message's history as that part's, without moving the message,
and once every part has a final state the fold of :mod:`smsgate.providers.parts` moves it
(delivered only when every part is). See docs/smpp.md.
"""

from __future__ import annotations

from dataclasses import replace

import anyio.to_thread

from smsgate.message import DeliveryEvent, Status
from smsgate.outbox import Outbox
from smsgate.outbox.tables.message_parts import MessagePartTable, PartFold
from smsgate.providers.base import Provider
from smsgate.providers.parts import folded_event, is_folded


class PartReceipts:
    def __init__(self, outbox: Outbox) -> None:
        self.table = MessagePartTable.of(outbox.store)

    async def events(self, provider: Provider, event: DeliveryEvent) -> list[DeliveryEvent]:
        """What to record for ``event``: itself, unless it is a stored part's receipt that its
        provider could not match (it restarted since the send): see :meth:`part`."""
        if event.message_id is not None:
            return [event]
        return await self.part(provider, event) or [event]

    async def part(self, provider: Provider, event: DeliveryEvent) -> list[DeliveryEvent] | None:
        """For one part's receipt: the part's entry in its message's history and, once every
        part has a final state, the fold; None when ``event`` is for no part known here or to
        the provider."""
        fold = await anyio.to_thread.run_sync(
            self.table.fold,
            provider.name,
            provider.message_id_forms(event.provider_message_id),
            event.status if event.status.is_final else None,
            event.error_code,
        )
        if fold is not None:
            entry = _part_entry(event, fold.message_id, fold.number, len(fold.parts))
            return [entry, _folded(provider, fold, event)] if fold.complete else [entry]
        if event.message_id is not None and event.part is not None:
            # The provider knows the message, but its result is not stored yet (the receipt
            # overtook the worker's commit): the history still gets the part.
            return [_part_entry(event, event.message_id, event.part, event.parts)]
        return None

    async def done(self, provider: Provider, event: DeliveryEvent) -> None:
        """Forget the stored parts of a message whose fold ``event`` was recorded."""
        if event.message_id is not None and is_folded(event):
            await anyio.to_thread.run_sync(self.table.forget, provider.name, event.message_id)


def _part_entry(
    event: DeliveryEvent, message_id: str, number: int, total: int | None
) -> DeliveryEvent:
    # One part's receipt shows the provider has the message, no more: the message's status
    # waits for the fold.
    reason = event.status.value + (f" ({event.reason})" if event.reason else "")
    return replace(
        event, status=Status.SENT, message_id=message_id, reason=reason, part=number, parts=total
    )


def _folded(provider: Provider, fold: PartFold, last: DeliveryEvent) -> DeliveryEvent:
    states = {p.number - 1: p.status for p in fold.parts if p.status is not None}
    codes = {p.number - 1: p.error_code for p in fold.parts}
    part_ids = [p.part_id for p in fold.parts]
    return folded_event(
        provider.name, fold.message_id, part_ids, states, codes, to=last.to, last=last.raw
    )
