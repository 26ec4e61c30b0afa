"""The SQLite engine's own behaviour: its connection pool under threads that come and go."""

from __future__ import annotations

import os
import resource
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError
from smsgate.message import Message, Status
from smsgate.outbox import Outbox
from smsgate.outbox.sqlite import SqliteStore, StoreBusy
from smsgate.outbox.store import ListQuery, StoreURL
from tests.outbox.conftest import sqlite_url

TO = "+15555550100"


def descriptors_on(path: Path) -> int:
    """This process's open file descriptors on the database file and its journals."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listing and reading
            continue
        if target.startswith(str(path)):
            count += 1
    return count


@pytest.fixture
def low_descriptor_limit() -> Iterator[int]:
    """Lower this process's descriptor limit to what is open now plus 48 for the test: 40
    threads each keeping a connection (two descriptors) would run out of them."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count descriptors")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = len(os.listdir("/proc/self/fd")) + 48
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(budget, hard), hard))
    try:
        yield budget
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_bursts_of_reads_from_threads_that_come_and_go_keep_descriptors_bounded(
    tmp_path: Path, low_descriptor_limit: int
) -> None:
    # Outbox(...) migrates and seeds through a store of its own, closed before the limit bites.
    with Outbox(sqlite_url(tmp_path), migrate=True) as outbox:
        message_id = outbox.submit(Message(to=TO, body="hello"))
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    store = SqliteStore(
        StoreURL.parse(f"{sqlite_url(tmp_path)}?pool_size=8&idle_timeout=10"), clock=clock
    )
    answers: list[str] = []
    failures: list[BaseException] = []
    peak = 0
    try:
        for _ in range(8):
            # A fresh pool of 40 threads per burst, ended afterwards, as an ASGI server's idle
            # threads end: a connection kept per thread would pile up, two descriptors each.
            start = threading.Barrier(40)

            def read(start: threading.Barrier = start) -> None:
                start.wait(10)
                try:
                    row = store.get(message_id)
                    assert row is not None
                    store.list_messages(ListQuery(limit=5))
                    answers.append(row.id)
                except BaseException as exc:  # counted, not lost in a thread
                    failures.append(exc)

            with ThreadPoolExecutor(40) as threads:
                for _ in range(40):
                    threads.submit(read)
            peak = max(peak, descriptors_on(db))
            assert store.open_connections <= 8
            clock.advance(11)  # an idle pause longer than idle_timeout
        assert not failures, failures[:3]
        assert answers == [message_id] * 320
        assert peak <= 2 * 8 + 2, f"{peak} descriptors open on the database"
    finally:
        store.close()
    assert descriptors_on(db) == 0


def test_connections_idle_past_the_timeout_are_closed(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path), migrate=True):
        pass
    clock = FakeClock()
    store = SqliteStore(StoreURL.parse(f"{sqlite_url(tmp_path)}?idle_timeout=10"), clock=clock)
    try:
        go = threading.Barrier(6)

        def read() -> None:
            with store._read():
                go.wait(10)  # six reads at once need six connections

        with ThreadPoolExecutor(6) as threads:
            list(threads.map(lambda _: read(), range(6)))
        assert store.open_connections == 6
        clock.advance(5)
        store.counts()
        assert store.open_connections == 6  # not idle long enough yet
        clock.advance(6)
        store.counts()  # five idle 11 s are closed; the one just used stays
        assert store.open_connections == 1
    finally:
        store.close()
    assert store.open_connections == 0


def test_a_full_pool_makes_a_call_from_the_loop_busy_and_a_thread_wait(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path), migrate=True) as outbox:
        outbox.submit(Message(to=TO, body="hello"))
    store = SqliteStore(StoreURL.parse(f"{sqlite_url(tmp_path)}?pool_size=1"))
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._read():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        # the worker's loop must never wait for a connection: it hands the call to a thread
        with pytest.raises(StoreBusy):
            store.call_now(store.counts)
        waited: list[int] = []
        waiter = threading.Thread(target=lambda: waited.append(sum(store.counts().values())))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not waited  # waits for the one connection...
        release.set()
        waiter.join(10)
        assert waited == [1]  # ...and is answered once it is given back
        # a nested call on one thread reuses its connection instead of waiting for itself
        assert store.call_now(lambda: sum(store.counts().values())) == 1
    finally:
        release.set()
        holder.join(10)
        store.close()


@pytest.mark.parametrize(
    ("option", "named"),
    [("pool_size=0", "pool_size"), ("idle_timeout=soon", "idle_timeout"), ("pool=3", "pool")],
)
def test_bad_pool_options_are_refused_naming_them(tmp_path: Path, option: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        SqliteStore(StoreURL.parse(f"{sqlite_url(tmp_path)}?{option}"))


class _OtherWriter:
    """Another connection to the file holding SQLite's write lock, as another process would,
    until a given number of the waiter's pauses have passed."""

    def __init__(self, path: Path, clock: FakeClock, *, pauses: int | None) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN IMMEDIATE")
        self._clock = clock
        self._left = pauses
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self._clock.advance(seconds)
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()


def test_a_writer_waits_for_another_process_in_short_steps(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path), migrate=True) as outbox:
        outbox.submit(Message(to=TO, body="hello"))
    clock = FakeClock()
    now = time.time() + 1  # the message is due (its clock was the real one)
    other = _OtherWriter(tmp_path / "outbox.db", clock, pauses=40)
    # busy_timeout=1: were SQLite's own busy handler waiting, it would give up within a second
    store = SqliteStore(
        StoreURL.parse(f"{sqlite_url(tmp_path)}?busy_timeout=1"), clock=clock, sleep=other.sleep
    )
    try:
        claimed = store.claim("w1", 10, now, now + 60)
    finally:
        store.close()
        other.close()
    assert [c.row.to_number for c in claimed] == [TO]
    # the lock was tried again at most 2 ms after the other writer let it go (SQLite's busy
    # handler sleeps up to 100 ms between tries)
    assert len(other.pauses) == 40 and max(other.pauses) <= 0.002
    assert clock.monotonic() < 40 * 0.002


def test_a_writer_gives_up_after_busy_timeout_and_the_loop_after_a_moment(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path), migrate=True) as outbox:
        outbox.submit(Message(to=TO, body="hello"))
    clock = FakeClock()
    now = time.time() + 1
    other = _OtherWriter(tmp_path / "outbox.db", clock, pauses=None)
    store = SqliteStore(
        StoreURL.parse(f"{sqlite_url(tmp_path)}?busy_timeout=2"), clock=clock, sleep=other.sleep
    )
    try:
        # the worker's event loop hands the call to a thread after 20 ms, nothing written
        with pytest.raises(StoreBusy):
            store.call_now(store.claim, "w1", 10, now, now + 60)
        assert 0.02 <= clock.monotonic() < 0.025
        # a thread waits the store's busy_timeout, then reports the lock it never got
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.claim("w1", 10, now, now + 60)
        assert 2.02 <= clock.monotonic() < 2.03
        assert max(other.pauses) <= 0.002
    finally:
        store.close()
        other.close()
    with Outbox(sqlite_url(tmp_path)) as outbox:
        assert outbox.counts() == {Status.QUEUED: 1}
