from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import smsgate
from smsgate.clock import FakeClock
from smsgate.emulators.base import Emulator, EmulatorThread, Faults
from smsgate.emulators.smsroute import SmsrouteEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
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
from smsgate.providers.smsroute import (
    SIGNATURE_HEADER,
    smsroute_signature,
    smsroute_signature_header,
)
from tests.providers.contract import ProviderContract, with_options
from tests.support.webhooks import WebhookReceiver


def _secret(emulator: Emulator) -> str:
    assert isinstance(emulator, SmsrouteEmulator)
    return emulator.webhook_secret


class TestSmsrouteContract(ProviderContract):
    emulator_cls = SmsrouteEmulator
    wrong_credentials = "not-the-api-key"
    signs_timestamps = True

    def webhook_provider(self, emulator: Emulator, *, wrong_key: bool = False) -> Provider:
        # smsroute signs webhooks with a webhook secret, not with the API key.
        url = emulator.provider_url()
        if wrong_key:
            url = url.replace(f"webhook_secret={_secret(emulator)}", "webhook_secret=another")
        return create_provider(url)

    def stale(self, request: WebhookRequest, emulator: Emulator) -> WebhookRequest:
        headers = dict(request.headers)
        old = int(time.time()) - 301 - 60
        headers[SIGNATURE_HEADER] = smsroute_signature_header(_secret(emulator), old, request.body)
        return WebhookRequest(request.url, request.method, headers, request.body)

    def secrets(self, emulator: Emulator) -> list[str]:
        return [emulator.credentials, _secret(emulator)]


GOOD = "+15555550100"
GOOD_2 = "+447700900123"


def running(**options: Any) -> EmulatorThread:
    return SmsrouteEmulator(faults=Faults(seed=5), **options).run_in_thread()


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    thread = running()
    yield thread
    thread.stop()


@pytest.fixture
def gateway(emulator: EmulatorThread) -> Iterator[smsgate.Gateway]:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        yield gateway


def summary(emulator: EmulatorThread) -> dict[str, Any]:
    result: dict[str, Any] = emulator.call(emulator.emulator.summary)
    return result


def set_faults(emulator: EmulatorThread, **faults: float) -> None:
    emulator.call(lambda: emulator.emulator.faults.update(faults))


# -- bulk ----------------------------------------------------------------------------------------


def test_bulk_with_mixed_recipients_answers_each_in_input_order(
    gateway: smsgate.Gateway, emulator: EmulatorThread
) -> None:
    numbers = [
        GOOD,
        "+15005550001",
        GOOD_2,
        "+15005550004",
        "+15005550009",
        "+15005550003",
        "+15555550101",
    ]
    messages = [Message(to=n, body="Flash sale: 30% off for the next 4 hours.") for n in numbers]
    results = gateway.send_many(messages)
    assert [r.to for r in results] == numbers
    assert [r.id for r in results] == [m.id for m in messages]
    assert [r.ok for r in results] == [True, False, True, False, False, False, True]
    errors = {r.to: r.error for r in results if r.error is not None}
    assert isinstance(errors["+15005550001"], InvalidRecipient)
    assert errors["+15005550001"].code == "invalid_number"
    assert isinstance(errors["+15005550004"], OptedOut)
    assert isinstance(errors["+15005550009"], InvalidRecipient)
    assert errors["+15005550009"].code == "not_mobile"
    assert isinstance(errors["+15005550003"], UnsupportedFeature)
    assert all(e.raw and e.raw["to"] == to for to, e in errors.items())
    stored = summary(emulator)["messages"]
    assert [m["to"] for m in stored] == [GOOD, GOOD_2, "+15555550101"]
    # One bulk request carried them all, each recipient with its own key and our id as reference.
    assert len({m["fields"]["batch_id"] for m in stored}) == 1 and stored[0]["fields"]["batch_id"]
    ok = [r for r in results if r.ok]
    assert [m["id"] for m in stored] == [r.provider_message_id for r in ok]
    assert [m["fields"]["reference"] for m in stored] == [r.id for r in ok]
    assert all(r.price == "0.0075" and r.price_unit == "USD" and r.segments == 1 for r in ok)


def test_bulk_resent_after_an_ambiguous_answer_sends_nothing_twice(
    gateway: smsgate.Gateway, emulator: EmulatorThread
) -> None:
    messages = [Message(to=n, body="Your order shipped") for n in (GOOD, GOOD_2)]
    set_faults(emulator, reset_rate=1)
    first = gateway.send_many(messages)
    assert all(isinstance(r.error, AmbiguousSend) and r.status is Status.UNKNOWN for r in first)
    set_faults(emulator, reset_rate=0)
    again = gateway.send_many(messages)
    assert all(r.ok for r in again)
    state = summary(emulator)
    assert state["count"] == 2 and state["duplicates"] == 2
    assert [m["id"] for m in state["messages"]] == [r.provider_message_id for r in again]


def test_bulk_request_level_refusal_fails_every_recipient(emulator: EmulatorThread) -> None:
    emulator.call(lambda: setattr(emulator.emulator, "balance", 1))
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        results = gateway.send_many([Message(to=n, body="hi") for n in (GOOD, GOOD_2)])
    assert all(isinstance(r.error, InsufficientFunds) and r.error.failover for r in results)
    assert summary(emulator)["count"] == 0


# -- idempotency ---------------------------------------------------------------------------------


def test_same_idempotency_key_twice_is_one_message_and_one_duplicate(
    gateway: smsgate.Gateway, emulator: EmulatorThread
) -> None:
    first = gateway.send(GOOD, "Your order #42 shipped", idempotency_key="order-42")
    second = gateway.send(GOOD, "Your order #42 shipped", idempotency_key="order-42")
    assert first.provider_message_id == second.provider_message_id
    state = summary(emulator)
    assert (state["count"], state["duplicates"], state["replays"]) == (1, 1, 1)
    [message] = state["messages"]
    assert message["fields"]["idempotency_key"] == "order-42"
    assert message["fields"]["attempts"] == 2
    with pytest.raises(InvalidMessage) as info:
        gateway.send(GOOD, "A different text", idempotency_key="order-42")
    assert info.value.code == "idempotency_key_reused" and info.value.field == "idempotency_key"
    assert summary(emulator)["count"] == 1


def test_ambiguous_send_is_safe_to_resend(
    gateway: smsgate.Gateway, emulator: EmulatorThread
) -> None:
    message = Message(to=GOOD, body="Your code is 481902")  # no key: our message id is the key
    set_faults(emulator, reset_rate=1)
    with pytest.raises(AmbiguousSend):
        gateway.send(message)
    set_faults(emulator, reset_rate=0)
    result = gateway.send(message)
    state = summary(emulator)
    assert state["count"] == 1 and state["duplicates"] == 1
    assert state["messages"][0]["id"] == result.provider_message_id
    assert state["messages"][0]["fields"]["idempotency_key"] == message.id
    provider = gateway.providers["smsroute"]
    assert provider.capabilities.dedupes


def test_messages_without_a_key_are_never_deduplicated(emulator: EmulatorThread) -> None:
    body = {"to": GOOD, "from": "MyApp", "message": "same text"}
    for _ in range(2):
        answer = requests.post(f"{emulator.url}/v1/send", json=body, headers=AUTH, timeout=10)
        assert answer.status_code == 200 and "Idempotent-Replayed" not in answer.headers
    assert (summary(emulator)["count"], summary(emulator)["duplicates"]) == (2, 0)


# -- HLR -----------------------------------------------------------------------------------------


def test_hlr_lookups_through_the_gateway(gateway: smsgate.Gateway) -> None:
    live = gateway.lookup_hlr("+1 555 555 0100")
    assert live["number"] == GOOD
    assert (live["live"], live["reachable"], live["ported"]) == (True, True, False)
    assert (live["network"], live["mcc"], live["mnc"]) == ("Emulated Mobile", "001", "01")
    assert live["country"] == "US" and live["provider"] == "smsroute"
    assert live["raw"]["status"] == "live"
    absent = gateway.lookup_hlr("+15005550002")
    assert (absent["live"], absent["reachable"], absent["status"]) == (True, False, "absent")
    dead = gateway.lookup_hlr("+15005550001")
    assert (dead["live"], dead["reachable"], dead["network"]) == (False, False, None)
    landline = gateway.lookup_hlr("+15005550009")
    assert landline["type"] == "landline" and not landline["live"]
    ported = gateway.lookup_hlr("+447700900177")
    assert ported["ported"] and ported["original_network"] == "Emulated Original Mobile"
    assert ported["country"] == "GB"
    with pytest.raises(InvalidRecipient):
        gateway.lookup_hlr("555-0100")  # no country code: refused before any request


def test_hlr_errors_map_into_the_taxonomy(emulator: EmulatorThread) -> None:
    wrong = emulator.emulator.provider_url().replace("emulator-api-key", "wrong-key")
    with smsgate.Gateway.from_url(wrong) as gateway, pytest.raises(AuthError) as info:
        gateway.lookup_hlr(GOOD)
    assert info.value.code == "unauthorized" and info.value.raw is not None
    set_faults(emulator, rate_limit_rate=1, retry_after=4)
    url = emulator.emulator.provider_url()
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(RateLimited) as limited:
        gateway.lookup_hlr(GOOD)
    assert limited.value.retry_after == 4


