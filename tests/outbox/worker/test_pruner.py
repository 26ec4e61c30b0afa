"""The pruner alone, and inside a whole worker: small batches on the worker's clock, between
sends (both engines, fake clock)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from smsgate.clock import FakeClock
from smsgate.emulators.base import EmulatorThread
from smsgate.message import Status
from smsgate.outbox import Outbox
from smsgate.outbox.retention import Retention
from smsgate.outbox.store import StartSend, State, StoreCalls, Transition
from smsgate.outbox.worker import Worker
from smsgate.outbox.worker.outcomes import WorkerStats
from smsgate.outbox.worker.pruner import Pruner
from tests.outbox.test_retention import move
from tests.outbox.worker.conftest import one_route, submit, twilio_provider, with_calls

DAY = 86_400.0


class Logged:
    """The store's calls, with the order their prunes and writes began and ended in."""

    def __init__(self, calls: StoreCalls) -> None:
        self.calls = calls
        self.log: list[str] = []
        self.batches: list[tuple[int, int]] = []

    async def prune(
        self, cutoffs: Mapping[State, float], events_before: float | None, limit: int
    ) -> tuple[int, int]:
        self.log.append("prune")
        done = await self.calls.prune(cutoffs, events_before, limit)
        self.batches.append(done)
        self.log.append("pruned")
        return done

    async def write(
        self,
        owner: str,
        starts: Sequence[StartSend],
        transitions: Sequence[Transition],
        releases: Sequence[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        self.log.append("write")
        done = await self.calls.write(owner, starts, transitions, releases, now, lease_until)
        self.log.append("written")
        return done


def old_delivered(outbox: Outbox, clock: FakeClock, n: int) -> list[str]:
    ids = submit(outbox, n, prefix="+1555551")
    move(outbox, ids, State.DELIVERED)
    clock.advance(31 * DAY)
    return ids


def test_a_pass_runs_in_batches_then_waits_for_the_interval_on_the_clock(
    outbox: Outbox, clock: FakeClock
) -> None:
    ids = old_delivered(outbox, clock, 7)
    submit(outbox, 1, prefix="+1555552")  # waiting: never pruned
    stats = WorkerStats()
    retention = Retention(messages=30 * DAY, batch_size=3, interval=3600)

    async def scenario(calls: StoreCalls) -> tuple[list[tuple[int, int]], int]:
        logged = Logged(calls)
        pruner = Pruner(logged, "w1", clock, stats, retention, tick=0.01)
        task = asyncio.create_task(pruner.run())
        for _ in range(500):  # the first pass is due at once
            if len(logged.batches) >= 4:
                break
            await asyncio.sleep(0.01)
        first = list(logged.batches)
        await asyncio.sleep(0.1)  # ten ticks: nothing due before the interval has passed
        idle = len(logged.batches)
        assert idle == len(first)
        move(outbox, submit(outbox, 2, prefix="+1555553"), State.FAILED)
        submit(outbox, 1, prefix="+1555554")  # the newest event is never pruned
        clock.advance(31 * DAY + 3600)
        for _ in range(500):
            if len(logged.batches) > idle + 1:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        return first, len(logged.batches) - idle

    first, later = with_calls(outbox, scenario)
    assert [m for m, _ in first] == [3, 3, 1, 0]  # at most a batch per call, until one is empty
    assert later == 2  # the next pass: the two failed ones (then an empty batch)
    assert stats.pruned_messages == 9 and stats.pruned_events == 27
    assert [i for i in ids if outbox.store.get(i) is not None] == []


def test_a_write_waits_for_one_batch_at_most(
    outbox: Outbox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_delivered(outbox, clock, 60)
    (queued,) = submit(outbox, 1, prefix="+1555552")
    retention = Retention(messages=30 * DAY, batch_size=5)
    # PostgreSQL runs a batch and the write on two threads side by side: how many batches end
    # while the write runs would measure the machine's load, not what the write waited for. A
    # batch the store begins once the write is asked for waits until the write is done, so only
    # the batch under way when it came can end meanwhile; a write queued behind a later batch
    # would never be done, and that batch says so instead of waiting for ever.
    asked, done = threading.Event(), threading.Event()
    blocked: list[str] = []
    prune = outbox.store.prune

    def prune_after_the_write(*args: Any, **kwargs: Any) -> tuple[int, int]:
        if asked.is_set() and not done.wait(30):
            blocked.append(threading.current_thread().name)
        return prune(*args, **kwargs)

    monkeypatch.setattr(outbox.store, "prune", prune_after_the_write)

    async def scenario(calls: StoreCalls) -> list[str]:
        logged = Logged(calls)
        pruner = Pruner(logged, "w1", clock, WorkerStats(), retention, tick=0.01)
        task = asyncio.create_task(pruner.prune_pass())
        while logged.log.count("pruned") < 2:
            await asyncio.sleep(0)
        now = clock.time()
        (claimed,) = outbox.store.claim("w1", 1, now, now + 30)
        asked.set()
        await logged.write("w1", [], [], [claimed.row.id], now, now + 30)
        done.set()
        await task
        return logged.log

    log = with_calls(outbox, scenario)
    assert blocked == []  # the write never waited for a batch begun after it was asked for
    during = log[log.index("write") : log.index("written")]
    assert during.count("pruned") <= 1  # the batch under way when the write came, no more
    assert log.count("pruned") == 13  # the pruning went on afterwards: 12 batches and an empty
    assert outbox.store.get(queued) is not None


def test_a_worker_prunes_between_its_sends(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    old = old_delivered(outbox, clock, 120)
    fresh = submit(outbox, 20, prefix="+1555553")

    async def main() -> WorkerStats:
        worker = Worker(
            outbox,
            [twilio_provider(twilio)],
            router=one_route(),
            concurrency=4,
            poll_interval=0.02,
            retention=Retention(messages=30 * DAY, batch_size=10),
            close_providers=True,
        )
        stop = asyncio.Event()
        run = asyncio.create_task(worker.run(stop=stop))
        for _ in range(1000):  # bounded: ten seconds at most
            if worker.stats.sent == 20 and worker.stats.pruned_messages == 120:
                break
            await asyncio.sleep(0.01)
        stop.set()
        return await run

    stats = asyncio.run(main())
    assert stats.sent == 20 and stats.pruned_messages == 120
    assert all(outbox.status(i).status is Status.SENT for i in fresh)
    assert [i for i in old if outbox.store.get(i) is not None] == []
