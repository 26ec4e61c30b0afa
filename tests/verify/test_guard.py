"""The guard's rules on a real store: escalation, its cap, and which limit refused."""

from __future__ import annotations

from smsgate.clock import FakeClock
from smsgate.verify.guard import Who
from tests.verify.conftest import MakeVerify

PREFIX = "+234803"


def test_blocks_escalate_up_to_the_cap(sqlite_verify: MakeVerify, clock: FakeClock) -> None:
    verify = sqlite_verify(
        pumping={"min_volume": 2, "grace": "1m", "window": "10m", "block": "1h", "max_block": "3h"}
    )
    guard, store = verify.guard, verify.store
    lengths = []
    for _ in range(4):
        with store.write() as tx:
            guard.count_start(tx, PREFIX, clock.time())
            guard.count_start(tx, PREFIX, clock.time())
        clock.advance(120)  # past the grace: the two starts are mature and unconverted
        with store.write() as tx:
            block = guard.judge(tx, PREFIX, clock.time())
        assert block is not None
        lengths.append(block.blocked_until - block.created_at)
        clock.advance(60)
    assert lengths == [3600, 7200, 10800, 10800]
    # a day later the count starts again
    clock.advance(86400)
    with store.write() as tx:
        guard.count_start(tx, PREFIX, clock.time())
        guard.count_start(tx, PREFIX, clock.time())
    clock.advance(120)
    with store.write() as tx:
        block = guard.judge(tx, PREFIX, clock.time())
    assert block is not None and block.level == 1


def test_converting_traffic_is_never_blocked(sqlite_verify: MakeVerify, clock: FakeClock) -> None:
    verify = sqlite_verify(pumping={"min_volume": 2, "grace": "1m", "window": "10m"})
    guard, store = verify.guard, verify.store
    started = clock.time()
    with store.write() as tx:
        for _ in range(10):
            guard.count_start(tx, PREFIX, started)
        guard.count_approval(tx, PREFIX, started)
        guard.count_approval(tx, PREFIX, started)
    clock.advance(120)
    with store.write() as tx:
        assert guard.judge(tx, PREFIX, clock.time()) is None  # 2 of 10: at the threshold


def test_the_refusing_limit_is_named(sqlite_verify: MakeVerify, clock: FakeClock) -> None:
    verify = sqlite_verify(limits={"number_starts": "5/10m", "ip_starts": "2/h"})
    who = Who("+14155552671", "+141555", "US", "203.0.113.7", None)
    with verify.store.write() as tx:
        assert verify.guard.take(tx, "starts", who, clock.time()) == (0.0, None)
        assert verify.guard.take(tx, "starts", who, clock.time()) == (0.0, None)
        wait, name = verify.guard.take(tx, "starts", who, clock.time())
    assert name == "ip_starts (2/h)" and 1790 < wait <= 1800
    assert [n for n, _ in verify.guard.specs("starts", who)] == [
        "number_starts (5/10m)",
        "ip_starts (2/h)",
    ]
