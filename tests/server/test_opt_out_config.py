"""``[otp] honor_opt_outs`` from the config file reaches the server's submit paths.

The server here opens its outbox itself (``create_app(config)``, as ``smsgate serve`` does), so
the setting can only come from the file; answers are read over real loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI

from smsgate.config import Config, load_config
from smsgate.errors import ConfigError
from smsgate.outbox import Outbox
from smsgate.outbox.tables.server import ServerStore, Suppression
from smsgate.server.app import create_app
from smsgate.server.auth import create_key
from smsgate.server.runner import ServerThread
from smsgate.server.settings import ServerSettings

PERSON = "+15555550123"
OURS = "+15005550006"

#: ``serve(config, key)``: the server's URL and a session carrying ``key``
Serve = Callable[[Config, str], tuple[str, requests.Session]]


def write_config(tmp_path: Path, store_url: str, otp_table: str) -> Config:
    path = tmp_path / "smsgate.toml"
    path.write_text(f'store = "{store_url}"\n{otp_table}', encoding="utf-8")
    return load_config(path)


def prepare(store_url: str) -> str:
    """Migrate the store, put PERSON's STOP to OURS on its suppression list; an API key."""
    with Outbox(store_url, migrate=True) as outbox:
        store = ServerStore.of(outbox.store)
        assert store.add_suppression(Suppression(PERSON, OURS, "keyword", "STOP", None, 1.0))
        return create_key(store, "tests").key


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[tuple[ServerThread, requests.Session]] = []

    def start(config: Config, key: str) -> tuple[str, requests.Session]:
        def make(url: str) -> FastAPI:
            settings = ServerSettings.from_config(config).with_overrides(public_url=url)
            return create_app(config, settings=settings, worker=False)

        thread = ServerThread(make)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        started.append((thread, session))
        return thread.url, session

    yield start
    for thread, session in started:
        thread.stop()
        session.close()


def post(url: str, session: requests.Session, purpose: str, to: str = PERSON) -> requests.Response:
    body = {"to": to, "body": "Your code is 481902", "purpose": purpose, "sender": OURS}
    return session.post(f"{url}/v1/messages", json=body, timeout=30)


def test_the_config_lets_otp_through_to_an_opted_out_recipient(
    tmp_path: Path, store_url: str, serve: Serve
) -> None:
    key = prepare(store_url)
    config = write_config(tmp_path, store_url, "[otp]\nhonor_opt_outs = false\n")
    url, session = serve(config, key)
    otp = post(url, session, "otp")
    assert otp.status_code == 201, otp.text
    # the setting is about otp only: the same recipient is still refused anything else
    refused = post(url, session, "transactional")
    assert refused.status_code == 422 and refused.json()["error"] == "opted_out"
    batch = session.post(
        f"{url}/v1/messages/batch",
        json={"messages": [{"to": PERSON, "body": "code", "purpose": "otp", "sender": OURS}]},
        timeout=30,
    ).json()
    assert (batch["accepted"], batch["rejected"]) == (1, 0)
    with Outbox(store_url) as outbox:
        assert sorted(m.purpose for m in outbox.list(to=PERSON).items) == ["otp", "otp"]


def test_by_default_otp_to_an_opted_out_recipient_is_refused(
    tmp_path: Path, store_url: str, serve: Serve
) -> None:
    key = prepare(store_url)
    config = write_config(tmp_path, store_url, "")
    url, session = serve(config, key)
    refused = post(url, session, "otp")
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["error"] == "opted_out" and error["field"] == "to"
    assert PERSON in error["message"] and OURS in error["message"]
    assert post(url, session, "otp", to="+15555550124").status_code == 201
    with Outbox(store_url) as outbox:
        assert outbox.list(to=PERSON).items == []


@pytest.mark.parametrize("honors", [True, False])
def test_an_injected_outbox_must_follow_the_config(sqlite_url: str, honors: bool) -> None:
    config = Config.from_dict({"store": sqlite_url, "otp": {"honor_opt_outs": not honors}})
    with Outbox(sqlite_url, migrate=True, otp_honors_opt_outs=honors) as outbox:
        with pytest.raises(ConfigError) as raised:
            create_app(config, outbox=outbox, worker=False)
        assert raised.value.field == "otp.honor_opt_outs"
        assert f"otp_honors_opt_outs={not honors}" in str(raised.value)
        # one that agrees is used as it is, and left open for its owner
        agreeing = Config.from_dict({"store": sqlite_url, "otp": {"honor_opt_outs": honors}})
        app = create_app(agreeing, outbox=outbox, worker=False)
        assert app.state.services.outbox is outbox and outbox.otp_honors_opt_outs is honors
