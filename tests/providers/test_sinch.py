from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import smsgate
from smsgate.clock import FakeClock
from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.emulators.sinch import SinchEmulator
from smsgate.errors import (
    ConfigError,
    ProviderUnavailable,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.sinch import SinchProvider
from tests.providers.contract import GOOD, ProviderContract, with_options
from tests.providers.reconcile_contract import ReconcileContract
from tests.support.webhooks import WebhookReceiver


class TestSinchContract(ProviderContract):
    emulator_cls = SinchEmulator
    wrong_credentials = "e2ef5b7c0a8d4c3bb0f1a2b3c4d5e6f7:wrongtoken0000000000000000000000"
    signs_timestamps = True
    opt_out_in_receipt = True

    def stale(self, request: WebhookRequest, emulator: Emulator) -> WebhookRequest:
        assert isinstance(emulator, SinchEmulator)
        headers = {**request.headers, **emulator.sign(request.body, timestamp=time.time() - 301)}
        return WebhookRequest(request.url, request.method, headers, request.body)

    def secrets(self, emulator: Emulator) -> list[str]:
        assert isinstance(emulator, SinchEmulator)
        return [emulator.token, emulator.webhook_secret]


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = SinchEmulator().run_in_thread()
    yield running
    running.stop()


def _emulated(emulator: EmulatorThread) -> SinchEmulator:
    assert isinstance(emulator.emulator, SinchEmulator)
    return emulator.emulator


def test_batch_request_shape() -> None:
    provider = create_provider(
        "sinch://PLAN:TOKEN@+15005550006?region=eu&callback=https://hooks.example.com/s"
        "&delivery_report=per_recipient_final",
        clock=FakeClock(start=1_700_000_000),
    )
    assert isinstance(provider, SinchProvider)
    assert provider.base_url == "https://eu.sms.api.sinch.com"
    message = Message(to=GOOD, body="hi", validity=600)
    request = provider.build_send_request(message)
    assert request.path == "/xms/v1/PLAN/batches"
    assert request.headers["Authorization"] == "Bearer TOKEN"
    assert request.json == {
        "from": "+15005550006",
        "to": [GOOD],
        "body": "hi",
        "client_reference": message.id,
        "callback_url": "https://hooks.example.com/s",
        "delivery_report": "per_recipient_final",
        "expire_at": "2023-11-14T22:23:20Z",
    }


@pytest.mark.parametrize(
    ("option", "field"), [("region=mars", "region"), ("delivery_report=summary", "delivery_report")]
)
def test_bad_options_name_the_field(option: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_provider(f"sinch://PLAN:TOKEN@+15005550006?{option}")
    assert info.value.field == field


def test_bad_sender_from_the_url_fails_over(emulator: EmulatorThread) -> None:
    url = _emulated(emulator).provider_url().replace("@+15005550006", "@+15005550001")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(ProviderUnavailable):
        gateway.send(GOOD, "hi")


def test_status_fetch_reads_the_batch_delivery_report(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    inner = _emulated(emulator)
    url = with_options(inner.provider_url(), callback=f"{webhook_receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        sent = gateway.send(GOOD, "hello")
        assert sent.provider_message_id
        webhook_receiver.wait(2, path="/status")
        result = gateway.fetch_status(sent.provider_message_id)
    assert result.status is Status.DELIVERED and result.to == GOOD


def test_receipts_carry_our_id_and_a_retried_report_is_the_same_event(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    inner = _emulated(emulator)
    url = with_options(inner.provider_url(), callback=f"{webhook_receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        sent = gateway.send(GOOD, "hello")
    requests_ = webhook_receiver.wait(2, path="/status")
    provider = create_provider(inner.provider_url())
    events = [e for r in requests_ for e in provider.handle_status_webhook(r)]
    assert [e.status for e in events] == [Status.SENT, Status.DELIVERED]
    assert all(e.message_id == sent.id for e in events)
    # Sinch retries with a fresh nonce and timestamp: the signed body names the same event.
    retried = requests_[1]
    again = WebhookRequest(
        retried.url, "POST", {**retried.headers, **inner.sign(retried.body)}, retried.body
    )
    assert provider.handle_status_webhook(again)[0].event_id == events[1].event_id


# -- signatures, written out independently ------------------------------------------------------

SECRET = "callback-secret"
BODY = json.dumps(
    {
        "type": "recipient_delivery_report_sms",
        "batch_id": "B1",
        "recipient": "15555550100",
        "code": 0,
        "status": "Delivered",
        "at": "2024-05-01T12:00:00.000Z",
    }
).encode()
NOW = 1_714_564_800


def _signed(
    body: bytes, nonce: str = "n0nce", timestamp: int = NOW, secret: str = SECRET
) -> WebhookRequest:
    digest = hmac.new(secret.encode(), body + f".{nonce}.{timestamp}".encode(), hashlib.sha256)
    headers = {
        "X-Sinch-Webhook-Signature": base64.b64encode(digest.digest()).decode(),
        "X-Sinch-Webhook-Signature-Nonce": nonce,
        "X-Sinch-Webhook-Signature-Timestamp": str(timestamp),
        "Content-Type": "application/json",
    }
    return WebhookRequest("https://hooks.example.com/sinch", "POST", headers, body)


def _provider(secret: str | None = SECRET) -> SinchProvider:
    url = "sinch://PLAN:TOKEN@+15005550006" + (f"?webhook_secret={secret}" if secret else "")
    provider = create_provider(url, clock=FakeClock(start=NOW))
    assert isinstance(provider, SinchProvider)
    return provider


def test_independently_signed_callback_verifies() -> None:
    [event] = _provider().handle_status_webhook(_signed(BODY))
    assert event.status is Status.DELIVERED and event.provider_message_id == "B1"


@pytest.mark.parametrize(
    "forge",
    [
        lambda r: WebhookRequest(r.url, "POST", r.headers, r.body.replace(b"Delivered", b"Failed")),
        lambda r: WebhookRequest(
            r.url, "POST", {**r.headers, "X-Sinch-Webhook-Signature-Nonce": "other"}, r.body
        ),
        lambda r: WebhookRequest(
            r.url,
            "POST",
            {**r.headers, "X-Sinch-Webhook-Signature-Timestamp": str(NOW + 1)},
            r.body,
        ),
        lambda r: WebhookRequest(
            r.url, "POST", {k: v for k, v in r.headers.items() if "Nonce" not in k}, r.body
        ),
        lambda r: _signed(r.body, secret="another-secret"),
        lambda r: _signed(r.body, timestamp=NOW - 301),
    ],
    ids=["body", "nonce", "timestamp", "no-nonce", "other-secret", "stale"],
)
def test_forged_callbacks_are_refused(forge: Any) -> None:
    with pytest.raises(WebhookVerificationError):
        _provider().handle_status_webhook(forge(_signed(BODY)))


def test_without_a_secret_every_callback_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="webhook_secret"):
        _provider(None).handle_status_webhook(_signed(BODY))


# -- Sinch's own SDK against the emulator ---------------------------------------------------------


def test_official_sinch_sdk_sends_and_verifies_the_emulators_callbacks(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    sinch = pytest.importorskip("sinch", reason="pip install sinch")
    inner = _emulated(emulator)
    client = sinch.SinchClient(service_plan_id=inner.service_plan_id, sms_api_token=inner.token)
    client.configuration.sms_origin_with_service_plan_id = emulator.url
    batch = client.sms.batches.send_sms(
        to=[GOOD],
        from_="+15005550006",
        body="from the SDK",
        delivery_report="per_recipient",
        callback_url=f"{webhook_receiver.url}/status",
    )
    assert batch.id
    [stored] = inner.summary()["messages"]
    assert stored["id"] == batch.id and stored["body"] == "from the SDK"
    request = webhook_receiver.wait(1, path="/status")[0]
    from sinch.domains.sms.sinch_events.v1.sms_sinch_event import (  # type: ignore[import-untyped]
        SmsSinchEvent,
    )

    checker = SmsSinchEvent(app_secret=inner.webhook_secret)
    assert checker.validate_authentication_header(dict(request.headers), request.body)
    assert not SmsSinchEvent(app_secret="wrong").validate_authentication_header(
        dict(request.headers), request.body
    )
    with pytest.raises(Exception, match="401"):
        bad = sinch.SinchClient(service_plan_id=inner.service_plan_id, sms_api_token="wrong")
        bad.configuration.sms_origin_with_service_plan_id = emulator.url
        bad.sms.batches.send_sms(to=[GOOD], from_="+15005550006", body="x")


class TestSinchReconcile(ReconcileContract):
    emulator_cls = SinchEmulator
