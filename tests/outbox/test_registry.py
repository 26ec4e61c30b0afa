"""The engine registry: store URLs open the engine registered for their scheme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError
from smsgate.message import Message, Status
from smsgate.outbox import Outbox
from smsgate.outbox.sqlite import SqliteStore
from smsgate.outbox.store import ENGINES, StoreURL, open_store, register_engine


class CopyStore(SqliteStore):
    """An engine from "another package": SQLite under a scheme of its own."""

    def __init__(self, url: StoreURL) -> None:
        super().__init__(StoreURL.parse("sqlite:///" + url.raw.split(":///", 1)[1]))


@pytest.fixture
def copy_engine() -> Iterator[None]:
    register_engine("copystore", f"{__name__}:CopyStore", install="pip install copystore")
    yield
    del ENGINES["copystore"]


def test_a_registered_engine_serves_an_outbox(tmp_path: Path, copy_engine: None) -> None:
    url = f"copystore:///{tmp_path / 'copy.db'}"
    assert isinstance(open_store(url), CopyStore)
    with Outbox(url, clock=FakeClock(), migrate=True) as outbox:
        message_id = outbox.submit(Message(to="+15555550100", body="through the registry"))
        assert outbox.status(message_id).status is Status.QUEUED


def test_a_registered_engines_url_is_masked(copy_engine: None) -> None:
    parsed = StoreURL.parse("copystore://me:hunter2@127.0.0.1/db?password=hunter2")
    assert "hunter2" not in parsed.masked


def test_an_engine_whose_module_cannot_load_says_what_to_install() -> None:
    register_engine("missing", "smsgate_no_such_package:Store", install="pip install missing")
    try:
        with pytest.raises(ConfigError, match="pip install missing"):
            open_store("missing://127.0.0.1/db")
    finally:
        del ENGINES["missing"]


def test_an_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match="not supported; use sqlite:///"):
        open_store("mysql://127.0.0.1/db")
