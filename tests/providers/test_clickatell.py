from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import smsgate
from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.emulators.clickatell import ClickatellEmulator
from smsgate.errors import (
    AuthError,
    ConfigError,
    InsufficientFunds,
    OptedOut,
    ProviderUnavailable,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.clickatell import ClickatellProvider
from smsgate.providers.transport import HttpResponse
from tests.providers.contract import GOOD, ProviderContract


class TestClickatellContract(ProviderContract):
    emulator_cls = ClickatellEmulator
    wrong_credentials = "WrongKeyClickatell00000000000000"
    signs_body = False

    def provider_url(self, emulator: Emulator, **options: str) -> str:
        # Clickatell's callback URL is the integration's portal setting, not a request field:
        # set it on the emulator, with the token a user adds there.
        assert isinstance(emulator, ClickatellEmulator)
        callback = options.pop("callback", None)
        if callback:
            emulator.webhook_url = f"{callback}?smsgate_token={emulator.webhook_token}"
        return super().provider_url(emulator, **options)

    def secrets(self, emulator: Emulator) -> list[str]:
        assert isinstance(emulator, ClickatellEmulator)
        return [emulator.credentials, emulator.webhook_token]


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = ClickatellEmulator().run_in_thread()
    yield running
    running.stop()


def test_request_shape() -> None:
    provider = create_provider("clickatell://KEY@+15005550006")
    assert isinstance(provider, ClickatellProvider)
    message = Message(to=GOOD, body="hi", validity=3600)
    request = provider.build_send_request(message)
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.headers["Authorization"] == "KEY"  # the bare key, as Clickatell takes it
    assert request.json == {
        "to": [GOOD.lstrip("+")],
        "content": "hi",
        "from": "15005550006",
        "clientMessageId": message.id,
        "validityPeriod": 60,
    }


def test_a_callback_option_is_refused_with_where_to_set_it() -> None:
    with pytest.raises(ConfigError, match="portal") as info:
        create_provider("clickatell://KEY@+15005550006?callback=https://hooks.example.com/c")
    assert info.value.field == "callback"


def test_bulk_is_one_request_with_a_result_per_recipient(emulator: EmulatorThread) -> None:
    inner = emulator.emulator
    numbers = [GOOD, "+15005550004", "+447700900123", "+15005550001"]
    with smsgate.Gateway.from_url(inner.provider_url()) as gateway:
        results = gateway.send_many([Message(to=n, body="Sale today") for n in numbers])
    assert [r.ok for r in results] == [True, False, True, False]
    assert isinstance(results[1].error, OptedOut) and results[1].error.code == "121"
    assert results[3].error is not None and results[3].error.code == "105"
    assert results[0].provider_message_id != results[2].provider_message_id


def test_bad_sender_from_the_url_fails_over(emulator: EmulatorThread) -> None:
    url = emulator.emulator.provider_url().replace("@+15005550006", "@+15005550001")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(ProviderUnavailable) as info:
        gateway.send(GOOD, "hi")
    assert info.value.code == "106"


def _answer(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(401, "001", AuthError), (200, 7, AuthError), (400, "301", InsufficientFunds)],
)
def test_whole_request_refusals(status: int, code: Any, error: type[Exception]) -> None:
    provider = create_provider("clickatell://KEY@+15005550006")
    assert isinstance(provider, ClickatellProvider)
    body = {"messages": [], "errorCode": code, "error": "x", "errorDescription": "x"}
    response = _answer(status, body)
    if status == 200:
        assert provider.is_error_response(response)
    assert isinstance(provider.map_error_response(response, Message(to=GOOD, body="x")), error)


# -- callbacks: a URL token, and forgeries refused ----------------------------------------------

CALLBACK = json.dumps(
    {
        "messageId": "abc",
        "clientMessageId": "ours",
        "to": "15555550100",
        "statusCode": 4,
        "status": "RECEIVED_BY_RECIPIENT",
        "statusDescription": "Received",
        "timestamp": 1714564800000,
    }
).encode()


def _request(query: str) -> WebhookRequest:
    return WebhookRequest(f"https://hooks.example.com/ct{query}", "POST", {}, CALLBACK)


def test_callback_with_the_token_parses() -> None:
    provider = create_provider("clickatell://KEY@+15005550006?webhook_token=t0ken")
    [event] = provider.handle_status_webhook(_request("?smsgate_token=t0ken"))
    assert event.status is Status.DELIVERED and event.message_id == "ours"
    assert event.occurred_at is not None and event.occurred_at.year == 2024


@pytest.mark.parametrize(
    "query",
    ["", "?smsgate_token=t0keN", "?smsgate_token=t0ken&smsgate_token=other", "?token=t0ken"],
)
def test_forged_callbacks_are_refused(query: str) -> None:
    provider = create_provider("clickatell://KEY@+15005550006?webhook_token=t0ken")
    with pytest.raises(WebhookVerificationError):
        provider.handle_status_webhook(_request(query))
    with pytest.raises(WebhookVerificationError):
        create_provider("clickatell://KEY@+15005550006").handle_status_webhook(
            _request("?smsgate_token=t0ken")
        )
