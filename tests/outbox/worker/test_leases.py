"""The lease keeper alone: renewing held leases, noticing lost ones, giving back unstarted."""

from __future__ import annotations

from smsgate.clock import FakeClock
from smsgate.outbox import Outbox
from smsgate.outbox.store import StoreCalls
from smsgate.outbox.worker.leases import LeaseKeeper
from smsgate.outbox.worker.outcomes import Job, WorkerStats
from tests.outbox.worker.conftest import submit, with_calls


def hold(outbox: Outbox, clock: FakeClock, owner: str = "w1") -> dict[str, Job]:
    now = clock.time()
    return {c.row.id: Job(c.row, None) for c in outbox.store.claim(owner, 10, now, now + 30)}


def test_renewed_leases_are_not_taken_over(outbox: Outbox, clock: FakeClock) -> None:
    submit(outbox, 3)
    held = hold(outbox, clock)

    async def scenario(calls: StoreCalls) -> list[str]:
        keeper = LeaseKeeper(calls, "w1", clock, WorkerStats(), held, lease=30)
        clock.advance(20)
        return await keeper.renew_once()

    assert with_calls(outbox, scenario) == []
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal
    now = clock.time()
    assert outbox.store.claim("w2", 10, now, now + 30) == []


def test_a_lease_taken_over_meanwhile_is_reported_lost(outbox: Outbox, clock: FakeClock) -> None:
    submit(outbox, 2)
    held = hold(outbox, clock)
    clock.advance(31)  # w1 stalled past its lease: w2 takes one row over
    now = clock.time()
    (taken,) = outbox.store.claim("w2", 1, now, now + 30)

    async def scenario(calls: StoreCalls) -> list[str]:
        return await LeaseKeeper(calls, "w1", clock, WorkerStats(), held, lease=30).renew_once()

    assert with_calls(outbox, scenario) == [taken.row.id]


def test_unstarted_rows_are_given_back_and_due_at_once(outbox: Outbox, clock: FakeClock) -> None:
    ids = submit(outbox, 3)
    held = hold(outbox, clock)
    held[ids[0]].started = True  # a send under way is not given back
    stats = WorkerStats()

    async def scenario(calls: StoreCalls) -> int:
        return await LeaseKeeper(calls, "w1", clock, stats, held, lease=30).release_unstarted([])

    assert with_calls(outbox, scenario) == 2
    assert stats.released == 2 and list(held) == [ids[0]]
    now = clock.time()
    again = outbox.store.claim("w2", 10, now, now + 30)
    assert sorted(c.row.id for c in again) == sorted(ids[1:])
