from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.webhooks import WebhookReceiver


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
