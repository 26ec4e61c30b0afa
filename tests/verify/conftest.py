"""Fixtures of the verify tests: an outbox per test on each engine (SQLite file, PostgreSQL
schema), a fake clock, and ``make_verify(**verify_table)`` building a :class:`Verify` on it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from smsgate.clock import SYSTEM_CLOCK, Clock, FakeClock
from smsgate.config import Config
from smsgate.outbox import Outbox
from smsgate.outbox.cli_support import open_outbox
from smsgate.outbox.tables.server import ServerStore
from smsgate.server.app import create_app
from smsgate.server.auth import create_key
from smsgate.server.runner import ServerThread
from smsgate.server.settings import ServerSettings
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
    """The codes in the texts a verification queued, from the stored rows the worker sends (as
    a phone would read them): the only place a code exists outside the MAC. Every read path of
    the outbox shows these texts with the code masked."""
    with verify.store.read() as tx:
        row = tx.get(verification_id)
    assert row is not None
    found = []
    for message_id in row.messages:
        stored = verify.outbox.store.get(message_id)
        assert stored is not None
        body = json.loads(stored.payload)["body"]
        match = re.search(r"\b\d{4,10}\b", body)
        assert match is not None, body
        found.append(match.group())
    return found


def last_code(verify: Verify, verification_id: str) -> str:
    return sent_codes(verify, verification_id)[-1]


@dataclass
class Served:
    """A server on a loopback port with ``[verify]`` configured, and an unrestricted API key."""

    thread: ServerThread
    api: requests.Session
    outbox: Outbox

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def verify(self) -> Verify:
        found: Verify = self.thread.app.state.verify
        return found

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.post(self.url + path, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.get(self.url + path, timeout=30, **kwargs)

    def key(self, name: str, **restrictions: Any) -> requests.Session:
        made = create_key(ServerStore.of(self.outbox.store), name, **restrictions)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {made.key}"
        return session


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(store_url: str) -> Iterator[ServeFactory]:  # noqa: F811
    """``serve(verify={...}, **config)`` starts an API-only server (no worker) on the store."""
    started: list[Served] = []

    def start(
        verify: dict[str, Any] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        worker: bool = False,
        **config: Any,
    ) -> Served:
        table = {"secret": SECRET, **(verify or {})}
        values: dict[str, Any] = {"store": store_url, "verify": table, **config}
        resolved = Config.from_dict(values)
        outbox = open_outbox(resolved, migrate=True, clock=clock)

        def make(url: str) -> Any:
            settings = ServerSettings.from_mapping(resolved.server, public_url=url)
            return create_app(
                resolved, settings=settings, outbox=outbox, worker=worker, clock=clock
            )

        thread = ServerThread(make)
        made = create_key(ServerStore.of(outbox.store), "tests")
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {made.key}"
        served = Served(thread, api, outbox)
        started.append(served)
        return served

    yield start
    for served in reversed(started):
        served.thread.stop()
        served.api.close()
        served.outbox.close()
