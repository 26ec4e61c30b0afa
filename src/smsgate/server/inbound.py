"""What happens to a message a person sends us: stored once, opt-out keywords applied, answered.

The inbound row, the suppression change and the webhook events it causes are one transaction, so
a provider's retry of the same webhook changes nothing. Replies (HELP, and STOP/START
confirmations when configured) go through the outbox with an idempotency key derived from the
inbound message, so they too are sent once; they are not blocked by the opt-out they confirm.
They leave from the number the message was sent to, through the provider it arrived on (see
``Message.via``), whatever the routes say.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import SmsgateError
from smsgate.ids import new_id
from smsgate.message import InboundMessage, Purpose
from smsgate.outbox import Outbox
from smsgate.outbox.suppressions import ALL_NUMBERS, number_key
from smsgate.outbox.tables.inbound_parts import InboundPartTable
from smsgate.outbox.tables.server import (
    InboundRecord,
    OutboundEvent,
    ServerStore,
    Suppression,
)
from smsgate.server.inbound_parts import InboundParts
from smsgate.server.optout import Action, classify, keyword, scope_of
from smsgate.server.settings import ServerSettings
from smsgate.server.webhooks_out import iso, make_event

logger = logging.getLogger("smsgate.server.inbound")


class InboundHandler:
    def __init__(
        self,
        outbox: Outbox,
        store: ServerStore,
        settings: ServerSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.outbox = outbox
        self.store = store
        self.settings = settings
        self.clock = clock
        self.parts = InboundParts(InboundPartTable.of(outbox.store), clock=clock)

    async def handle(self, messages: Sequence[InboundMessage]) -> int:
        """Store and act on each message; returns how many were new."""
        return await anyio.to_thread.run_sync(self.handle_sync, list(messages))

    def handle_sync(self, messages: list[InboundMessage]) -> int:
        return sum(self._whole_or_part(message) for message in messages)

    def _whole_or_part(self, message: InboundMessage) -> bool:
        if message.part is None:
            return self._one(message)
        # A fragment of a longer text: stored; handled once, whole, when its last part is in.
        whole = self.parts.add(message)
        if whole is None:
            return False
        new = self._one(whole)
        self.parts.assembled(whole)
        return new

    def _one(self, message: InboundMessage) -> bool:
        now = self.clock.time()
        received = message.received_at.timestamp() if message.received_at else now
        sender = number_key(message.sender)
        ours = number_key(message.to)
        action = classify(message.body)
        record = InboundRecord(
            id=new_id("in"),
            provider=message.provider,
            provider_message_id=message.provider_message_id,
            sender=sender,
            to=ours,
            body=message.body,
            media=tuple(message.media),
            action=None if action is None else action.value,
            received_at=received,
        )
        events = [make_event("inbound.received", _inbound_data(record), received)]
        add = remove = None
        changes: list[OutboundEvent] = []
        if action in (Action.OPT_OUT, Action.OPT_OUT_ALL):
            (our_number,) = scope_of(action, ours)
            add = Suppression(sender, our_number, "keyword", keyword(message.body), None, received)
            changes.append(make_event("suppression.added", _suppression_data(add), received))
        elif action is Action.OPT_IN:
            numbers = scope_of(action, ours)
            remove = (sender, numbers)
            changes.append(
                make_event(
                    "suppression.removed",
                    {
                        "recipient": sender,
                        "our_numbers": numbers,
                        "source": "keyword",
                        "keyword": keyword(message.body),
                    },
                    received,
                )
            )
        new = self.store.record_inbound(
            record, message.raw, add=add, remove=remove, events=events, change_events=changes
        )
        if new and action is not None:
            self._reply(message, record, action)
        return new

    def provider_opt_out(
        self, recipient: str, our_number: str | None, provider: str, reason: str | None
    ) -> bool:
        """A provider reported that ``recipient`` opted out (a STOP it handled itself, or its
        refusal to deliver to an unsubscribed number): suppress them for ``our_number`` (None:
        for all of ours) as if they had sent STOP to us. Returns True when newly suppressed."""
        item = Suppression(
            recipient=number_key(recipient),
            our_number=ALL_NUMBERS if not our_number else number_key(our_number),
            source="provider",
            keyword=None,
            reason=f"reported by {provider}" + (f": {reason}" if reason else ""),
            created_at=self.clock.time(),
        )
        return self.store.add_suppression(item, [suppression_event(item)])

    def _reply(self, message: InboundMessage, record: InboundRecord, action: Action) -> None:
        text = {
            Action.HELP: self.settings.help_text,
            Action.OPT_OUT: self.settings.stop_reply,
            Action.OPT_OUT_ALL: self.settings.stop_reply,
            Action.OPT_IN: self.settings.start_reply,
        }[action]
        if not text:
            return
        reply: dict[str, Any] = {
            "to": record.sender,
            "body": text,
            "purpose": Purpose.TRANSACTIONAL.value,
            "idempotency_key": f"reply:{record.provider}:{record.provider_message_id}",
            "metadata": {"in_reply_to": record.id, "keyword": action.value},
            # from the number it was sent to, through the provider it arrived on: that number
            # may exist only there
            "via": record.provider,
        }
        if record.to:
            reply["sender"] = record.to
        try:
            self.outbox.submit(reply, check_opt_outs=False)
        except SmsgateError as exc:
            logger.warning(
                "could not queue the %s reply to inbound %s: %s", action.value, record.id, exc
            )


def _inbound_data(record: InboundRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "provider": record.provider,
        "provider_message_id": record.provider_message_id,
        "from": record.sender,
        "to": record.to,
        "body": record.body,
        "media": list(record.media),
        "action": record.action,
        "received_at": iso(record.received_at),
    }


def _suppression_data(item: Suppression) -> dict[str, Any]:
    return {
        "recipient": item.recipient,
        "our_number": item.our_number,
        "source": item.source,
        "keyword": item.keyword,
        "reason": item.reason,
        "created_at": iso(item.created_at),
    }


def suppression_event(item: Suppression) -> OutboundEvent:
    return make_event("suppression.added", _suppression_data(item), item.created_at)
