"""Fixtures of the outbox tests: one store per test on each engine, a fake clock, the emulator.

PostgreSQL tests need ``SMSGATE_TEST_POSTGRES_URL`` (e.g. postgresql://postgres@127.0.0.1/test);
each test gets a schema of its own (``?schema=``), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.emulators.base import EmulatorThread, Faults
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.outbox import Outbox

POSTGRES_ENV = "SMSGATE_TEST_POSTGRES_URL"
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_base() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A PostgreSQL store URL whose tables live in a fresh schema named ``prefix_...``,
    dropped afterwards."""
    import psycopg

    base = postgres_base()
    schema = f"{prefix}_{secrets.token_hex(5)}"
    joiner = "&" if "?" in base else "?"
    yield f"{base}{joiner}schema={schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL whose tables live in a fresh schema, dropped afterwards."""
    with postgres_schema("smsgate_outbox") as url:
        yield url


def sqlite_url(tmp_path: Path, name: str = "outbox.db") -> str:
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once per engine."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox(store_url: str, clock: FakeClock) -> Iterator[Outbox]:
    box = Outbox(store_url, clock=clock, migrate=True)
    yield box
    box.close()


@pytest.fixture
def open_outbox(store_url: str, clock: FakeClock) -> Iterator[Callable[..., Outbox]]:
    """More outbox objects on the same store (as other processes would have)."""
    opened: list[Outbox] = []

    def make(**options: object) -> Outbox:
        options.setdefault("clock", clock)
        box = Outbox(store_url, migrate=True, **options)  # type: ignore[arg-type]
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture
def twilio() -> Iterator[EmulatorThread]:
    """A Twilio emulator on a loopback port, in a thread of this process."""
    emulator = TwilioEmulator(faults=Faults(seed=7))
    with emulator.run_in_thread() as thread:
        yield thread


def emulated(thread: EmulatorThread) -> TwilioEmulator:
    emulator = thread.emulator
    assert isinstance(emulator, TwilioEmulator)
    return emulator
