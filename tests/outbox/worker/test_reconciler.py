"""The reconciler alone: a send left in ``sending`` by a dead worker, and lookups at the
provider (the Twilio emulator on loopback) of sends nobody knows the outcome of."""

from __future__ import annotations

import asyncio

import pytest

from smsgate.clock import FakeClock
from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message
from smsgate.outbox import Outbox
from smsgate.outbox.codec import message_from_row
from smsgate.outbox.store import State, StoredMessage, Transition
from smsgate.outbox.worker.deadlines import Deadlines
from smsgate.outbox.worker.outcomes import Job, Outcomes, ReceiptTimeout, WorkerStats
from smsgate.outbox.worker.reconciler import Reconciler
from tests.outbox.worker.conftest import one_route, start_of, twilio_provider

TO = "+15555550100"


def reconciler(
    twilio: EmulatorThread, clock: FakeClock, stats: WorkerStats, ambiguous: str = "auto"
) -> Reconciler:
    provider = twilio_provider(twilio)
    outcomes = Outcomes("worker:w2", clock, stats)
    return Reconciler({"twilio": provider}, one_route(ambiguous), outcomes, Deadlines(), stats)


def left_sending(outbox: Outbox, clock: FakeClock, body: str = "hello") -> Job:
    """A row a dead worker started and never finished, as the next worker claims it."""
    outbox.submit(Message(to=TO, body=body))
    now = clock.time()
    (claimed,) = outbox.store.claim("dead", 1, now, now + 30)
    outbox.store.start("dead", [start_of(claimed.row.id, now, "dead")], now, now + 30)
    clock.advance(31)
    now = clock.time()
    (taken,) = outbox.store.claim("w2", 1, now, now + 30)
    job = Job(taken.row, taken.previous_owner)
    job.message = message_from_row(taken.row)
    return job


@pytest.mark.parametrize(
    ("policy", "state", "says"),
    [
        ("reconcile", State.RECONCILING, "looking it up at twilio"),
        ("resend", State.RETRYING, "re-sending (it may arrive twice)"),
        ("unknown", State.UNKNOWN, "not sending again"),
    ],
)
def test_a_send_left_by_a_dead_worker_follows_the_routes_policy(
    outbox: Outbox,
    clock: FakeClock,
    twilio: EmulatorThread,
    policy: str,
    state: State,
    says: str,
) -> None:
    job = left_sending(outbox, clock)
    assert (job.row.state, job.previous_owner) == (State.SENDING, "dead")
    outcome = reconciler(twilio, clock, WorkerStats(), policy).after_takeover(job)
    assert outcome.state is state
    assert "worker dead stopped during attempt 1 through twilio" in (outcome.event.reason or "")
    assert says in (outcome.event.reason or "")


def lookup(twilio: EmulatorThread, clock: FakeClock, row: StoredMessage) -> Transition:
    job = Job(row, None, message_from_row(row))
    stats = WorkerStats()

    async def main() -> Transition:
        part = reconciler(twilio, clock, stats)
        return await part.reconcile(job)

    return asyncio.run(main())


def test_a_send_that_did_arrive_is_found_and_not_sent_again(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    job = left_sending(outbox, clock, body="did it arrive?")

    async def send_for_real() -> str:
        provider = twilio_provider(twilio)
        try:
            result = await provider.asend(Message(to=TO, body="did it arrive?"))
        finally:
            await provider.aclose()
        return result.provider_message_id or ""

    pmid = asyncio.run(send_for_real())  # the dead worker's request had reached the provider
    outcome = lookup(twilio, clock, job.row._replace(state=State.RECONCILING))
    assert outcome.state is State.SENT and outcome.provider_message_id == pmid
    assert "the ambiguous send did arrive, so it is not sent again" in (outcome.event.reason or "")


def test_a_send_the_provider_never_saw_is_sent_again(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    job = left_sending(outbox, clock, body="lost on the way")
    outcome = lookup(twilio, clock, job.row._replace(state=State.RECONCILING))
    assert outcome.state is State.RETRYING
    assert "twilio has no record of it, so it was not sent" in (outcome.event.reason or "")


def test_a_provider_not_configured_here_leaves_the_status_unknown(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    job = left_sending(outbox, clock)
    row = job.row._replace(state=State.RECONCILING, provider="vonage")
    outcome = lookup(twilio, clock, row)
    assert outcome.state is State.UNKNOWN
    assert "provider 'vonage' is not configured on this worker" in (outcome.event.reason or "")


def sent_row(outbox: Outbox, clock: FakeClock, provider: str, pmid: str | None) -> StoredMessage:
    """A row sent through ``provider`` whose receipt timeout ended, as a worker claims it."""
    job = left_sending(outbox, clock)
    return job.row._replace(state=State.SENT, provider=provider, provider_message_id=pmid)


def check(
    twilio: EmulatorThread, clock: FakeClock, row: StoredMessage, stats: WorkerStats
) -> Transition:
    provider = twilio_provider(twilio)
    timeout = ReceiptTimeout(after=60, validity=600)
    outcomes = Outcomes("worker:w2", clock, stats, receipts={"twilio": timeout, "vonage": timeout})
    part = Reconciler({"twilio": provider}, one_route(), outcomes, Deadlines(), stats)

    async def main() -> Transition:
        try:
            return await part.check_receipt(Job(row, None, message_from_row(row)))
        finally:
            await provider.aclose()

    return asyncio.run(main())


def test_a_provider_that_cannot_be_asked_leaves_the_row_sent_until_the_validity_ends(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    row = sent_row(outbox, clock, "vonage", "v-1")  # vonage: not configured on this worker
    stats = WorkerStats()
    waiting = check(twilio, clock, row, stats)
    assert waiting.state is State.SENT
    assert waiting.next_attempt_at == row.created_at + 600  # the end of the validity period
    assert "cannot be asked" in (waiting.event.reason or "")
    clock.advance(600)
    ended = check(twilio, clock, row, stats)
    assert ended.state is State.UNKNOWN and ended.event.source == "receipt-lookup:vonage"
    assert "no delivery receipt from vonage by the end of the validity period" in (
        ended.event.reason or ""
    )
    assert (stats.receipts_timed_out, stats.receipts_looked_up) == (1, 0)


def test_a_message_with_its_own_validity_gives_up_when_that_ends(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    row = sent_row(outbox, clock, "vonage", "v-1")._replace(expires_at=clock.time() + 5)
    clock.advance(5)
    assert check(twilio, clock, row, WorkerStats()).state is State.UNKNOWN
