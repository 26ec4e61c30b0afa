from __future__ import annotations

import threading

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