def test_a_gateway_without_hlr_says_so() -> None:
    with (
        smsgate.Gateway.from_url("smspm://h:t@MyApp") as gateway,
        pytest.raises(UnsupportedFeature),
    ):
        gateway.lookup_hlr(GOOD)


# -- errors --------------------------------------------------------------------------------------


def test_errors_keep_code_and_raw_body(gateway: smsgate.Gateway, emulator: EmulatorThread) -> None:
    with pytest.raises(UnsupportedFeature) as region:
        gateway.send("+15005550003", "hi")
    with pytest.raises(InvalidMessage) as sender:
        gateway.send(GOOD, "hi", sender="+15005550007")
    with pytest.raises(RateLimited) as queue_full:
        gateway.send(GOOD, "hi", sender="+15005550008")
    assert region.value.code == "region_not_enabled"
    assert region.value.raw == {
        "error": {
            "code": "region_not_enabled",
            "message": "sending to +15005550003's country is not enabled on this account",
            "field": "to",
        }
    }
    assert sender.value.code == "sender_not_allowed" and sender.value.field == "sender"
    assert queue_full.value.retry_after == 1
    emulator.call(lambda: setattr(emulator.emulator, "balance", 2))
    assert gateway.send(GOOD, "x" * 200).segments == 2
    with pytest.raises(InsufficientFunds):
        gateway.send(GOOD, "one more")
    bad_sender = emulator.emulator.provider_url().replace("@MyApp?", "@+15005550001?")
    with smsgate.Gateway.from_url(bad_sender) as other, pytest.raises(ProviderUnavailable):
        other.send(GOOD, "hi")


AUTH = {"Authorization": "Bearer emulator-api-key"}


def test_emulator_validates_like_smsroute(emulator: EmulatorThread) -> None:
    url = f"{emulator.url}/v1/send"

    def post(body: Any, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
        answer = requests.post(url, json=body, headers=headers, timeout=10)
        return answer.status_code, answer.json()

    status, body = post({"to": "555-555-0100", "from": "MyApp", "message": "hi"})
    assert status == 400 and body["error"]["code"] == "invalid_number"
    assert body["error"]["field"] == "to" and "E.164" in body["error"]["message"]
    status, body = post({"to": GOOD, "from": "MyApp"})
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "missing_field",
        "message",
    )
    status, body = post(
        {"to": GOOD, "from": "MyApp", "message": "hi"}, {"Authorization": "Bearer x"}
    )
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    for alias in ("text", "body"):
        status, body = post({"to": GOOD, "from": "MyApp", alias: f"via {alias}"})
        assert status == 200 and body["message_id"].startswith("msg_")
    assert [m["body"] for m in summary(emulator)["messages"]] == ["via text", "via body"]


# -- webhooks ------------------------------------------------------------------------------------


def signed(secret: str, t: float, payload: dict[str, Any]) -> WebhookRequest:
    raw = json.dumps(payload).encode()
    headers = {SIGNATURE_HEADER: smsroute_signature_header(secret, int(t), raw)}
    return WebhookRequest("https://example.com/smsroute/status", "POST", headers, raw)


RECEIPT = {
    "message_id": "msg_1",
    "status": "delivered",
    "delivered_at": "2026-06-08T14:23:01Z",
    "error_code": None,
}


def test_timestamp_tolerance_on_a_fake_clock() -> None:
    clock = FakeClock(1_780_000_000)
    provider = create_provider("smsroute://k@MyApp?webhook_secret=s3cret", clock=clock)
    request = signed("s3cret", clock.time(), RECEIPT)
    provider.verify_webhook(request)
    clock.advance(300)
    provider.verify_webhook(request)  # exactly at the tolerance: still accepted
    clock.advance(1)
    with pytest.raises(WebhookVerificationError, match="301 s old"):
        provider.verify_webhook(request)
    future = signed("s3cret", clock.time() + 301, RECEIPT)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        provider.verify_webhook(future)
    tight = create_provider(
        "smsroute://k@MyApp?webhook_secret=s3cret&webhook_tolerance=10", clock=clock
    )
    with pytest.raises(WebhookVerificationError):
        tight.verify_webhook(signed("s3cret", clock.time() - 11, RECEIPT))


