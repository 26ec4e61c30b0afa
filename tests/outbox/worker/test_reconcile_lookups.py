"""The reconciler with each provider that can look a message up without its id: a lookup that
could not read every page proves nothing, so the message is not sent again and stays unknown
with that reason; a lookup that read every page and found nothing lets it be sent again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from smsgate.clock import FakeClock
from smsgate.emulators.base import Emulator
from smsgate.emulators.infobip import InfobipEmulator
from smsgate.emulators.plivo import PlivoEmulator
from smsgate.emulators.sinch import SinchEmulator
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.message import Message
from smsgate.outbox import Outbox
from smsgate.outbox.codec import message_from_row
from smsgate.outbox.store import State, Transition
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, WorkerStats
from smsgate.outbox.worker.reconciler import Reconciler
from smsgate.providers import create_provider
from smsgate.routing import AmbiguousPolicy, CircuitBreakers, Route, Router
from tests.outbox.worker.conftest import start_of

TO = "+15555550100"
LOOKUPS = [TwilioEmulator, SinchEmulator, InfobipEmulator, PlivoEmulator]
RETRY = Route(name="default", providers=("x",)).retry


@pytest.fixture
def clock() -> FakeClock:
    # Providers list by real time: the stored times must be now, not a fixed past.
    return FakeClock(start=time.time())


def reconciling(outbox: Outbox, clock: FakeClock, provider: str) -> Job:
    """A row whose send was ambiguous, waiting for a lookup at ``provider``."""
    outbox.submit(Message(to=TO, body="did it arrive?"))
    now = clock.time()
    (claimed,) = outbox.store.claim("w1", 1, now, now + 30)
    outbox.store.start("w1", [start_of(claimed.row.id, now)], now, now + 30)
    row = claimed.row._replace(state=State.RECONCILING, provider=provider, provider_attempt=1)
    return Job(row, None, message_from_row(row))


def lookup(emulator: Emulator, job: Job, clock: FakeClock) -> Transition:
    name = emulator.name
    provider = create_provider(emulator.provider_url(), name=name)
    router = Router(
        [Route(name="default", providers=(name,), ambiguous=AmbiguousPolicy("auto"))],
        CircuitBreakers(failure_threshold=25, cooldown=0.3),
    )
    stats = WorkerStats()
    part = Reconciler(
        {name: provider}, router, Outcomes("worker:w2", clock, stats), Deadlines(), stats
    )

    async def main() -> Transition:
        try:
            return await part.reconcile(job)
        finally:
            await provider.aclose()

    return asyncio.run(main())


@pytest.fixture(params=LOOKUPS, ids=lambda cls: cls.name)
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    made: Emulator = request.param()
    with made.run_in_thread():
        yield made


def test_a_lookup_that_could_not_read_every_page_is_no_proof(
    outbox: Outbox, clock: FakeClock, emulator: Emulator
) -> None:
    job = reconciling(outbox, clock, emulator.name)
    emulator.list_pages_before_failure = 0
    outcome = lookup(emulator, job, clock)
    # Not sent again: looked up again later, with the reason.
    assert outcome.state is State.RECONCILING, outcome.event.reason
    reason = outcome.event.reason or ""
    assert "looking the message up failed" in reason and "partial search proves nothing" in reason
    assert f"looking it up at {emulator.name}" in reason
    # The last lookup the route allows: the message stays unknown, with the reason.
    last = job.row._replace(provider_attempt=RETRY.max_attempts)
    outcome = lookup(emulator, Job(last, None, job.message), clock)
    assert outcome.state is State.UNKNOWN, outcome.event.reason
    reason = outcome.event.reason or ""
    assert "partial search proves nothing" in reason and "status unknown" in reason
    assert emulator.messages == []  # nothing was sent again


def test_a_lookup_that_read_every_page_and_found_nothing_sends_again(
    outbox: Outbox, clock: FakeClock, emulator: Emulator
) -> None:
    job = reconciling(outbox, clock, emulator.name)
    outcome = lookup(emulator, job, clock)
    assert outcome.state is State.RETRYING, outcome.event.reason
    assert f"{emulator.name} has no record of it, so it was not sent" in (
        outcome.event.reason or ""
    )
