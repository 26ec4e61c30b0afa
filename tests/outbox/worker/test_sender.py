"""The sender alone: one claimed row to an outcome, against the Twilio emulator on loopback,
with the start committed before the request."""

from __future__ import annotations

import asyncio

import pytest

from smsgate.clock import FakeClock
from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message, SendResult, Status
from smsgate.outbox import Outbox
from smsgate.outbox.store import State, StoreCalls, Transition
from smsgate.outbox.worker.committer import Committer
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, WorkerStats
from smsgate.outbox.worker.reconciler import Reconciler
from smsgate.outbox.worker.sender import Dropped, Sender
from tests.outbox.conftest import emulated
from tests.outbox.worker.conftest import one_route, twilio_provider, with_calls

TO = "+15555550100"


def send_one(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread, job: Job, stats: WorkerStats
) -> tuple[Transition | None, list[Status]]:
    """Process ``job``; returns its outcome and the row's status seen while the request ran."""
    seen: list[Status] = []

    async def scenario(calls: StoreCalls) -> Transition | None:
        provider = twilio_provider(twilio)
        router = one_route()
        committer = Committer(calls, "w1", clock, stats, lease=30)
        outcomes = Outcomes("worker:w1", clock, stats)
        deadlines = Deadlines()
        reconciler = Reconciler({"twilio": provider}, router, outcomes, deadlines, stats)
        sender = Sender(
            {"twilio": provider},
            router,
            committer,
            outcomes,
            reconciler,
            deadlines,
            owner="w1",
            clock=clock,
            stats=stats,
        )
        original = provider.asend

        async def watched(message: Message) -> SendResult:
            seen.append(outbox.status(job.row.id).status)  # what a crash now would leave
            return await original(message)

        provider.asend = watched  # type: ignore[method-assign]
        runner = asyncio.create_task(committer.run())
        try:
            return await sender.process(job)
        finally:
            committer.close()
            await runner
            await provider.aclose()

    return with_calls(outbox, scenario), seen


def claim_one(outbox: Outbox, clock: FakeClock) -> Job:
    now = clock.time()
    (claimed,) = outbox.store.claim("w1", 1, now, now + 30)
    return Job(claimed.row, claimed.previous_owner)


def test_a_row_is_started_durably_then_sent_and_its_answer_is_the_outcome(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    message_id = outbox.submit(Message(to=TO, body="hello"))
    stats = WorkerStats()
    job = claim_one(outbox, clock)
    outcome, seen = send_one(outbox, clock, twilio, job, stats)
    assert seen == [Status.SENDING]  # the start was committed before the request
    assert outcome is not None and outcome.id == message_id
    assert outcome.state is State.SENT and (outcome.provider_message_id or "").startswith("SM")
    assert outcome.event.reason == f"accepted by twilio as {outcome.provider_message_id}"
    assert job.started and stats.sent == 1
    assert twilio.call(lambda: [m.to for m in emulated(twilio).messages]) == [TO]


def test_an_expired_row_is_not_sent(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    outbox.submit(Message(to=TO, body="too late", validity=60))
    clock.advance(61)
    stats = WorkerStats()
    outcome, seen = send_one(outbox, clock, twilio, claim_one(outbox, clock), stats)
    assert seen == []
    assert outcome is not None and outcome.state is State.EXPIRED
    assert "validity ended" in (outcome.event.reason or "") and stats.expired == 1


def test_a_row_canceled_after_its_claim_is_dropped_unsent(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    message_id = outbox.submit(Message(to=TO, body="never mind"))
    job = claim_one(outbox, clock)
    outbox.cancel(message_id)
    stats = WorkerStats()
    with pytest.raises(Dropped):
        send_one(outbox, clock, twilio, job, stats)
    assert stats.dropped == 1 and not job.started
    assert twilio.call(lambda: len(emulated(twilio).messages)) == 0


def test_a_provider_error_becomes_the_routers_decision(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    outbox.submit(Message(to="+15005550001", body="to a number the emulator refuses"))
    stats = WorkerStats()
    outcome, seen = send_one(outbox, clock, twilio, claim_one(outbox, clock), stats)
    assert seen == [Status.SENDING]
    assert outcome is not None and outcome.state is State.FAILED
    assert outcome.last_error is not None and stats.failed == 1
