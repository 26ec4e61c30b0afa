"""``smsgate users``: console users from the command line, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from smsgate.console.auth import ConsoleAuth, Role
from smsgate.console.settings import ConsoleSettings
from smsgate.outbox import Outbox
from smsgate.outbox.sql import SqlStore
from smsgate.outbox.tables.server import ServerStore
from smsgate.server.auth import create_key
from tests.cli.test_cli import SMSGATE, assert_one_line_error, run


def users(store: str, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [*SMSGATE, "users", *args, "--store", store]
    if password is not None:
        command.append("--password-stdin")
    return subprocess.run(
        command,
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_sign_in_change_password_list_and_delete(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'u.db'}"
    Outbox(store, migrate=True).close()
    made = users(store, "create", "alice", "--role", "admin", password="a long password")
    assert made.returncode == 0, made.stderr
    assert "alice created with the admin role" in made.stdout
    with Outbox(store) as outbox:
        assert isinstance(outbox.store, SqlStore)
        auth = ConsoleAuth(outbox.store, ConsoleSettings())
        assert auth.sign_in("alice", "a long password").session.role is Role.ADMIN  # type: ignore[union-attr]
        with outbox.store.read_transaction() as tx:
            stored = tx.execute("SELECT password_hash FROM smsgate_console_users")[0][0]
        assert stored.startswith("scrypt$32768$8$1$") and "a long password" not in stored
    again = users(store, "create", "alice", password="a long password")
    assert "exists" in assert_one_line_error(again, 2)
    short = users(store, "create", "bob", password="short")
    assert "at least 10 characters" in assert_one_line_error(short, 2)
    role = users(store, "create", "bob", "--role", "root", password="a long password")
    assert "role 'root'" in assert_one_line_error(role, 2)
    changed = users(store, "password", "alice", password="another long one")
    assert changed.returncode == 0 and "sessions were ended" in changed.stdout
    listed = users(store, "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"]) for r in rows] == [("alice", "admin")]
    assert rows[0]["last_login_at"] is not None
    assert users(store, "delete", "alice").returncode == 0
    assert "no console user named 'alice'" in assert_one_line_error(
        users(store, "delete", "alice"), 2
    )


def test_grant_key_gives_an_api_key_the_console_scope(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    with Outbox(store, migrate=True) as outbox:
        key = create_key(ServerStore.of(outbox.store), "ops")
    granted = users(store, "grant-key", key.record.id, "--role", "readonly")
    assert granted.returncode == 0 and "as readonly" in granted.stdout
    with Outbox(store) as outbox:
        assert isinstance(outbox.store, SqlStore)
        signed = ConsoleAuth(outbox.store, ConsoleSettings()).sign_in("", key.key)
        assert signed.session is not None and signed.session.role is Role.READONLY
    missing = users(store, "grant-key", "nosuch")
    assert "no live API key" in assert_one_line_error(missing, 2)
    assert "users" in run("--help").stdout
