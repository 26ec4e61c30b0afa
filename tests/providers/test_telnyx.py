from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import smsgate
from smsgate.clock import FakeClock
from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.emulators.telnyx import TelnyxEmulator
from smsgate.errors import (
    AmbiguousSend,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import Provider, WebhookRequest
from smsgate.providers.transport import HttpResponse
from tests.providers.contract import GOOD, MEDIA, ProviderContract, with_options
from tests.support.webhooks import WebhookReceiver


class TestTelnyxContract(ProviderContract):
    emulator_cls = TelnyxEmulator
    wrong_credentials = "KEYWRONG00000000000000000000000000_wrongsecret"
    signs_timestamps = True

    def stale(self, request: WebhookRequest, emulator: Emulator) -> WebhookRequest:
        assert isinstance(emulator, TelnyxEmulator)
        headers = {**request.headers, **emulator.sign(request.body, timestamp=time.time() - 301)}
        return WebhookRequest(request.url, request.method, headers, request.body)


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = TelnyxEmulator().run_in_thread()
    yield running
    running.stop()


def _summary(emulator: EmulatorThread) -> Any:
    return emulator.call(emulator.emulator.summary)


# -- Ed25519, signed and checked independently of smsgate ----------------------------------------

BODY = json.dumps(
    {
        "data": {
            "event_type": "message.finalized",
            "id": "evt-1",
            "occurred_at": "2024-05-01T12:00:00.000+00:00",
            "payload": {
                "id": "msg-1",
                "parts": 1,
                "errors": [],
                "to": [{"phone_number": GOOD, "status": "delivered"}],
            },
        }
    }
).encode()
NOW = 1_714_564_800


def _own_key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(public).decode()


def _signed(key: Ed25519PrivateKey, body: bytes, timestamp: int) -> WebhookRequest:
    # Telnyx's documented scheme, written out here: sign "<timestamp>|<raw body>".
    signature = base64.b64encode(key.sign(f"{timestamp}|".encode() + body)).decode()
    headers = {
        "telnyx-signature-ed25519": signature,
        "telnyx-timestamp": str(timestamp),
        "Content-Type": "application/json",
    }
    return WebhookRequest("https://example.com/telnyx", "POST", headers, body)


def _provider(public_key: str, clock: FakeClock | None = None) -> Provider:
    url = f"telnyx://KEY@+15005550006?public_key={quote(public_key, safe='')}"
    return create_provider(url, clock=clock or FakeClock(start=NOW))


def test_signature_made_independently_verifies() -> None:
    key, public = _own_key()
    [event] = _provider(public).handle_status_webhook(_signed(key, BODY, NOW))
    assert event.status is Status.DELIVERED and event.event_id == "evt-1"
    assert event.provider_message_id == "msg-1" and event.occurred_at is not None


def test_tampered_body_wrong_key_and_bad_headers_are_refused() -> None:
    key, public = _own_key()
    request = _signed(key, BODY, NOW)
    provider = _provider(public)
    tampered = WebhookRequest(
        request.url, "POST", request.headers, BODY.replace(b"delivered", b"failed")
    )
    with pytest.raises(WebhookVerificationError, match="does not match"):
        provider.verify_webhook(tampered)
    _, other_public = _own_key()
    with pytest.raises(WebhookVerificationError, match="does not match"):
        _provider(other_public).verify_webhook(request)
    # the timestamp is part of what is signed: moving it breaks the signature
    moved = WebhookRequest(
        request.url, "POST", {**request.headers, "telnyx-timestamp": str(NOW + 1)}, BODY
    )
    with pytest.raises(WebhookVerificationError, match="does not match"):
        provider.verify_webhook(moved)
    for broken in (
        {"telnyx-timestamp": str(NOW)},
        {**request.headers, "telnyx-signature-ed25519": "%%"},
    ):
        with pytest.raises(WebhookVerificationError):
            provider.verify_webhook(WebhookRequest(request.url, "POST", broken, BODY))
    with pytest.raises(WebhookVerificationError, match="public_key"):
        create_provider("telnyx://KEY@+15005550006").verify_webhook(request)


def test_timestamp_tolerance_is_300_seconds_on_the_injected_clock() -> None:
    key, public = _own_key()
    request = _signed(key, BODY, NOW)
    clock = FakeClock(start=NOW + 300)
    provider = _provider(public, clock)
    provider.verify_webhook(request)
    clock.advance(1)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        provider.verify_webhook(request)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        _provider(public, FakeClock(start=NOW - 301)).verify_webhook(request)


def test_emulator_signatures_check_out_with_cryptography(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    url = with_options(emulator.emulator.provider_url(), callback=f"{webhook_receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        result = gateway.send(GOOD, "track me")
    requests_ = webhook_receiver.wait(2, path="/status")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(emulator.emulator.public_key))
    for request in requests_:
        stamp = request.header("telnyx-timestamp")
        signature = base64.b64decode(request.header("telnyx-signature-ed25519") or "")
        public.verify(signature, f"{stamp}|".encode() + request.body)
        with pytest.raises(InvalidSignature):
            public.verify(signature, f"{stamp}|".encode() + request.body + b" ")
    events = [
        e
        for r in requests_
        for e in create_provider(emulator.emulator.provider_url()).handle_status_webhook(r)
    ]
    assert [e.status for e in events] == [Status.SENT, Status.DELIVERED]
    assert {e.message_id for e in events} == {result.id}
    assert [json.loads(r.body)["data"]["event_type"] for r in requests_] == [
        "message.sent",
        "message.finalized",
    ]


def test_emulator_prints_its_public_key_and_can_keep_it() -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    first, second = TelnyxEmulator(signing_key=seed), TelnyxEmulator(signing_key=seed)
    assert first.public_key == second.public_key != TelnyxEmulator().public_key
    first.url = "http://127.0.0.1:9"
    assert any(first.public_key in line for line in first.describe())
    assert f"public_key={quote(first.public_key, safe='')}" in first.provider_url()
    # a '+' that arrived as a space (an unencoded URL) still loads
    with_plus = next(k for k in (TelnyxEmulator().public_key for _ in range(200)) if "+" in k)
    from smsgate.providers.telnyx import load_public_key

    for key in (with_plus, "+" + with_plus[1:]):  # a '+' inside, and one at the very start
        loaded = load_public_key(key.replace("+", " "))
        assert loaded.public_bytes(Encoding.Raw, PublicFormat.Raw) == base64.b64decode(key)
    with pytest.raises(smsgate.ConfigError) as info:
        create_provider("telnyx://KEY@+15005550006?public_key=bm90LWEta2V5")
    assert info.value.field == "public_key"


# -- idempotency -----------------------------------------------------------------------------------


def test_idempotency_key_is_sent_and_the_emulator_dedupes(emulator: EmulatorThread) -> None:
    message = Message(to=GOOD, body="only once")
    keyed = Message(to=GOOD, body="keyed", idempotency_key="order-42")
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        first = gateway.send(message)
        again = gateway.send(message)  # e.g. a retry after an ambiguous send
        keyed_result = gateway.send(keyed)
        other = gateway.send(Message(to=GOOD, body="only once"))  # a new message, a new id
    summary = _summary(emulator)
    assert first.provider_message_id == again.provider_message_id
    assert (
        summary["count"] == 3 and summary["idempotent_replays"] == 1 and summary["duplicates"] == 0
    )
    keys = [m["fields"]["idempotency_key"] for m in summary["messages"]]
    assert keys == [message.id, "order-42", other.id]
    assert keyed_result.ok


# -- sending, errors, status -----------------------------------------------------------------------


def test_request_fields_and_mms(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        mms = gateway.send(GOOD, "look", media=(MEDIA,))
        sms = gateway.send(GOOD, "Привет")
    first, second = _summary(emulator)["messages"]
    assert (
        first["media"] == [MEDIA]
        and first["fields"]["messaging_profile_id"] == emulator.emulator.profile
    )
    assert mms.raw["type"] == "MMS" and sms.raw["type"] == "SMS"
    assert (
        second["fields"]["encoding"] == "UCS-2"
        and sms.price == "0.0040"
        and sms.price_unit == "USD"
    )


@pytest.mark.parametrize(
    ("to", "sender", "error", "code"),
    [
        ("+15005550001", None, InvalidRecipient, "10002"),
        ("+15005550002", None, InvalidRecipient, "10001"),
        ("+15005550009", None, InvalidRecipient, "40310"),
        ("+15005550003", None, UnsupportedFeature, "10010"),
        ("+15005550004", None, OptedOut, "40300"),
        (GOOD, "+15005550007", InvalidMessage, "40305"),
        (GOOD, "+15005550008", RateLimited, "10011"),
    ],
)
def test_error_bodies_map_into_the_taxonomy(
    emulator: EmulatorThread, to: str, sender: str | None, error: type[Exception], code: str
) -> None:
    with (
        smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway,
        pytest.raises(error) as info,
    ):
        gateway.send(to, "hello", sender=sender)
    assert info.value.code == code
    assert info.value.raw["errors"][0]["code"] == code


def test_sender_in_the_url_refused_is_the_providers_problem(emulator: EmulatorThread) -> None:
    url = emulator.emulator.provider_url().replace("@+15005550006", "@+15005550001")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(ProviderUnavailable) as info:
        gateway.send(GOOD, "x")
    assert info.value.field == "sender"


def test_stop_blocks_later_sends_with_40300(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    stop = {"from": GOOD, "to": "+15005550006", "body": "STOP", "url": f"{webhook_receiver.url}/in"}
    assert (
        requests.post(f"{emulator.url}/_emulator/inbound", json=stop, timeout=10).status_code == 200
    )
    [request] = webhook_receiver.wait(1, path="/in")
    [inbound] = create_provider(emulator.emulator.provider_url()).handle_inbound_webhook(request)
    assert inbound.body == "STOP" and inbound.sender == GOOD
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        with pytest.raises(OptedOut):
            gateway.send(GOOD, "hello?")
        requests.post(
            f"{emulator.url}/_emulator/inbound", json={**stop, "body": "START"}, timeout=10
        )
        assert gateway.send(GOOD, "welcome back").ok


def test_failed_delivery_keeps_code_and_reason(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    emulator.call(lambda: setattr(emulator.emulator.callbacks, "outcomes", {"failed": 1.0}))
    url = with_options(emulator.emulator.provider_url(), callback=f"{webhook_receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        result = gateway.send(GOOD, "x")
        [request] = webhook_receiver.wait(1, path="/status")
        [event] = create_provider(emulator.emulator.provider_url()).handle_status_webhook(request)
        assert event.status is Status.FAILED and event.error_code == "40004"
        assert event.reason == "Rejected by destination"
        fetched = gateway.fetch_status(result.provider_message_id or "")
    assert fetched.status is Status.FAILED


def test_status_fetch(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        result = gateway.send(GOOD, "hi")
        fetched = gateway.fetch_status(result.provider_message_id or "")
        assert fetched.status is Status.QUEUED and fetched.to == GOOD and fetched.segments == 1
        with pytest.raises(InvalidMessage):
            gateway.fetch_status("00000000-0000-0000-0000-000000000000")


def test_non_status_events_are_skipped_and_garbage_refused() -> None:
    key, public = _own_key()
    provider = _provider(public)
    other = json.dumps(
        {"data": {"event_type": "number_order.complete", "id": "e", "payload": {}}}
    ).encode()
    assert provider.handle_status_webhook(_signed(key, other, NOW)) == []
    with pytest.raises(WebhookVerificationError):
        provider.handle_status_webhook(_signed(key, b"[1, 2]", NOW))


def test_unexpected_error_bodies() -> None:
    provider = create_provider("telnyx://KEY@+15005550006")
    message = Message(to=GOOD, body="x")
    plain = HttpResponse(502, {}, b"<html>bad gateway</html>")
    assert provider.map_error_response(plain, message).retryable
    pointer = HttpResponse(
        422,
        {},
        json.dumps(
            {
                "errors": [
                    {
                        "code": "10015",
                        "title": "Bad Request",
                        "detail": "text too long",
                        "source": {"pointer": "/text"},
                    }
                ]
            }
        ).encode(),
    )
    mapped = provider.map_error_response(pointer, message)
    assert isinstance(mapped, InvalidMessage) and mapped.field == "text"


def test_user_idempotency_keys_are_mapped_to_the_form_telnyx_takes(
    emulator: EmulatorThread,
) -> None:
    from smsgate.providers.telnyx import telnyx_idempotency_key

    assert telnyx_idempotency_key("order-42:retry_1") == "order-42:retry_1"
    odd = telnyx_idempotency_key("order.42/retry 1")
    assert re.fullmatch(r"[A-Za-z0-9_:-]{1,255}", odd)
    assert odd == telnyx_idempotency_key("order.42/retry 1")  # stable across retries
    assert odd != telnyx_idempotency_key("order_42/retry 1")  # distinct keys stay distinct
    assert re.fullmatch(r"[A-Za-z0-9_:-]{1,255}", telnyx_idempotency_key("é" * 400))
    # The emulator refuses a key Telnyx would refuse; the provider's mapped key goes through,
    # and a retry with the same user key is answered from the first send.
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        first = gateway.send(GOOD, "hello", idempotency_key="order.42/retry 1")
        again = gateway.send(GOOD, "hello", idempotency_key="order.42/retry 1")
    assert first.provider_message_id == again.provider_message_id
    summary = emulator.call(emulator.emulator.summary)
    assert summary["count"] == 1 and summary["idempotent_replays"] == 1
    refused = requests.post(
        f"{emulator.url}/v2/messages",
        json={"from": "+15005550006", "to": GOOD, "text": "x"},
        headers={
            "Authorization": f"Bearer {emulator.emulator.credentials}",
            "Idempotency-Key": "order.42/retry 1",
        },
        timeout=10,
    )
    assert refused.status_code == 422


def test_more_than_ten_parts_is_refused_before_sending_so_the_router_can_fail_over(
    emulator: EmulatorThread,
) -> None:
    eleven_parts = "x" * (153 * 10 + 1)
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        with pytest.raises(UnsupportedFeature, match="at most 10 parts") as info:
            gateway.send(GOOD, eleven_parts)
        assert info.value.failover
        assert gateway.send(GOOD, "x" * (153 * 10)).ok  # ten parts still go
    assert emulator.call(emulator.emulator.summary)["count"] == 1
    # The emulator enforces the limit as Telnyx does, and a 40302 fails over too.
    answer = requests.post(
        f"{emulator.url}/v2/messages",
        json={"from": "+15005550006", "to": GOOD, "text": eleven_parts},
        headers={"Authorization": f"Bearer {emulator.emulator.credentials}"},
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "40302"
    provider = create_provider(emulator.emulator.provider_url())
    mapped = provider.map_error_response(  # type: ignore[attr-defined]
        HttpResponse(400, {}, answer.content), Message(to=GOOD, body=eleven_parts)
    )
    assert isinstance(mapped, UnsupportedFeature) and mapped.failover


def test_a_key_still_being_processed_is_not_a_final_failure() -> None:
    provider = create_provider("telnyx://KEY@+15005550006")
    busy = HttpResponse(
        409,
        {},
        json.dumps(
            {"errors": [{"code": "10036", "title": "Idempotency key is being processed"}]}
        ).encode(),
    )
    mapped = provider.map_error_response(busy, Message(to=GOOD, body="x"))  # type: ignore[attr-defined]
    assert isinstance(mapped, AmbiguousSend)  # retried with the same key, never failed


def test_tags_are_not_a_telnyx_request_field() -> None:
    with (
        smsgate.Gateway.from_url("telnyx://KEY@+15005550006") as gateway,
        pytest.raises(UnsupportedFeature, match="tags"),
    ):
        gateway.send(GOOD, "hi", provider_options={"tags": ["a"]})


def test_the_request_the_provider_builds_fits_telnyxs_create_message_request() -> None:
    spec = json.loads(
        (Path(__file__).parent / "specs" / "telnyx_create_message.json").read_text("utf-8")
    )
    provider = create_provider(
        "telnyx://KEY@+15005550006?profile=4000eba1-a0c0-4563-9925-b25e842a7cb6"
        "&callback=https://hooks.example/telnyx"
    )
    kinds = {"string": str, "array": list, "boolean": bool}
    for message in (
        Message(to=GOOD, body="hi", provider_options={"use_profile_webhooks": False}),
        Message(to=GOOD, body="look", media=(MEDIA,), idempotency_key="order.42/retry 1"),
    ):
        request = provider.build_send_request(message)  # type: ignore[attr-defined]
        body: dict[str, Any] = request.json
        assert set(body) <= set(spec["properties"]), set(body) - set(spec["properties"])
        assert set(spec["required"]) <= set(body)
        for name, value in body.items():
            assert isinstance(value, kinds[spec["properties"][name]["type"]]), name
        assert body.get("type", "SMS") in spec["properties"]["type"]["enum"]
        pattern = spec["headers"]["Idempotency-Key"]["pattern"]
        assert re.fullmatch(pattern, request.headers["Idempotency-Key"])
    assert provider.supported_options() <= set(spec["properties"])
