from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proxy import Proxy, start_tinyproxy
from tests.support.webhooks import WebhookReceiver


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    yield from start_tinyproxy(tmp_path, auth=False)


@pytest.fixture
def auth_proxy(tmp_path: Path) -> Iterator[Proxy]:
    yield from start_tinyproxy(tmp_path, auth=True)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch
