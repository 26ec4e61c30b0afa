"""Password hashing and the sign-in rules, straight against the store (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.console import auth
from smsgate.console.auth import ConsoleAuth, Role, hash_password, parse_role, verify_password
from smsgate.console.settings import ConsoleSettings
from smsgate.errors import ConfigError
from smsgate.outbox import Outbox
from smsgate.outbox.sql import SqlStore


def test_passwords_are_hashed_with_production_scrypt_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the production cost, not the tests' cheap one
    stored = hash_password("correct horse battery")
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**15, 8, 1)
    assert "correct horse" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_password("same", n=2**10) != hash_password("same", n=2**10)  # salted
    assert not verify_password("x", "md5$abc")
    assert not verify_password("x", "scrypt$garbage")


@pytest.fixture
def console_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConsoleAuth:
    monkeypatch.setattr(auth, "SCRYPT_N", 2**10)
    outbox = Outbox(f"sqlite:///{tmp_path / 'c.db'}", migrate=True)
    assert isinstance(outbox.store, SqlStore)
    return ConsoleAuth(outbox.store, ConsoleSettings(max_failures=2, lockout=60), clock=FakeClock())


def test_users_names_passwords_and_roles_are_checked(console_auth: ConsoleAuth) -> None:
    console_auth.create_user("ops.alice", "long enough pw", Role.ADMIN)
    with pytest.raises(ConfigError, match="exists"):
        console_auth.create_user("ops.alice", "long enough pw", Role.ADMIN)
    with pytest.raises(ConfigError) as short:
        console_auth.create_user("bob", "short", Role.ADMIN)
    assert short.value.field == "password"
    with pytest.raises(ConfigError) as name:
        console_auth.create_user("bob smith", "long enough pw", Role.ADMIN)
    assert name.value.field == "name"
    with pytest.raises(ConfigError) as role:
        parse_role("root")
    assert role.value.field == "role"
    assert [u.name for u in console_auth.list_users()] == ["ops.alice"]


def test_new_password_ends_sessions_and_deleting_a_user_too(console_auth: ConsoleAuth) -> None:
    console_auth.create_user("carol", "first password", Role.READONLY)
    first = console_auth.sign_in("carol", "first password")
    assert first.token and console_auth.session(first.token) is not None
    assert console_auth.set_password("carol", "second password")
    assert console_auth.session(first.token) is None
    assert console_auth.sign_in("carol", "first password").error == "invalid"
    second = console_auth.sign_in("carol", "second password")
    assert second.token
    assert console_auth.delete_user("carol")
    assert console_auth.session(second.token) is None
    assert not console_auth.set_password("carol", "third password!")


def test_sessions_expire_on_the_clock(console_auth: ConsoleAuth) -> None:
    clock = console_auth.clock
    assert isinstance(clock, FakeClock)
    console_auth.create_user("dave", "a fine password", Role.ADMIN)
    made = console_auth.sign_in("dave", "a fine password")
    assert made.token
    clock.advance(console_auth.settings.session_ttl - 1)
    assert console_auth.session(made.token) is not None
    clock.advance(2)
    assert console_auth.session(made.token) is None
    assert console_auth.session("") is None and console_auth.session("x" * 500) is None


def test_lockout_counts_in_a_row_and_restarts_after_it_lifts(console_auth: ConsoleAuth) -> None:
    clock = console_auth.clock
    assert isinstance(clock, FakeClock)
    console_auth.create_user("erin", "a fine password", Role.ADMIN)
    assert console_auth.sign_in("erin", "nope").error == "invalid"
    locked = console_auth.sign_in("erin", "nope")
    assert (locked.error, locked.locked_for) == ("locked", 60)
    during = console_auth.sign_in("erin", "a fine password")
    assert during.error == "locked" and 0 < during.locked_for <= 60
    clock.advance(61)
    # after the lock lifts, one failure does not lock again at once
    assert console_auth.sign_in("erin", "nope").error == "invalid"
    assert console_auth.sign_in("erin", "a fine password").token
