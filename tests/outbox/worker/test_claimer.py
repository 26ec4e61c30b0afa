"""The claimer alone: batches sized by the room left, take-over of expired leases, idling."""

from __future__ import annotations

import asyncio
import time

import pytest

from smsgate.clock import SYSTEM_CLOCK, FakeClock
from smsgate.message import Message
from smsgate.outbox import Outbox
from smsgate.outbox.store import StoreCalls
from smsgate.outbox.worker.claimer import Claimer
from smsgate.outbox.worker.outcomes import Job, WorkerStats
from tests.outbox.worker.conftest import submit, with_calls


def claimer(
    calls: StoreCalls,
    clock: FakeClock,
    held: dict[str, Job],
    queue: asyncio.Queue[Job | None],
    stats: WorkerStats | None = None,
    **options: float,
) -> Claimer:
    return Claimer(
        calls,
        "w1",
        clock,
        stats or WorkerStats(),
        held,
        queue,
        capacity=int(options.get("capacity", 5)),
        batch_size=int(options.get("batch_size", 10)),
        lease=options.get("lease", 30),
        poll_interval=options.get("poll_interval", 0.1),
        stopping=asyncio.Event(),
    )


def test_claims_what_there_is_room_for_and_queues_it(outbox: Outbox, clock: FakeClock) -> None:
    ids = submit(outbox, 30)
    held: dict[str, Job] = {}

    async def scenario(calls: StoreCalls) -> list[int | None]:
        queue: asyncio.Queue[Job | None] = asyncio.Queue()
        part = claimer(calls, clock, held, queue, capacity=5, batch_size=10)
        sizes = []
        for _ in range(3):
            claimed = await part.claim_once()
            sizes.append(None if claimed is None else len(claimed))
        assert queue.qsize() == 15
        return sizes

    # 5 in flight + a batch of 10 ready at most: 10, then the 5 left of room, then no room
    assert with_calls(outbox, scenario) == [10, 5, None]
    assert sorted(held) == sorted(ids)[:15]  # oldest due first (ids are time-ordered)
    assert {job.row.lease_owner for job in held.values()} == {"w1"}


def test_an_expired_lease_of_another_worker_is_taken_over_and_counted(
    outbox: Outbox, clock: FakeClock
) -> None:
    (message_id,) = submit(outbox, 1)
    now = clock.time()
    outbox.store.claim("dead", 1, now, now + 30)
    held: dict[str, Job] = {}
    stats = WorkerStats()

    async def scenario(calls: StoreCalls) -> None:
        part = claimer(calls, clock, held, asyncio.Queue(), stats)
        assert await part.claim_once() == []  # still leased by "dead"
        clock.advance(31)
        (taken,) = await part.claim_once() or []
        assert (taken.row.id, taken.previous_owner) == (message_id, "dead")

    with_calls(outbox, scenario)
    assert (stats.claimed, stats.taken_over) == (1, 1)
    assert held[message_id].previous_owner == "dead"


def test_run_until_idle_returns_once_nothing_is_due_and_wakes_for_work(
    outbox: Outbox, clock: FakeClock
) -> None:
    submit(outbox, 3)
    held: dict[str, Job] = {}

    async def scenario(calls: StoreCalls) -> int:
        queue: asyncio.Queue[Job | None] = asyncio.Queue()
        part = claimer(calls, clock, held, queue)
        looks = 0

        async def idle() -> bool:
            nonlocal looks
            looks += 1
            return looks >= 3  # the third look at an empty store ends the run

        await asyncio.wait_for(part.run(idle), 10)
        return queue.qsize()

    assert with_calls(outbox, scenario) == 3
    assert len(held) == 3


def test_a_stop_ends_a_pause_at_once(outbox: Outbox) -> None:
    async def scenario(calls: StoreCalls) -> None:
        stopping = asyncio.Event()
        part = Claimer(
            calls,
            "w1",
            SYSTEM_CLOCK,
            WorkerStats(),
            {},
            asyncio.Queue(),
            capacity=1,
            batch_size=1,
            lease=30,
            poll_interval=3600,
            stopping=stopping,
        )
        # a real clock would sleep an hour; a stop must not wait for it
        runner = asyncio.create_task(part.run())
        await asyncio.sleep(0.05)
        stopping.set()
        await asyncio.wait_for(runner, 5)

    with_calls(outbox, scenario)


@pytest.mark.postgres
def test_on_postgresql_a_submit_ends_a_long_pause_at_once(postgres_url: str) -> None:
    """Workers are woken by LISTEN/NOTIFY, not by their next poll."""
    with Outbox(postgres_url, migrate=True) as outbox, Outbox(postgres_url) as other:

        async def scenario(calls: StoreCalls) -> tuple[float, int]:
            queue: asyncio.Queue[Job | None] = asyncio.Queue()
            part = Claimer(
                calls,
                "w1",
                SYSTEM_CLOCK,
                WorkerStats(),
                {},
                queue,
                capacity=1,
                batch_size=1,
                lease=30,
                poll_interval=60,
                stopping=asyncio.Event(),
            )
            calls.on_work(part.wake)
            await asyncio.sleep(0.5)  # listening now
            assert await part.claim_once() == []  # nothing yet (it serves the wakes so far)
            pausing = asyncio.create_task(part.pause(60))
            await asyncio.sleep(0.2)
            assert not pausing.done()
            started = time.monotonic()
            # another process's submit (another store object, its own connections)
            await asyncio.to_thread(other.submit, Message(to="+15555550100", body="wake up"))
            await asyncio.wait_for(pausing, 10)
            waited = time.monotonic() - started
            claimed = await part.claim_once()
            return waited, len(claimed or [])

        waited, claimed = with_calls(outbox, scenario)
    assert waited < 5 and claimed == 1  # not the 60 s poll


def test_sqlite_has_no_notifications_so_its_claimer_polls(outbox: Outbox) -> None:
    woken: list[int] = []

    async def scenario(calls: StoreCalls) -> None:
        calls.on_work(lambda: woken.append(1))
        outbox.submit(Message(to="+15555550100", body="x"))
        await asyncio.sleep(0.1)

    if outbox.store.engine == "sqlite":
        with_calls(outbox, scenario)
        assert woken == []
