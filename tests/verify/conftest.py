"""Fixtures of the verify tests: an outbox per test on each engine (SQLite file, PostgreSQL
schema), a fake clock, and ``make_verify(**verify_table)`` building a :class:`Verify` on it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smsgate.clock import FakeClock
from smsgate.outbox import Outbox
from smsgate.verify import Verify, VerifySettings
from tests.outbox.conftest import postgres_url, store_url  # noqa: F401 -- fixtures

SECRET = "test-secret-" + "x" * 40
MakeVerify = Callable[..., Verify]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox(store_url: str, clock: FakeClock) -> Iterator[Outbox]:  # noqa: F811
    box = Outbox(store_url, clock=clock, migrate=True)
    yield box
    box.close()


@pytest.fixture
def make_verify(outbox: Outbox, clock: FakeClock) -> MakeVerify:
    def make(**table: Any) -> Verify:
        table.setdefault("secret", SECRET)
        return Verify(outbox, VerifySettings.from_mapping(table), clock=clock)

    return make


@pytest.fixture
def verify(make_verify: MakeVerify) -> Verify:
    return make_verify()


@pytest.fixture
def sqlite_verify(tmp_path: Path, clock: FakeClock) -> Iterator[MakeVerify]:
    """``make_verify`` on a SQLite file only (for simulations whose logic is engine-free)."""
    box = Outbox(f"sqlite:///{tmp_path / 'sim.db'}?synchronous=normal", clock=clock)

    def make(**table: Any) -> Verify:
        table.setdefault("secret", SECRET)
        return Verify(box, VerifySettings.from_mapping(table), clock=clock)

    yield make
    box.close()


def sent_codes(verify: Verify, verification_id: str) -> list[str]:
    """The codes in the texts a verification queued, read back from the outbox (as a phone
    would read them): the only place a code exists outside the MAC."""
    with verify.store.read() as tx:
        row = verify.store.get(tx, verification_id)
    assert row is not None
    found = []
    for message_id in row.messages:
        record = verify.outbox.get(message_id)
        assert record is not None
        match = re.search(r"\b\d{4,10}\b", record.body)
        assert match is not None, record.body
        found.append(match.group())
    return found


def last_code(verify: Verify, verification_id: str) -> str:
    return sent_codes(verify, verification_id)[-1]
