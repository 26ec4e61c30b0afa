"""The committer alone: group commits of starts, outcomes and releases on a real store."""

from __future__ import annotations

import asyncio

from smsgate.clock import FakeClock
from smsgate.message import Status
from smsgate.outbox import Outbox
from smsgate.outbox.store import NewEvent, StartSend, State, StoreCalls, Transition
from smsgate.outbox.worker.committer import Committer
from smsgate.outbox.worker.outcomes import WorkerStats
from tests.outbox.worker.conftest import start_of, submit, with_calls


def sent(message_id: str, now: float, pmid: str) -> Transition:
    event = NewEvent(message_id, now, "sending", "sent", "worker:w1", f"accepted as {pmid}")
    return Transition(message_id, State.SENT, event, provider="twilio", provider_message_id=pmid)


class CountingWrites:
    """The store's writes, counted, failing the first ``failures`` times."""

    def __init__(self, calls: StoreCalls, failures: int = 0) -> None:
        self.calls = calls
        self.failures = failures
        self.batches: list[tuple[int, int, int]] = []

    async def write(
        self,
        owner: str,
        starts: list[StartSend],
        transitions: list[Transition],
        releases: list[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.batches.append((len(starts), len(transitions), len(releases)))
        return await self.calls.write(owner, starts, transitions, releases, now, lease_until)


def test_starts_queued_together_are_one_transaction_and_only_held_rows_start(
    outbox: Outbox, clock: FakeClock
) -> None:
    ids = submit(outbox, 6)
    now = clock.time()
    outbox.store.claim("w1", 5, now, now + 30)  # the sixth is not ours
    done: list[str] = []

    async def scenario(calls: StoreCalls) -> tuple[list[bool], list[tuple[int, int, int]]]:
        writes = CountingWrites(calls)
        committer = Committer(
            writes, "w1", clock, WorkerStats(), lease=30, delay=0.001, on_done=done.extend
        )
        runner = asyncio.create_task(committer.run())
        answers = await asyncio.gather(*(committer.start(start_of(i, now)) for i in ids))
        committer.close()
        await runner
        return list(answers), writes.batches

    answers, batches = with_calls(outbox, scenario)
    assert answers == [True] * 5 + [False]
    assert batches == [(6, 0, 0)]  # one group commit for all six
    assert {outbox.status(i).status for i in ids[:5]} == {Status.SENDING}
    assert outbox.status(ids[5]).status is Status.QUEUED
    assert done == []  # started rows are still held


def test_outcomes_and_releases_are_written_and_reported_done(
    outbox: Outbox, clock: FakeClock
) -> None:
    first, second = submit(outbox, 2)
    now = clock.time()
    outbox.store.claim("w1", 2, now, now + 30)
    outbox.store.start("w1", [start_of(first, now)], now, now + 30)
    done: list[str] = []

    async def scenario(calls: StoreCalls) -> None:
        committer = Committer(calls, "w1", clock, WorkerStats(), lease=30, on_done=done.extend)
        runner = asyncio.create_task(committer.run())
        committer.finish(sent(first, now, "SM1"))
        committer.release(second)
        assert committer.pending
        committer.close()
        await runner
        assert not committer.pending

    with_calls(outbox, scenario)
    assert sorted(done) == sorted([first, second])
    record = outbox.status(first)
    assert (record.status, record.provider_message_id) == (Status.SENT, "SM1")
    assert outbox.status(second).status is Status.QUEUED
    assert outbox.store.work_left()[1] is None  # no lease left


def test_a_failing_store_is_retried_and_counted(outbox: Outbox, clock: FakeClock) -> None:
    (message_id,) = submit(outbox, 1)
    now = clock.time()
    outbox.store.claim("w1", 1, now, now + 30)
    stats = WorkerStats()

    async def scenario(calls: StoreCalls) -> bool:
        committer = Committer(CountingWrites(calls, failures=2), "w1", clock, stats, lease=30)
        runner = asyncio.create_task(committer.run())
        started = await committer.start(start_of(message_id, now))
        committer.close()
        await runner
        return started

    assert with_calls(outbox, scenario) is True
    assert stats.store_errors == 2
    assert outbox.status(message_id).status is Status.SENDING


def test_a_start_written_after_its_sender_gave_up_is_handed_back(
    outbox: Outbox, clock: FakeClock
) -> None:
    (message_id,) = submit(outbox, 1)
    now = clock.time()
    outbox.store.claim("w1", 1, now, now + 30)
    orphans: list[str] = []

    async def scenario(calls: StoreCalls) -> None:
        committer = Committer(
            calls,
            "w1",
            clock,
            WorkerStats(),
            lease=30,
            delay=0.05,
            on_orphan=lambda start, at: orphans.append(start.id),
        )
        runner = asyncio.create_task(committer.run())
        waiting = asyncio.ensure_future(committer.start(start_of(message_id, now)))
        await asyncio.sleep(0)
        waiting.cancel()  # the worker stopping while the start waits for its commit
        committer.close()
        await runner

    with_calls(outbox, scenario)
    # written (the row is in sending), but nothing was sent on it: the worker must undo it
    assert orphans == [message_id]
    assert outbox.status(message_id).status is Status.SENDING
