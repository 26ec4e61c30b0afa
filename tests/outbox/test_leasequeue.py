"""The one lease-and-claim queue alone, on a table of its own, on both engines, with a fake clock:
claim due rows under a lease, renew, release, take over expired leases (SKIP LOCKED on
PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from smsgate.clock import FakeClock
from smsgate.outbox import Outbox
from smsgate.outbox.leasequeue import LeasedTable, LeaseQueue, Taken
from smsgate.outbox.sql import SqlStore

JOBS = LeasedTable(
    name="test_lease_jobs",
    columns="id, state, next_attempt_at, lease_owner, lease_expires_at",
    waiting="state = 'pending'",
    takeable="state = 'pending'",
    due_if="state <> 'paused'",
    stale_due="state = 'recheck'",
)
LEASE = 30.0


class Jobs:
    """The test table in a real store, and the store's queue on it."""

    def __init__(self, store: SqlStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.queue: LeaseQueue = store.lease_queue(JOBS)
        with store.write_transaction() as tx:
            tx.execute(
                "CREATE TABLE test_lease_jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
                "next_attempt_at DOUBLE PRECISION, lease_owner TEXT, "
                "lease_expires_at DOUBLE PRECISION, updated_at DOUBLE PRECISION)"
            )

    def add(self, job_id: str, *, due_in: float | None = 0.0, state: str = "pending") -> None:
        due = None if due_in is None else self.clock.time() + due_in
        with self.store.write_transaction() as tx:
            tx.execute(
                "INSERT INTO test_lease_jobs (id, state, next_attempt_at) VALUES (?, ?, ?)",
                (job_id, state, due),
            )

    def claim(self, owner: str, limit: int = 10, *, take_over: bool = True) -> list[Taken]:
        now = self.clock.time()
        with self.store.write_transaction() as tx:
            return self.queue.claim(tx, owner, limit, now, now + LEASE, take_over=take_over)

    def claimed(self, owner: str, limit: int = 10, *, take_over: bool = True) -> list[str]:
        return sorted(t.row[0] for t in self.claim(owner, limit, take_over=take_over))

    def row(self, job_id: str) -> tuple[object, ...]:
        with self.store.read_transaction() as tx:
            (row,) = tx.execute(
                "SELECT state, next_attempt_at, lease_owner, lease_expires_at "
                "FROM test_lease_jobs WHERE id = ?",
                (job_id,),
            )
        return row

    def set_state(self, job_id: str, state: str) -> None:
        with self.store.write_transaction() as tx:
            tx.execute("UPDATE test_lease_jobs SET state = ? WHERE id = ?", (state, job_id))


@pytest.fixture
def jobs(outbox: Outbox, clock: FakeClock) -> Iterator[Jobs]:
    assert isinstance(outbox.store, SqlStore)
    yield Jobs(outbox.store, clock)


@pytest.fixture
def postgres_jobs(postgres_url: str, clock: FakeClock) -> Iterator[Jobs]:
    with Outbox(postgres_url, clock=clock, migrate=True) as outbox:
        assert isinstance(outbox.store, SqlStore)
        yield Jobs(outbox.store, clock)


def test_due_rows_are_claimed_oldest_first_once_under_a_lease(jobs: Jobs, clock: FakeClock) -> None:
    jobs.add("late", due_in=-5)
    jobs.add("later", due_in=-1)
    jobs.add("latest", due_in=-3)
    jobs.add("future", due_in=60)
    jobs.add("held_back", due_in=-10, state="paused")  # not due whatever its time
    jobs.add("never", due_in=None)
    assert jobs.claimed("w1", limit=2) == ["late", "latest"]
    assert jobs.claimed("w2") == ["later"]
    assert jobs.claimed("w3") == []  # each due row once
    state, due, owner, until = jobs.row("late")
    assert (state, due, owner, until) == ("pending", None, "w1", clock.time() + LEASE)
    clock.advance(60)
    assert jobs.claimed("w3", take_over=False) == ["future"]  # due in its time


def test_renew_keeps_only_the_owners_leases(jobs: Jobs, clock: FakeClock) -> None:
    jobs.add("a")
    jobs.add("b")
    assert jobs.claimed("w1", limit=1) == ["a"]
    assert jobs.claimed("w2", limit=1) == ["b"]
    clock.advance(LEASE - 1)
    with jobs.store.write_transaction() as tx:
        kept = jobs.queue.renew(tx, "w1", ["a", "b", "unknown"], clock.time() + LEASE)
    assert kept == {"a"}
    clock.advance(2)  # past both first leases: only w2's has expired
    assert jobs.claimed("w3") == ["b"]
    assert jobs.row("a")[2] == "w1"


def test_release_makes_waiting_rows_due_again_and_leaves_others(
    jobs: Jobs, clock: FakeClock
) -> None:
    jobs.add("a")
    jobs.add("b")
    jobs.add("c")
    assert jobs.claimed("w1") == ["a", "b", "c"]
    jobs.set_state("c", "done")  # finished meanwhile (say by a receipt): nothing to redo
    clock.advance(1)
    with jobs.store.write_transaction() as tx:
        released = jobs.queue.release(tx, "w1", ["a", "c"], clock.time())
        assert jobs.queue.release(tx, "w2", ["b"], clock.time()) == set()  # not w2's
    assert released == {"a"}
    assert jobs.row("a") == ("pending", clock.time(), None, None)
    assert jobs.claimed("w2") == ["a"]
    assert jobs.row("b")[2] == "w1" and jobs.row("c")[2] == "w1"


def test_expired_leases_are_taken_over_naming_the_previous_owner(
    jobs: Jobs, clock: FakeClock
) -> None:
    jobs.add("work")
    jobs.add("finished")
    jobs.add("recheck")
    assert jobs.claimed("dead") == ["finished", "recheck", "work"]
    jobs.set_state("finished", "done")
    jobs.set_state("recheck", "recheck")
    clock.advance(LEASE - 1)
    assert jobs.claimed("w2") == []  # not expired yet
    clock.advance(2)
    assert jobs.claimed("w2", take_over=False) == []  # only when asked
    taken = jobs.claim("w2")
    assert sorted((t.row[0], t.previous_owner) for t in taken) == [
        ("recheck", None),  # its stale lease dropped made it due: claimed as a due row
        ("work", "dead"),
    ]
    assert jobs.row("work")[2:] == ("w2", clock.time() + LEASE)
    assert jobs.row("recheck") == ("recheck", None, "w2", clock.time() + LEASE)
    # a lease on a row with no work left is only dropped
    assert jobs.row("finished") == ("done", None, None, None)


@pytest.mark.postgres
def test_postgresql_claimers_skip_each_others_locked_rows(postgres_jobs: Jobs) -> None:
    jobs = postgres_jobs
    for n in range(4):
        jobs.add(f"j{n}", due_in=-10 + n)
    now = jobs.clock.time()
    other: list[list[str]] = []
    with jobs.store.write_transaction() as tx:  # w1's claim, not committed yet
        first = sorted(t.row[0] for t in jobs.queue.claim(tx, "w1", 2, now, now + LEASE))

        def claim_meanwhile() -> None:
            other.append(jobs.claimed("w2"))

        thread = threading.Thread(target=claim_meanwhile)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the second claim waited on the first one's rows"
    assert first == ["j0", "j1"]
    assert other == [["j2", "j3"]]


def test_expired_leases_come_before_due_rows_in_a_full_claim(jobs: Jobs, clock: FakeClock) -> None:
    jobs.add("orphan")
    assert jobs.claimed("dead") == ["orphan"]
    clock.advance(LEASE + 1)
    jobs.add("backlog")  # due now: under a backlog, due rows alone would fill every claim
    taken = jobs.claim("w2", limit=1)
    assert [(t.row[0], t.previous_owner) for t in taken] == [("orphan", "dead")]
    assert jobs.claimed("w2", limit=1) == ["backlog"]
