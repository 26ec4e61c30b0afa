"""The one group-commit writer alone: what arrives while a group is written goes in the next."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from smsgate.outbox.groupcommit import GroupCommit, on_thread


class Recorder:
    """A write that records its groups; it waits on ``gate`` while it is closed."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.groups.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return [ValueError(f"{n} refused") if n < 0 else n * 10 for n in items]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_items_arriving_during_a_write_form_the_next_group_in_order() -> None:
    async def scenario() -> tuple[list[int], list[list[int]]]:
        write = Recorder()
        commit = GroupCommit(write, group=100, name="test")
        commit.start()
        write.gate.clear()
        first = asyncio.ensure_future(commit(1))
        await settle()  # the lone item is written at once, no gathering
        assert write.groups == [[1]]
        later = [asyncio.ensure_future(commit(n)) for n in (2, 3, 4)]
        await settle()
        assert commit.pending == 4 and write.groups == [[1]]  # queued behind the write
        write.gate.set()
        results = await asyncio.gather(first, *later)
        await commit.stop()
        return list(results), write.groups

    results, groups = asyncio.run(scenario())
    assert results == [10, 20, 30, 40]
    assert groups == [[1], [2, 3, 4]]


def test_groups_are_capped_and_written_in_parallel_when_asked() -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        write = Recorder()
        write.gate.clear()
        commit = GroupCommit(write, group=2, name="test", parallel=2)
        commit.start()
        waiting = [asyncio.ensure_future(commit(n)) for n in range(5)]
        await settle()
        assert write.in_flight == 2  # the fifth item waits for a free slot
        write.gate.set()
        await asyncio.gather(*waiting)
        await commit.stop()
        return write.groups, write.most_in_flight

    groups, most = asyncio.run(scenario())
    assert groups == [[0, 1], [2, 3], [4]]
    assert most == 2


def test_a_refused_item_fails_alone_and_a_failed_write_fails_its_whole_group() -> None:
    async def broken(items: list[int]) -> Sequence[int | Exception]:
        if 99 in items:
            raise OSError("disk full")
        return [ValueError("refused") if n < 0 else n for n in items]

    async def scenario() -> list[object]:
        commit = GroupCommit(broken, group=10, name="test")
        commit.start()
        answers = await asyncio.gather(commit(1), commit(-1), commit(2), return_exceptions=True)
        failed = await asyncio.gather(commit(99), commit(3), return_exceptions=True)
        await commit.stop()
        return [*answers, *failed]

    one, refused, two, disk, with_disk = asyncio.run(scenario())
    assert (one, two) == (1, 2)
    assert isinstance(refused, ValueError)
    assert isinstance(disk, OSError) and isinstance(with_disk, OSError)


def test_a_delay_gathers_items_that_arrive_soon_after_the_first() -> None:
    async def scenario(delay: float) -> list[list[int]]:
        write = Recorder()
        commit = GroupCommit(write, group=10, name="test", delay=delay)
        commit.start()
        first = asyncio.ensure_future(commit(1))
        await settle()  # the writer has seen the first item
        second = asyncio.ensure_future(commit(2))
        await asyncio.gather(first, second)
        await commit.stop()
        return write.groups

    assert asyncio.run(scenario(0.05)) == [[1, 2]]
    assert asyncio.run(scenario(0.0)) == [[1], [2]]


def test_a_caller_that_stopped_waiting_hands_its_written_result_to_on_abandoned() -> None:
    abandoned: list[tuple[int, int]] = []

    async def scenario() -> None:
        write = Recorder()
        write.gate.clear()
        commit = GroupCommit(
            write, group=10, name="test", on_abandoned=lambda n, r: abandoned.append((n, r))
        )
        commit.start()
        kept = commit.submit(1)
        given_up = commit.submit(2)
        await settle()
        given_up.cancel()  # e.g. the worker stopping while its start waits for the commit
        write.gate.set()
        assert await kept == 10
        await commit.stop()

    asyncio.run(scenario())
    assert abandoned == [(2, 20)]


def test_close_writes_what_is_queued_and_then_run_ends() -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        write = Recorder()
        commit = GroupCommit(write, group=10, name="test", delay=30.0)
        futures = [commit.submit(n) for n in (1, 2)]  # queued before the writer runs
        commit.put(-5)  # its result unwanted (a refusal included): written all the same
        runner = asyncio.create_task(commit.run())
        commit.close()  # no 30 s gathering: closing writes at once
        await asyncio.wait_for(runner, timeout=10)
        assert [f.result() for f in futures] == [10, 20]
        return write.groups, commit.pending

    groups, pending = asyncio.run(scenario())
    assert groups == [[1, 2, -5]]
    assert pending == 0


def test_before_start_and_after_stop_each_item_is_written_alone() -> None:
    async def scenario() -> list[list[int]]:
        write = Recorder()
        commit = GroupCommit(write, group=10, name="test")
        assert list(await asyncio.gather(commit(1), commit(2))) == [10, 20]
        commit.start()
        await commit.stop()
        with pytest.raises(ValueError, match="-3 refused"):
            await commit(-3)
        return write.groups

    assert asyncio.run(scenario()) == [[1], [2], [-3]]


def test_a_blocking_write_runs_on_a_thread_while_the_loop_goes_on() -> None:
    seen: list[str] = []

    def blocking(items: list[int]) -> list[int | Exception]:
        seen.append(threading.current_thread().name)
        return [n + 1 for n in items]

    async def scenario() -> list[int]:
        commit = GroupCommit(on_thread(blocking), group=10, name="test")
        commit.start()
        answers = await asyncio.gather(commit(1), commit(2))
        await commit.stop()
        return list(answers)

    assert asyncio.run(scenario()) == [2, 3]
    assert seen and threading.main_thread().name not in seen
