"""Servers on real loopback ports over SQLite files and PostgreSQL schemas.

``server_factory(...)`` starts uvicorn on a free port with a fresh store and an API key; every
``/v1`` call goes through ``running.api`` (a requests session carrying the key).
PostgreSQL tests need ``SMSGATE_TEST_POSTGRES_URL`` (e.g. postgresql://postgres@127.0.0.1/test):
each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.config import Config
from smsgate.outbox import Outbox
from smsgate.outbox.cli_support import open_outbox
from smsgate.outbox.tables.server import ServerStore
from smsgate.server.app import create_app
from smsgate.server.auth import create_key
from smsgate.server.runner import ServerThread
from smsgate.server.services import Services
from smsgate.server.settings import ServerSettings

POSTGRES_ENV = "SMSGATE_TEST_POSTGRES_URL"


def _postgres_base() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL whose tables live in a schema of their own."""
    import psycopg

    base = _postgres_base()
    schema = f"smsgate_test_{secrets.token_hex(6)}"
    joiner = "&" if "?" in base else "?"
    yield f"{base}{joiner}schema={schema}"
    # A test may set this fixture up after the servers' (then it is torn down first): stop them
    # before dropping, or a query they still run deadlocks with DROP SCHEMA.
    for thread in list(_LIVE):
        thread.stop()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


#: servers started and not yet stopped by their factory
_LIVE: list[ServerThread] = []


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once per engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'smsgate.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'smsgate.db'}"


@dataclass
class Running:
    thread: ServerThread
    key: str
    api: requests.Session
    anonymous: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def services(self) -> Services:
        found: Services = self.thread.app.state.services
        return found

    @property
    def store(self) -> ServerStore:
        return self.services.store

    @property
    def outbox(self) -> Outbox:
        return self.services.outbox

    def new_key(self, name: str = "other", **restrictions: Any) -> str:
        return create_key(self.store, name, clock=self.services.clock, **restrictions).key

    def session(self, key: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.post(self.url + path, timeout=60, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api.delete(self.url + path, timeout=30, **kwargs)


ServerFactory = Callable[..., Running]


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    started: list[tuple[Running, Outbox]] = []

    def start(
        store: str,
        *,
        config: Mapping[str, Any] | None = None,
        server: Mapping[str, Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        worker: bool = False,
        background: bool = True,
        key: Mapping[str, Any] | None = None,
    ) -> Running:
        values = {"store": store, **(config or {})}
        if server:
            values["server"] = dict(server)
        resolved = Config.from_dict(values)
        outbox = open_outbox(resolved, clock=clock, migrate=True)

        def make(url: str) -> Any:
            settings = ServerSettings.from_mapping(
                resolved.server, public_url=resolved.public_url or url
            )
            return create_app(
                resolved,
                settings=settings,
                outbox=outbox,
                clock=clock,
                worker=worker,
                background=background,
            )

        thread = ServerThread(make)
        made = create_key(ServerStore.of(outbox.store), "tests", clock=clock, **(key or {}))
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {made.key}"
        running = Running(thread, made.key, api)
        started.append((running, outbox))
        _LIVE.append(thread)
        return running

    yield start
    for running, outbox in reversed(started):
        running.thread.stop()
        if running.thread in _LIVE:
            _LIVE.remove(running.thread)
        running.api.close()
        running.anonymous.close()
        outbox.close()


@pytest.fixture
def server(server_factory: ServerFactory, store_url: str) -> Running:
    """An API-only server (no providers, no worker) on each engine."""
    return server_factory(store_url)
