"""A gateway with the console on a real loopback port, and signed-in ``requests`` sessions.

``console.login(role)`` creates a user with that role and returns a session holding its cookie;
``console.csrf(session, path)`` reads a page's CSRF token the way a browser would get it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.console.auth import ConsoleAuth, Role
from smsgate.console.settings import ConsoleSettings
from smsgate.outbox.sql import SqlStore
from tests.server.conftest import (  # noqa: F401 -- fixtures
    Running,
    ServerFactory,
    postgres_url,
    server_factory,
    sqlite_url,
    store_url,
)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at 2^10 instead of 2^15 for these tests: half a second per hash on a busy CI core
    adds up over dozens of sign-ins. test_auth checks the production cost."""
    import smsgate.console.auth

    monkeypatch.setattr(smsgate.console.auth, "SCRYPT_N", 2**10)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery"


@dataclass
class ConsoleServer:
    running: Running
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.running.url + "/console"

    @property
    def auth(self) -> ConsoleAuth:
        store = self.running.outbox.store
        assert isinstance(store, SqlStore)
        return ConsoleAuth(store, ConsoleSettings(), clock=self.running.services.clock)

    def user(self, role: Role, name: str | None = None) -> str:
        chosen = name or f"{role.value}-{secrets.token_hex(3)}"
        self.auth.create_user(chosen, PASSWORD, role)
        return chosen

    def anonymous(self) -> requests.Session:
        session = requests.Session()
        self.sessions.append(session)
        return session

    def login(self, role: Role = Role.ADMIN, *, name: str | None = None) -> requests.Session:
        chosen = self.user(role, name)
        session = self.anonymous()
        answer = self.sign_in(session, chosen, PASSWORD)
        assert answer.status_code == 200 and answer.url.endswith("/console/"), answer.text[:500]
        return session

    def sign_in(self, session: requests.Session, name: str, password: str) -> requests.Response:
        page = session.get(self.url + "/login", timeout=30)
        token = CSRF.search(page.text)
        assert token is not None
        return session.post(
            self.url + "/login",
            data={"csrf": token[1], "name": name, "password": password, "next": ""},
            timeout=30,
        )

    def csrf(self, session: requests.Session, path: str = "/") -> str:
        page = session.get(self.url + path, timeout=30)
        found = CSRF.search(page.text)
        assert found is not None, page.text[:500]
        return found[1]

    def post(
        self, session: requests.Session, path: str, data: dict[str, Any] | None = None
    ) -> requests.Response:
        form = {"csrf": self.csrf(session), **(data or {})}
        return session.post(self.url + path, data=form, timeout=30)


CONFIG: dict[str, Any] = {
    "providers": {
        "alpha": {"url": "smsroute://KEY@Alpha?base_url=http://127.0.0.1:9", "rate": "10/s"},
        "beta": {"url": "smsroute://KEY@Beta?base_url=http://127.0.0.1:9"},
    },
    "routes": [
        {"name": "otp", "purposes": ["otp"], "providers": ["beta"]},
        {"name": "default", "providers": ["alpha", "beta"]},
    ],
}

ConsoleFactory = Callable[..., ConsoleServer]


@pytest.fixture
def console_factory(server_factory: ServerFactory) -> Iterator[ConsoleFactory]:  # noqa: F811
    made: list[ConsoleServer] = []

    def start(store: str, *, clock: Clock = SYSTEM_CLOCK, **config: Any) -> ConsoleServer:
        running = server_factory(store, config={**CONFIG, **config}, clock=clock)
        server = ConsoleServer(running)
        made.append(server)
        return server

    yield start
    for server in made:
        for session in server.sessions:
            session.close()


@pytest.fixture
def console(console_factory: ConsoleFactory, sqlite_url: str) -> ConsoleServer:  # noqa: F811
    return console_factory(sqlite_url)


@pytest.fixture
def console_any(store_url: str, console_factory: ConsoleFactory) -> ConsoleServer:  # noqa: F811
    """Once per engine. ``store_url`` comes first so that it is torn down last: a PostgreSQL
    schema dropped under a running server deadlocks with the server's own queries."""
    return console_factory(store_url)
