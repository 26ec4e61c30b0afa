from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pytest

from smsgate import ids
from smsgate.ids import new_id


def test_ids_made_in_one_burst_sort_in_creation_order_and_never_repeat() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything)
    assert all(out == sorted(out) for out in made)


def test_ids_carry_their_time_and_prefix() -> None:
    early = new_id("evt", now_ms=1_700_000_000_000)
    late = new_id("evt", now_ms=1_700_000_000_001)
    assert early.startswith("evt_") and len(early) == 30
    assert early < late


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_starts_a_sequence_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parent and child in one millisecond (the clock is stopped): a child that went on from
    # the parent's sequence would make exactly the ids the parent makes next.
    stopped = time.time_ns()
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: stopped))
    new_id()
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(readable)
            made = [str(ids._ms)] + [new_id() for _ in range(100)]
            os.write(writable, " ".join(made).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writable)
    parents = [new_id() for _ in range(100)]
    with os.fdopen(readable, "rb") as pipe:
        reported = pipe.read().decode().split()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    forked_state, childs = reported[0], reported[1:]
    assert forked_state == "-1"  # the child did not inherit the parent's millisecond
    assert len(childs) == 100 and childs == sorted(childs)
    assert childs[0] != parents[0]
    assert not set(childs) & set(parents)