def test_signature_header_forms() -> None:
    clock = FakeClock(1_780_000_000)
    provider = create_provider("smsroute://k@MyApp?webhook_secret=new", clock=clock)
    raw = json.dumps(RECEIPT).encode()
    t = int(clock.time())
    old_sig = smsroute_signature("old", t, raw)
    new_sig = smsroute_signature("new", t, raw)
    rotating = {SIGNATURE_HEADER: f"t={t},v1={old_sig},v1={new_sig}"}
    provider.verify_webhook(WebhookRequest("https://x/", "POST", rotating, raw))
    for header in (
        {},
        {SIGNATURE_HEADER: f"v1={new_sig}"},
        {SIGNATURE_HEADER: f"t={t}"},
        {SIGNATURE_HEADER: f"t={t},v1={old_sig}"},
    ):
        with pytest.raises(WebhookVerificationError):
            provider.verify_webhook(WebhookRequest("https://x/", "POST", header, raw))
    unkeyed = create_provider("smsroute://k@MyApp", clock=clock)
    with pytest.raises(WebhookVerificationError, match="webhook_secret"):
        unkeyed.verify_webhook(WebhookRequest("https://x/", "POST", rotating, raw))
    # The documented algorithm, written out independently of the module under test.
    expected = hmac.new(b"new", f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    assert new_sig == expected


def test_receipts_parse_to_normalized_events() -> None:
    clock = FakeClock(1_780_000_000)
    provider = create_provider("smsroute://k@MyApp?webhook_secret=s", clock=clock)
    [delivered] = provider.handle_status_webhook(
        signed("s", clock.time(), {**RECEIPT, "error_code": 0})
    )
    assert delivered.status is Status.DELIVERED and delivered.error_code is None
    assert (
        delivered.occurred_at is not None
        and delivered.occurred_at.isoformat() == "2026-06-08T14:23:01+00:00"
    )
    assert delivered.event_id == "msg_1:delivered"
    failed = {
        "message_id": "msg_2",
        "status": "failed",
        "delivered_at": None,
        "error_code": 1,
        "reference": "msg_OURS",
    }
    [event] = provider.handle_status_webhook(signed("s", clock.time(), failed))
    assert (event.status, event.error_code, event.message_id) == (Status.FAILED, "1", "msg_OURS")
    assert event.reason is not None and "unknown subscriber" in event.reason
    odd = {"message_id": "msg_3", "status": "undelivered", "error_code": 99}
    [event] = provider.handle_status_webhook(signed("s", clock.time(), odd))
    assert event.reason == "undelivered, carrier error 99"
    with pytest.raises(WebhookVerificationError):
        provider.handle_status_webhook(signed("s", clock.time(), {"hello": "world"}))


def test_receipt_from_the_emulator_maps_back_to_our_message(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    emulator.call(lambda: setattr(emulator.emulator.callbacks, "outcomes", {"failed": 1.0}))
    url = with_options(emulator.emulator.provider_url(), callback=f"{webhook_receiver.url}/dlr")
    with smsgate.Gateway.from_url(url) as gateway:
        result = gateway.send(GOOD, "track me")
    [request] = webhook_receiver.wait(1, path="/dlr")
    [event] = create_provider(url).handle_status_webhook(request)
    assert event.message_id == result.id and event.provider_message_id == result.provider_message_id
    assert (event.status, event.error_code, event.to) == (Status.FAILED, "1", GOOD)
    assert set(request.json()) >= {"message_id", "status", "delivered_at", "error_code"}


def test_emulator_option_webhook_url_receives_receipts(webhook_receiver: WebhookReceiver) -> None:
    with running(webhook_url=f"{webhook_receiver.url}/all") as emulator:
        with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
            result = gateway.send(GOOD, "no callback option")
        [request] = webhook_receiver.wait(1, path="/all")
        [event] = create_provider(emulator.emulator.provider_url()).handle_status_webhook(request)
    assert event.provider_message_id == result.provider_message_id
    assert event.status is Status.DELIVERED and event.occurred_at is not None


def test_inbound_webhook_shape(emulator: EmulatorThread, webhook_receiver: WebhookReceiver) -> None:
    answer = requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={
            "from": "+15555550199",
            "to": "MyApp",
            "body": "Hi there",
            "url": f"{webhook_receiver.url}/in",
        },
        timeout=10,
    )
    assert answer.status_code == 200
    [request] = webhook_receiver.wait(1, path="/in")
    assert request.json()["event"] == "message.received"
    [inbound] = create_provider(emulator.emulator.provider_url()).handle_inbound_webhook(request)
    assert (inbound.sender, inbound.to, inbound.body) == ("+15555550199", "MyApp", "Hi there")
    assert inbound.received_at is not None and inbound.provider_message_id.startswith("in_")


def test_a_non_ascii_idempotency_key_still_dedupes(
    gateway: smsgate.Gateway, emulator: EmulatorThread
) -> None:
    first = gateway.send(GOOD, "Commande expédiée", idempotency_key="commande-é-42")
    second = gateway.send(GOOD, "Commande expédiée", idempotency_key="commande-é-42")
    assert first.provider_message_id == second.provider_message_id
    [message] = summary(emulator)["messages"]
    assert message["fields"]["idempotency_key"].startswith("sha256-")
