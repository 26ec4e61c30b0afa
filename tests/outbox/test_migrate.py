"""Versioned migrations: applied by db upgrade, an older (or newer) store refused with the fix."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from smsgate.message import Message, Status
from smsgate.outbox import SCHEMA_VERSION, Outbox, SchemaVersionError
from smsgate.outbox import migrate as migrations
from smsgate.outbox.store import open_store
from tests.outbox.conftest import sqlite_url


def test_every_engine_has_the_same_versions() -> None:
    sqlite = [(m.version, m.name) for m in migrations.migrations("sqlite")]
    postgres = [(m.version, m.name) for m in migrations.migrations("postgresql")]
    assert sqlite == postgres
    assert len(sqlite) == SCHEMA_VERSION >= 2
    for migration in migrations.migrations("sqlite"):
        assert migration.statements(), migration.name


def test_a_new_sqlite_file_is_created_at_the_current_version(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path)) as outbox:
        assert outbox.store.schema_version() == SCHEMA_VERSION


def test_a_new_postgresql_store_is_refused_until_upgraded(postgres_url: str) -> None:
    with pytest.raises(SchemaVersionError) as error:
        Outbox(postgres_url)
    assert "smsgate db upgrade" in str(error.value)
    assert error.value.found == 0


def test_an_older_schema_is_refused_with_the_command_to_run(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.migrate(target=1) == [1]
    finally:
        store.close()
    with pytest.raises(SchemaVersionError) as error:
        Outbox(store_url)
    message = str(error.value)
    assert "schema version 1" in message and f"needs version {SCHEMA_VERSION}" in message
    assert "Run: smsgate db upgrade --store" in message
    assert (error.value.found, error.value.needed) == (1, SCHEMA_VERSION)
    # an explicit upgrade keeps what is stored
    store = open_store(store_url)
    try:
        with store.inserter(atomic=False) as inserter:
            from smsgate.outbox.codec import row_for

            row, event = row_for(Message(to="+15555550100", body="kept"), 1.0)
            inserter.insert([row], [event])
        assert store.migrate() == list(range(2, SCHEMA_VERSION + 1))
    finally:
        store.close()
    with Outbox(store_url) as outbox:
        assert outbox.counts() == {Status.QUEUED: 1}


def test_a_newer_schema_is_refused(store_url: str) -> None:
    Outbox(store_url, migrate=True).close()
    store = open_store(store_url)
    try:
        with store._write() as tx:  # type: ignore[attr-defined]
            tx.execute(
                "INSERT INTO smsgate_schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (SCHEMA_VERSION + 1, "from_the_future", 0.0),
            )
    finally:
        store.close()
    with pytest.raises(SchemaVersionError, match="newer than this smsgate"):
        Outbox(store_url, migrate=True)


def test_concurrent_upgrades_apply_each_migration_once(store_url: str) -> None:
    errors: list[BaseException] = []
    applied: list[list[int]] = []

    def upgrade() -> None:
        store = open_store(store_url)
        try:
            applied.append(store.migrate())
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(v for versions in applied for v in versions) == list(range(1, SCHEMA_VERSION + 1))


def test_store_urls_are_checked_with_the_fix_named(tmp_path: Path) -> None:
    from smsgate.errors import ConfigError

    cases = {
        "smsgate.db": "is not a URL",
        "mysql://x/y": "not supported",
        "sqlite://relative.db": "three slashes",
        "sqlite:///:memory:": "needs a file",
        f"sqlite:///{tmp_path}/missing/dir/x.db": "does not exist",
        f"sqlite:///{tmp_path}/x.db?synchronous=sometimes": "synchronous",
        f"sqlite:///{tmp_path}/x.db?colour=red": "unknown sqlite store option",
    }
    for url, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            Outbox(url)


def test_a_password_never_appears_in_errors_or_reprs() -> None:
    from smsgate.errors import ConfigError

    url = "postgresql://smsgate:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=1"
    with pytest.raises(ConfigError) as error:
        Outbox(url)
    assert "s3cret-pw" not in str(error.value)
    assert "***" in str(error.value)
