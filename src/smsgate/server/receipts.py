"""Delivery receipts from provider webhooks into the outbox, grouped into shared transactions.

A provider calls back once or twice per message sent, so a busy gateway receives receipts as
fast as it sends. Recorded one transaction each, every receipt waits for its own disk sync and
the write lock it holds meanwhile, which the in-process worker needs too. :class:`ReceiptRecorder`
does for receipts what :class:`~smsgate.server.submit.Submitter` does for submissions
(:class:`~smsgate.outbox.groupcommit.GroupCommit`): the receipts that arrive while one group is
being written are written next, in order, in one transaction. Each is still judged on its own (a duplicate of an earlier one, even
in the same group, is a duplicate; a status moves forward only; a receipt for a message not
stored yet is kept pending), and each webhook is answered only after the commit that stored it.
An idle server adds no delay: a lone receipt is written at once.

If a group's transaction fails, its receipts are recorded again one by one, so one receipt the
store cannot take fails only its own webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from smsgate.clock import Clock
from smsgate.message import DeliveryEvent
from smsgate.outbox import Outbox, ReceiptOutcome, RecordResult
from smsgate.outbox.groupcommit import GroupCommit, on_thread
from smsgate.outbox.outbox import receipt_of
from smsgate.outbox.store import Receipt

logger = logging.getLogger("smsgate.server.webhooks")


class ReceiptRecorder:
    """Records verified receipts through the outbox's store, grouping concurrent ones. Times
    come from the outbox's clock, as in :meth:`Outbox.record_event`."""

    def __init__(self, outbox: Outbox, *, group: int = 200) -> None:
        self.outbox = outbox
        self.clock: Clock = outbox.clock
        self._commit = GroupCommit(on_thread(self.record_now), group=group, name="smsgate-receipts")
        #: transactions written, and receipts in them (for tests and curiosity)
        self.transactions = 0
        self.recorded = 0

    @property
    def pending(self) -> int:
        """Receipts waiting for their group, or in the group being written."""
        return self._commit.pending

    def start(self) -> None:
        self._commit.start()

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        await self._commit.stop()

    async def record(self, event: DeliveryEvent) -> RecordResult:
        """Store one receipt (durably, before this returns), grouped with whatever else is being
        recorded right now."""
        return await self._commit(receipt_of(event, self.clock.time()))

    def record_now(self, receipts: Sequence[Receipt]) -> list[RecordResult | Exception]:
        """Record ``receipts`` in order, in one transaction if it can; one result per
        receipt, or the exception that one raised. Synchronous (it runs on a worker thread)."""
        store = self.outbox.store
        if len(receipts) > 1:
            try:
                outcomes: list[tuple[ReceiptOutcome, str | None]] = store.record_receipts(
                    receipts, self.clock.time()
                )
            except Exception as exc:  # it stored nothing: each on its own, so one fails alone
                logger.warning(
                    "recording %d receipts together failed (%s); recording them one by one",
                    len(receipts),
                    type(exc).__name__,
                )
            else:
                self.transactions += 1
                self.recorded += len(receipts)
                return [RecordResult(outcome, message_id) for outcome, message_id in outcomes]
        results: list[RecordResult | Exception] = []
        for receipt in receipts:
            try:
                outcome, message_id = store.record_receipt(receipt, self.clock.time())
            except Exception as exc:
                results.append(exc)
            else:
                self.transactions += 1
                self.recorded += 1
                results.append(RecordResult(outcome, message_id))
        return results
