"""The SQLite engine's own behaviour: its connection pool under threads that come and go."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError
from smsgate.message import Message
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
