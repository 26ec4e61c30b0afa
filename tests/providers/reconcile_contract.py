"""What every provider that can look a message up without its id must show (``areconcile``).

"Not found" is proof that a send never arrived only when every page of the window since the
first attempt was read: a failed page, a page not in the provider's format, more pages than the
lookup may read, or no start time leave the question open (:class:`AmbiguousSend`), and the
outbox then keeps the message ``unknown`` with that reason instead of sending it again. A
provider's test module subclasses :class:`ReconcileContract` and names its emulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.errors import AmbiguousSend
from smsgate.message import Message, SendResult
from smsgate.providers import create_provider
from smsgate.providers.base import Provider

TO = "+15555550100"
OTHER = "+15555550111"


def reconcile(url: str, message: Message, since: float | None, **attrs: Any) -> SendResult | None:
    """One lookup through a fresh provider made from ``url``, with ``attrs`` set on it."""
    provider = create_provider(url)
    for name, value in attrs.items():
        setattr(provider, name, value)

    async def run() -> SendResult | None:
        try:
            return await provider.areconcile(message, since=since)
        finally:
            await provider.aclose()

    return asyncio.run(run())


def send(url: str, messages: list[Message]) -> list[SendResult]:
    provider: Provider = create_provider(url)

    async def run() -> list[SendResult]:
        try:
            return [await provider.asend(m) for m in messages]
        finally:
            await provider.aclose()

    return asyncio.run(run())


class ReconcileContract:
    emulator_cls: ClassVar[type[Emulator]]
    #: records per list page in these tests, so that a few messages fill several pages
    page_size: ClassVar[int] = 2
    #: whether a record the lookup lists can be told to be this very message (false for a
    #: provider whose list carries neither our id nor the text: a match is then no proof)
    identifies: ClassVar[bool] = True

    @pytest.fixture
    def emulator(self) -> Iterator[EmulatorThread]:
        made = self.emulator_cls()
        made.max_page_size = self.page_size
        with made.run_in_thread() as running:
            yield running

    def lookup(
        self, url: str, message: Message, since: float | None, **attrs: Any
    ) -> SendResult | None:
        """:func:`reconcile`, asking for the pages of :attr:`page_size` the emulator serves."""
        return reconcile(url, message, since, reconcile_page_size=self.page_size, **attrs)

    def decoys(self, message: Message) -> list[Message]:
        """Messages the lookup for ``message`` lists (same window, sender and, where the
        provider filters by it, our id) that are not ``message``: five, so several pages."""
        return [Message(id=message.id, to=OTHER, body=message.body) for _ in range(5)]

    def sent_apart(self, emulator: EmulatorThread) -> None:
        """Make the emulator's messages look sent at distinct times, for a provider that pages
        by time (none by default)."""

    def test_a_send_that_arrived_is_found(self, emulator: EmulatorThread) -> None:
        url = emulator.emulator.provider_url()
        message = Message(to=TO, body="did it arrive?")
        since = time.time()
        [sent] = send(url, [message])
        if not self.identifies:
            with pytest.raises(AmbiguousSend, match="cannot tell"):
                self.lookup(url, message, since)
            return
        found = self.lookup(url, message, since)
        assert found is not None and found.ok
        assert found.provider_message_id == sent.provider_message_id

    def test_a_miss_after_reading_every_page_is_proof(self, emulator: EmulatorThread) -> None:
        url = emulator.emulator.provider_url()
        message = Message(to=TO, body="never sent")
        since = time.time()
        send(url, self.decoys(message))
        self.sent_apart(emulator)
        assert self.lookup(url, message, since) is None
        assert len(emulator.emulator.list_queries) >= 3  # five records, two a page

    def test_more_pages_than_a_lookup_reads_is_no_proof(self, emulator: EmulatorThread) -> None:
        url = emulator.emulator.provider_url()
        message = Message(to=TO, body="never sent")
        since = time.time()
        send(url, self.decoys(message))
        self.sent_apart(emulator)
        with pytest.raises(AmbiguousSend, match="more than 2 pages"):
            self.lookup(url, message, since, reconcile_max_pages=2)

    def test_a_page_that_failed_is_no_proof(self, emulator: EmulatorThread) -> None:
        url = emulator.emulator.provider_url()
        message = Message(to=TO, body="never sent")
        since = time.time()
        send(url, self.decoys(message))
        self.sent_apart(emulator)
        emulator.call(lambda: setattr(emulator.emulator, "list_pages_before_failure", 1))
        with pytest.raises(AmbiguousSend, match=r"failed at list page \d+.*proves nothing"):
            self.lookup(url, message, since)

    def test_no_start_time_is_no_proof(self, emulator: EmulatorThread) -> None:
        with pytest.raises(AmbiguousSend, match="no time of the first attempt"):
            self.lookup(emulator.emulator.provider_url(), Message(to=TO, body="x"), None)

    def test_the_capability_is_declared(self) -> None:
        provider = create_provider(self.emulator_cls().provider_url())
        assert provider.capabilities.reconcile
