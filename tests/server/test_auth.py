"""API keys: 401 and nothing else without one, rate limits, quotas, restrictions, hashing."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from tests.server.conftest import Running, ServerFactory

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError
from smsgate.outbox.sqlite import SqliteStore
from smsgate.server.auth import create_key, parse_quota, split_key

TO = "+15555550100"
MESSAGE = {"to": TO, "body": "hello"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer sgk_",
        "Bearer sgk_0123456789abcdef",
        "Bearer sgk_0123456789abcdef_wrongsecret",
        "Bearer not-a-key-at-all",
        "Bearer sgk_../../etc_x",
    ],
)
def test_no_valid_key_gets_401_and_nothing_else(server: Running, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path, body in [
        ("POST", "/v1/messages", MESSAGE),
        ("POST", "/v1/messages", {"garbage": True}),
        ("POST", "/v1/messages/batch", {"messages": [MESSAGE]}),
        ("GET", "/v1/messages/msg_anything", None),
        ("GET", "/v1/does-not-exist", None),
        ("DELETE", "/v1/suppressions", None),
    ]:
        response = server.anonymous.request(
            method, server.url + path, json=body, headers=headers, timeout=10
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"] == "unauthorized"
        assert set(response.json()) == {"error", "message", "field", "fix"}
    assert server.outbox.list().items == []


def test_the_right_key_is_let_through(server: Running) -> None:
    other = server.new_key("second")
    response = server.session(other).post(server.url + "/v1/messages", json=MESSAGE, timeout=10)
    assert response.status_code == 201


def test_keys_are_stored_hashed(server_factory: ServerFactory, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    running = server_factory(url)
    key_id, secret = split_key(running.key) or ("", "")
    record = running.store.get_key(key_id)
    assert record is not None
    assert record.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # The server's background tasks use the store too: stopped first, nothing opens, closes or
    # checkpoints the files while they are read (the last connection to close removes the WAL).
    running.thread.stop()
    store = running.outbox.store
    assert isinstance(store, SqliteStore)
    on_disk = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("keys.db*")))
    store.close()  # the last connection moves the WAL into the database file
    assert store.open_connections == 0
    assert sorted(tmp_path.glob("keys.db*")) == [tmp_path / "keys.db"]
    checkpointed = (tmp_path / "keys.db").read_bytes()
    for data in (on_disk, checkpointed):
        assert record.secret_hash.encode() in data  # the key's row is in what was read
        assert secret.encode() not in data


def test_revoked_keys_stop_working_within_the_cache_time(
    server_factory: ServerFactory, sqlite_url: str, clock: FakeClock
) -> None:
    running = server_factory(sqlite_url, clock=clock)
    assert running.post("/v1/messages", json=MESSAGE).status_code == 201
    key_id = (split_key(running.key) or ("", ""))[0]
    assert running.store.revoke_key(key_id, clock.time())
    clock.advance(running.services.authenticator.ttl + 0.1)
    assert running.post("/v1/messages", json=MESSAGE).status_code == 401


def test_rate_limit_answers_429_with_retry_after(
    server_factory: ServerFactory, sqlite_url: str, clock: FakeClock
) -> None:
    running = server_factory(sqlite_url, clock=clock, key={"rate": "2/s"})
    codes = [running.post("/v1/messages", json=MESSAGE).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    limited = running.post("/v1/messages", json=MESSAGE)
    assert limited.headers["Retry-After"] == "1" and limited.json()["error"] == "rate_limited"
    clock.advance(1.0)
    assert running.post("/v1/messages", json=MESSAGE).status_code == 201
    assert len(running.outbox.list().items) == 3
    # another key is not slowed by this one
    other = running.session(running.new_key("free"))
    assert other.post(running.url + "/v1/messages", json=MESSAGE, timeout=10).status_code == 201


def test_quota_counts_messages_per_window(
    server_factory: ServerFactory, sqlite_url: str, clock: FakeClock
) -> None:
    running = server_factory(sqlite_url, clock=clock, key={"quota": "3/d"})
    assert running.post("/v1/messages", json=MESSAGE).status_code == 201
    two = {"messages": [MESSAGE, MESSAGE, MESSAGE]}
    over = running.post("/v1/messages/batch", json=two)
    assert over.status_code == 429 and over.json()["error"] == "quota_exceeded"
    assert int(over.headers["Retry-After"]) > 0
    assert running.post("/v1/messages/batch", json={"messages": [MESSAGE, MESSAGE]}).ok
    refused = running.post("/v1/messages", json=MESSAGE)
    assert refused.status_code == 429 and refused.json()["error"] == "quota_exceeded"
    assert len(running.outbox.list().items) == 3
    clock.advance(86_400)
    assert running.post("/v1/messages", json=MESSAGE).status_code == 201


def test_key_restricted_to_purposes(server_factory: ServerFactory, sqlite_url: str) -> None:
    running = server_factory(sqlite_url, key={"purposes": ["otp"]})
    ok = running.post("/v1/messages", json=MESSAGE)
    assert ok.status_code == 201
    assert running.outbox.status(ok.json()["id"]).purpose == "otp"  # the only allowed one
    refused = running.post("/v1/messages", json={**MESSAGE, "purpose": "marketing"})
    assert refused.status_code == 403 and refused.json()["field"] == "purpose"
    batch = running.post(
        "/v1/messages/batch",
        json={"messages": [MESSAGE, {**MESSAGE, "purpose": "marketing"}]},
    ).json()
    assert batch["results"][0]["created"] and batch["results"][1]["error"]["error"] == "forbidden"


def test_key_restricted_to_senders(server_factory: ServerFactory, sqlite_url: str) -> None:
    running = server_factory(sqlite_url, key={"senders": ["+15017122661", "Acme"]})
    ok = running.post("/v1/messages", json={**MESSAGE, "sender": "Acme"})
    assert ok.status_code == 201
    unnamed = running.post("/v1/messages", json=MESSAGE)
    assert unnamed.status_code == 403 and unnamed.json()["field"] == "sender"
    other = running.post("/v1/messages", json={**MESSAGE, "sender": "Evil"})
    assert other.status_code == 403 and "Acme" in other.json()["fix"]
    single = server_factory(sqlite_url.replace(".db", "2.db"), key={"senders": ["Acme"]})
    defaulted = single.post("/v1/messages", json=MESSAGE)
    assert single.outbox.status(defaulted.json()["id"]).sender == "Acme"


def test_secrets_never_reach_the_log(
    server_factory: ServerFactory, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running = server_factory(sqlite_url)
    secret = (split_key(running.key) or ("", ""))[1]
    running.post("/v1/messages", json=MESSAGE)
    running.anonymous.post(
        running.url + "/v1/messages",
        json=MESSAGE,
        headers={"Authorization": running.key + "x"},
        timeout=10,
    )
    assert secret not in caplog.text


def test_key_options_are_checked(server: Running) -> None:
    for options, field in [
        ({"purposes": ["spam"]}, "purpose"),
        ({"rate": "fast"}, "rate"),
        ({"quota": "100"}, "quota"),
        ({"quota": "1.5/d"}, "quota"),
        ({"burst": 3}, "burst"),
    ]:
        with pytest.raises(ConfigError) as caught:
            create_key(server.store, "k", **options)  # type: ignore[arg-type]
        assert caught.value.field == field
    assert parse_quota("10000/d").period == 86_400
