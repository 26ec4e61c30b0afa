"""Deadlines alone: a provider call that never returns ends as an ambiguous send."""

from __future__ import annotations

import asyncio

import pytest

from smsgate.emulators.base import EmulatorThread
from smsgate.errors import AmbiguousSend
from smsgate.outbox.worker.deadlines import Deadlines
from tests.outbox.worker.conftest import twilio_provider


def test_a_call_past_its_deadline_is_cancelled_as_ambiguous(twilio: EmulatorThread) -> None:
    provider = twilio_provider(twilio)
    deadlines = Deadlines(send_timeout=5)
    assert deadlines.timeout_for(provider) == 5

    async def main() -> None:
        never = asyncio.get_running_loop().create_future()  # a provider that never answers
        call = asyncio.create_task(deadlines.call(provider, never))
        await asyncio.sleep(0)
        loop_now = asyncio.get_running_loop().time()
        assert deadlines.expire(loop_now + 4) == 0  # not yet due
        assert deadlines.expire(loop_now + 6) == 1
        with pytest.raises(AmbiguousSend, match="did not answer within 5 s"):
            await call
        await provider.aclose()

    asyncio.run(main())


def test_the_default_deadline_covers_the_transports_own_timeouts(twilio: EmulatorThread) -> None:
    provider = twilio_provider(twilio)
    # connect + read timeouts of the transport, and five seconds more: they fire first
    assert Deadlines().timeout_for(provider) > 5
    asyncio.run(provider.aclose())
