"""Helpers of the tests of the worker's parts: each part alone, on a real store (both engines)
with a fake clock, through the store's own async calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message
from smsgate.outbox import Outbox
from smsgate.outbox.store import NewEvent, StartSend, StoreCalls
from smsgate.providers import create_provider
from smsgate.providers.base import Provider
from smsgate.routing import AmbiguousPolicy, CircuitBreakers, Route, Router
from tests.outbox.conftest import emulated

T = TypeVar("T")


def submit(outbox: Outbox, n: int, prefix: str = "+1555555") -> list[str]:
    return [outbox.submit(Message(to=f"{prefix}{i:04d}", body=f"hello {i}")) for i in range(n)]


def with_calls(outbox: Outbox, scenario: Callable[[StoreCalls], Awaitable[T]]) -> T:
    """Run ``scenario`` on a new event loop with the store's async calls open."""

    async def main() -> T:
        calls = await outbox.store.open_calls()
        try:
            return await scenario(calls)
        finally:
            await calls.aclose()

    return asyncio.run(main())


def start_of(message_id: str, now: float, owner: str = "w1") -> StartSend:
    event = NewEvent(message_id, now, "queued", "sending", f"worker:{owner}", "go", "twilio", 1)
    return StartSend(message_id, "twilio", 1, "default", event)


def twilio_provider(thread: EmulatorThread) -> Provider:
    return create_provider(emulated(thread).provider_url(), name="twilio")


def one_route(ambiguous: str = "auto") -> Router:
    return Router(
        [Route(name="default", providers=("twilio",), ambiguous=AmbiguousPolicy(ambiguous))],
        CircuitBreakers(failure_threshold=25, cooldown=0.3),
    )
