"""Receipts and inbound messages a provider pushes over its own connection (SMPP's deliver_sm).

They take the path webhooks take once verified: receipts through the
:class:`~smsgate.server.receipts.ReceiptRecorder` (grouped, de-duplicated, moving a message
forward only, a provider's opt-out suppressing the number) and inbound messages through the
:class:`~smsgate.server.inbound.InboundHandler` (opt-out keywords, replies, user webhooks). The
server hands one :class:`PushedEvents` to every provider's ``alisten`` at start; webhook
providers ignore it. A part's receipt the provider could not fold (it restarted since the send)
is folded from the stored parts (:mod:`smsgate.server.part_receipts`).
"""

from __future__ import annotations

from collections.abc import Sequence

from smsgate.message import DeliveryEvent, InboundMessage
from smsgate.providers.base import Provider
from smsgate.server.part_receipts import PartReceipts
from smsgate.server.services import Services


class PushedEvents:
    """An :class:`~smsgate.providers.base.EventSink` feeding the server's recorders."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.parts = PartReceipts(svc.outbox)

    async def delivery(self, provider: Provider, events: Sequence[DeliveryEvent]) -> None:
        from smsgate.server.routes.providers import record_events

        recorded = [e for event in events for e in await self.parts.events(provider, event)]
        stored = await record_events(self.svc, provider, recorded)
        for event in recorded:
            await self.parts.done(provider, event)
        self.svc.metrics.webhooks.labels(
            provider.name, "status", "stored" if stored else "duplicate"
        ).inc()

    async def part_delivery(self, provider: Provider, event: DeliveryEvent) -> None:
        """Keep one part's receipt before the provider has them all (a restart may come
        between): its state with the message's parts, an entry in the message's history."""
        events = await self.parts.part(provider, event)
        if events:
            await self.delivery(provider, events)

    async def inbound(self, provider: Provider, messages: Sequence[InboundMessage]) -> None:
        stored = await self.svc.inbound.handle(messages)
        if stored:
            self.svc.dispatcher.wake()
        self.svc.metrics.webhooks.labels(
            provider.name, "inbound", "stored" if stored else "duplicate"
        ).inc()
