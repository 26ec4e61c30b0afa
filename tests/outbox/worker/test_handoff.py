"""The hand-off from the claimer to the senders alone: order, one waiter per item, and no item
stranded by a waiter cancelled as it was woken."""

from __future__ import annotations

import asyncio

import pytest

from smsgate.outbox.worker.handoff import Handoff


def test_items_come_out_in_order_and_get_nowait_raises_when_empty() -> None:
    jobs: Handoff[int] = Handoff()
    assert jobs.empty()
    for item in (1, 2, 3):
        jobs.put_nowait(item)
    assert len(jobs) == 3
    assert [jobs.get_nowait() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(asyncio.QueueEmpty):
        jobs.get_nowait()


def test_each_item_wakes_one_waiter() -> None:
    async def main() -> None:
        jobs: Handoff[str] = Handoff()
        got: list[str] = []

        async def take() -> None:
            got.append(await jobs.get())

        waiting = [asyncio.create_task(take()) for _ in range(3)]
        await asyncio.sleep(0)
        jobs.put_nowait("a")
        jobs.put_nowait("b")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sorted(got) == ["a", "b"]
        assert sum(task.done() for task in waiting) == 2
        jobs.put_nowait("c")
        await asyncio.gather(*waiting)
        assert sorted(got) == ["a", "b", "c"]

    asyncio.run(main())


def test_a_waiter_cancelled_as_it_is_woken_passes_the_item_on() -> None:
    async def main() -> None:
        jobs: Handoff[str] = Handoff()
        first = asyncio.create_task(jobs.get())
        second = asyncio.create_task(jobs.get())
        await asyncio.sleep(0)
        jobs.put_nowait("x")  # wakes the first waiter...
        first.cancel()  # ...which is cancelled before it runs
        assert await asyncio.wait_for(second, 1) == "x"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert jobs.empty()

    asyncio.run(main())


def test_a_cancelled_waiter_is_forgotten() -> None:
    async def main() -> None:
        jobs: Handoff[str] = Handoff()
        waiter = asyncio.create_task(jobs.get())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        jobs.put_nowait("y")
        assert await jobs.get() == "y"

    asyncio.run(main())
