from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from vonage_http_client.auth import Auth

import smsgate
from smsgate.clock import FakeClock
from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.emulators.vonage import VonageEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    ProviderUnavailable,
    RateLimited,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import DeliveryEvent, Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.transport import HttpResponse
from smsgate.providers.vonage import VonageProvider, fold_part_events, vonage_signature
from tests.providers.contract import GOOD, ProviderContract, with_options
from tests.support.webhooks import WebhookReceiver

LONG = "Your parcel is on its way. " * 14  # 378 GSM-7 characters: three parts


def _resigned(
    request: WebhookRequest, emulator: VonageEmulator, timestamp: float
) -> WebhookRequest:
    """The same webhook signed again by the emulator with another timestamp."""
    params = emulator.sign(_params(request), timestamp=timestamp)
    return _with_params(request, params)


def _params(request: WebhookRequest) -> dict[str, str]:
    return VonageProvider(api_key="k", api_secret="s").webhook_params(request)


def _with_params(request: WebhookRequest, params: dict[str, str]) -> WebhookRequest:
    if request.method.upper() == "GET":
        base = request.url.partition("?")[0]
        return WebhookRequest(f"{base}?{urlencode(params)}", "GET", request.headers)
    if request.body[:1] == b"{":
        return WebhookRequest(
            request.url, request.method, request.headers, json.dumps(params).encode()
        )
    return WebhookRequest(request.url, request.method, request.headers, urlencode(params).encode())


class TestVonageContract(ProviderContract):
    emulator_cls = VonageEmulator
    wrong_credentials = "wrongkey:not-the-secret"
    signs_timestamps = True

    def stale(self, request: WebhookRequest, emulator: Emulator) -> WebhookRequest:
        assert isinstance(emulator, VonageEmulator)
        return _resigned(request, emulator, time.time() - 301)

    def secrets(self, emulator: Emulator) -> list[str]:
        assert isinstance(emulator, VonageEmulator)
        return [emulator.api_secret, emulator.signature_secret]


# -- helpers ----------------------------------------------------------------------------------


def _start(**options: str) -> EmulatorThread:
    return VonageEmulator(**options).run_in_thread()


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with _start() as running:
        yield running


def _send(
    emulator: EmulatorThread,
    receiver: WebhookReceiver,
    body: str = "track me",
    count: int = 1,
    to: str = GOOD,
) -> tuple[smsgate.SendResult, list[WebhookRequest]]:
    url = with_options(emulator.emulator.provider_url(), callback=f"{receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        result = gateway.send(to, body)
    return result, receiver.wait(count, path="/status")


def _stored(emulator: EmulatorThread) -> Any:
    return emulator.call(emulator.emulator.summary)["messages"]


# -- the signature, checked against independent computations -------------------------------------

PARAMS = {
    "msisdn": "447700900000",
    "to": "AcmeInc",
    "messageId": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "status": "delivered",
    "err-code": "0",
    "client-ref": "a&b=c",  # '&' and '=' are replaced with '_' before signing
    "message-timestamp": "2020-01-01 12:00:00",
    "timestamp": "1577880000",
    "nonce": "5b3c7d1e-7f4c-4d8a-9c1f-0e5b1f2a3c4d",
}


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_hmac_signature_matches_the_official_sdk(method: str) -> None:
    sdk = Auth(api_key="abcd1234", signature_secret="s3cr3t", signature_method=method)
    assert vonage_signature(PARAMS, "s3cr3t", method) == sdk.sign_params(dict(PARAMS))
    # and the SDK accepts what we produce, with sig among the parameters
    assert sdk.check_signature({**PARAMS, "sig": vonage_signature(PARAMS, "s3cr3t", method)})


def test_md5_hash_signature_matches_the_documented_algorithm() -> None:
    # Written out from Vonage's description, independently of smsgate's implementation.
    text = ""
    for key in sorted(PARAMS):
        text += "&" + key + "=" + PARAMS[key].replace("&", "_").replace("=", "_")
    expected = hashlib.md5((text + "s3cr3t").encode()).hexdigest()
    assert vonage_signature(PARAMS, "s3cr3t", "md5hash") == expected
    assert vonage_signature({**PARAMS, "sig": "ignored"}, "s3cr3t", "md5hash") == expected
    hmac_sha256 = hmac.new(b"s3cr3t", text.encode(), hashlib.sha256).hexdigest()
    assert vonage_signature(PARAMS, "s3cr3t", "sha256") == hmac_sha256


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_every_signature_mode_verifies_end_to_end(
    method: str, webhook_receiver: WebhookReceiver
) -> None:
    with _start(signature_method=method) as running:
        _, [request] = _send(running, webhook_receiver)
        provider = create_provider(running.emulator.provider_url())
        assert f"signature_method={method}" in running.emulator.provider_url()
        [event] = provider.handle_status_webhook(request)
        assert event.status is Status.DELIVERED
        # the same secret with another method does not verify
        other = "sha512" if method != "sha512" else "md5hash"
        wrong = running.emulator.provider_url().replace(
            f"signature_method={method}", f"signature_method={other}"
        )
        with pytest.raises(WebhookVerificationError):
            create_provider(wrong).handle_status_webhook(request)


# -- receipts by GET, form POST and JSON POST ---------------------------------------------------


@pytest.mark.parametrize("webhook_method", ["GET", "POST", "JSON"])
def test_receipts_verify_and_parse_in_every_http_form(
    webhook_method: str, webhook_receiver: WebhookReceiver
) -> None:
    with _start(webhook_method=webhook_method) as running:
        result, [request] = _send(running, webhook_receiver)
        if webhook_method == "GET":
            assert request.method == "GET" and request.body == b"" and "sig=" in request.url
        elif webhook_method == "JSON":
            assert (request.header("Content-Type") or "").startswith("application/json")
            assert json.loads(request.body)["status"] == "delivered"
        else:
            assert dict(parse_qsl(request.body.decode()))["status"] == "delivered"
        provider = create_provider(running.emulator.provider_url())
        [event] = provider.handle_status_webhook(request)
        assert event.status is Status.DELIVERED
        assert event.provider_message_id == result.provider_message_id
        assert event.message_id == result.id  # client-ref carries our id back
        assert event.to == GOOD and event.error_code is None
        assert event.occurred_at is not None
        # a changed parameter breaks the signature in every form
        tampered = _with_params(request, {**_params(request), "status": "failed"})
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(tampered)


def test_timestamp_tolerance_follows_the_injected_clock(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    _, [request] = _send(emulator, webhook_receiver)
    sent = int(_params(request)["timestamp"])
    clock = FakeClock(start=sent + 299)
    provider = create_provider(emulator.emulator.provider_url(), clock=clock)
    provider.verify_webhook(request)
    clock.advance(2)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        provider.verify_webhook(request)
    early = create_provider(emulator.emulator.provider_url(), clock=FakeClock(start=sent - 301))
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        early.verify_webhook(request)


def test_unsigned_webhooks_are_refused_unless_allowed(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    _, [request] = _send(emulator, webhook_receiver)
    params = _params(request)
    for name in ("sig", "timestamp", "nonce"):
        params.pop(name)
    unsigned = _with_params(request, params)
    url = f"vonage://{emulator.emulator.credentials}@MyApp?base_url={emulator.url}"
    with pytest.raises(WebhookVerificationError, match="signature_secret"):
        create_provider(url).handle_status_webhook(unsigned)
    [event] = create_provider(url + "&allow_unsigned=true").handle_status_webhook(unsigned)
    assert event.status is Status.DELIVERED
    with pytest.raises(WebhookVerificationError, match="no sig"):
        create_provider(emulator.emulator.provider_url()).handle_status_webhook(unsigned)


# -- multi-part messages --------------------------------------------------------------------------


def test_one_receipt_per_part_folds_into_one_status(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    result, requests = _send(emulator, webhook_receiver, LONG, count=3)
    assert result.segments == 3
    assert len(result.raw["messages"]) == 3
    [stored] = _stored(emulator)
    assert stored["segments"] == 3
    provider = create_provider(emulator.emulator.provider_url())
    events = [e for r in requests for e in provider.handle_status_webhook(r)]
    assert len({e.provider_message_id for e in events}) == 3
    assert {e.provider_message_id for e in events} == {
        m["message-id"] for m in result.raw["messages"]
    }
    assert {e.message_id for e in events} == {result.id}
    assert len({e.event_id for e in events}) == 3
    assert fold_part_events(events, parts=result.segments) is Status.DELIVERED
    # two receipts of three are not a delivered message
    assert fold_part_events(events[:2], parts=3) is Status.SENT


def _event(part: str, status: Status, code: str | None = None) -> DeliveryEvent:
    return DeliveryEvent(
        provider="vonage",
        provider_message_id=part,
        status=status,
        event_id=f"{part}-{status}",
        error_code=code,
    )


def test_folding_rules() -> None:
    d, s, f = Status.DELIVERED, Status.SENT, Status.UNDELIVERED
    assert fold_part_events([]) is Status.SENT
    assert fold_part_events([_event("a", d), _event("b", d)]) is d
    assert fold_part_events([_event("a", d), _event("b", d)], parts=3) is Status.SENT
    # one failed part fails the message, whatever the order of receipts
    assert fold_part_events([_event("a", f, "2"), _event("b", d)], parts=2) is f
    assert fold_part_events([_event("b", d), _event("a", f, "2")], parts=2) is f
    # a late "accepted" never takes a part back from delivered
    assert fold_part_events([_event("a", d), _event("a", s), _event("b", d)], parts=2) is d
    # rejected beats failed beats expired
    assert (
        fold_part_events([_event("a", Status.EXPIRED), _event("b", Status.REJECTED)])
        is Status.REJECTED
    )
    assert fold_part_events([_event("a", Status.EXPIRED), _event("b", f)]) is f
    # the slowest part sets the pace
    assert fold_part_events([_event("a", d), _event("b", Status.UNKNOWN)]) is Status.UNKNOWN


def test_receipt_with_err_code_9_is_an_opt_out(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    import requests

    answer = requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={
            "from": GOOD,
            "to": "+15005550006",
            "body": "STOP",
            "url": f"{webhook_receiver.url}/in",
        },
        timeout=10,
    )
    assert answer.status_code == 200
    result, [request] = _send(emulator, webhook_receiver, "one more offer")
    assert result.ok  # Vonage accepts, then reports the block in the receipt
    [event] = create_provider(emulator.emulator.provider_url()).handle_status_webhook(request)
    assert event.opted_out and event.error_code == "9"
    assert event.status is Status.UNDELIVERED
    assert "opted out" in (event.reason or "")


def test_undelivered_receipt_reason(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    emulator.call(lambda: setattr(emulator.emulator.callbacks, "outcomes", {"failed": 1.0}))
    _, [request] = _send(emulator, webhook_receiver)
    [event] = create_provider(emulator.emulator.provider_url()).handle_status_webhook(request)
    assert event.status is Status.REJECTED and event.error_code == "99"
    assert event.reason == "general error"


# -- the request and the in-band errors ------------------------------------------------------------


def test_request_fields(emulator: EmulatorThread) -> None:
    url = with_options(emulator.emulator.provider_url(), callback="https://example.com/dlr")
    with smsgate.Gateway.from_url(url) as gateway:
        plain = gateway.send(GOOD, "hello", validity=5)
        wide = gateway.send(GOOD, "Привет 😜", validity=3600)
    first, second = (m["fields"] for m in _stored(emulator))
    assert first["type"] == "text" and second["type"] == "unicode"
    assert first["to"] == GOOD.lstrip("+") and first["from"] == "15005550006"
    assert first["client-ref"] == plain.id and second["client-ref"] == wide.id
    assert first["callback"] == "https://example.com/dlr" and first["status-report-req"] == "1"
    assert first["ttl"] == "20000"  # Vonage's minimum
    assert second["ttl"] == "3600000"
    assert wide.encoding == "UCS-2" and plain.price == "0.03330000"


@pytest.mark.parametrize(
    ("to", "sender", "error", "code"),
    [
        ("+15005550002", None, InvalidRecipient, "33"),
        ("+15005550009", None, InvalidRecipient, "6"),
        ("+15005550003", None, UnsupportedFeature, "29"),
        (GOOD, "+15005550001", InvalidMessage, "15"),
        (GOOD, "+15005550008", RateLimited, "1"),
    ],
)
def test_magic_numbers_map_to_vonage_statuses(
    emulator: EmulatorThread, to: str, sender: str | None, error: type[Exception], code: str
) -> None:
    with (
        smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway,
        pytest.raises(error) as info,
    ):
        gateway.send(to, "hello", sender=sender)
    assert info.value.code == code
    assert info.value.raw["messages"][0]["status"] == code
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after == 1.0  # no Retry-After on an in-band throttle


def test_bad_sender_in_the_url_is_the_providers_problem(emulator: EmulatorThread) -> None:
    url = emulator.emulator.provider_url().replace("@+15005550006", "@+15005550007")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(ProviderUnavailable) as info:
        gateway.send(GOOD, "hello")
    assert info.value.failover and info.value.field == "sender"


def test_out_of_credit_and_bad_credentials() -> None:
    with _start(balance="0.05") as running:
        with smsgate.Gateway.from_url(running.emulator.provider_url()) as gateway:
            assert gateway.send(GOOD, "one part").ok
            with pytest.raises(InsufficientFunds) as info:
                gateway.send(GOOD, "the second costs more than is left")
        assert info.value.code == "9"
        other = VonageEmulator(credentials="abcd1234:wrong")
        other.url = running.url
        with (
            smsgate.Gateway.from_url(other.provider_url()) as gateway,
            pytest.raises(AuthError) as auth,
        ):
            gateway.send(GOOD, "hello")
        assert auth.value.code == "4"


def test_partly_accepted_message_is_ambiguous_not_retried() -> None:
    provider = VonageProvider(api_key="k", api_secret="s", sender="MyApp")
    body = {
        "message-count": "2",
        "messages": [
            {"to": "15555550100", "message-id": "A", "status": "0"},
            {"status": "1", "error-text": "Throttled"},
        ],
    }
    response = HttpResponse(200, {}, json.dumps(body).encode())
    assert provider.is_error_response(response)
    error = provider.map_error_response(response, Message(to=GOOD, body="x"))
    assert isinstance(error, AmbiguousSend) and error.code == "1"


def test_emulator_accepts_signed_requests(emulator: EmulatorThread) -> None:
    import requests

    vonage = emulator.emulator
    params = {
        "api_key": vonage.api_key,
        "from": "MyApp",
        "to": "15555550100",
        "text": "signed",
        "timestamp": str(int(time.time())),
    }
    params["sig"] = vonage_signature(params, vonage.signature_secret, vonage.signature_method)
    answer = requests.post(f"{emulator.url}/sms/json", data=params, timeout=10).json()
    assert answer["messages"][0]["status"] == "0"
    params["sig"] = "0" * 64
    assert (
        requests.post(f"{emulator.url}/sms/json", data=params, timeout=10).json()["messages"][0][
            "status"
        ]
        == "14"
    )


def test_inbound_message_parses(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    import requests

    requests.post(
        f"{emulator.url}/_emulator/inbound",
        timeout=10,
        json={
            "from": "+447700900123",
            "to": "+15005550006",
            "body": "Привет",
            "url": f"{webhook_receiver.url}/in",
        },
    )
    [request] = webhook_receiver.wait(1, path="/in")
    [inbound] = create_provider(emulator.emulator.provider_url()).handle_inbound_webhook(request)
    assert inbound.sender == "+447700900123" and inbound.to == "+15005550006"
    assert inbound.body == "Привет" and inbound.raw["type"] == "unicode"


def test_mms_is_refused_and_options_are_checked(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        with pytest.raises(UnsupportedFeature, match="MMS"):
            gateway.send(GOOD, "look", media=("https://example.com/cat.jpg",))
        gateway.send(GOOD, "with an account ref", provider_options={"account-ref": "team-7"})
        with pytest.raises(UnsupportedFeature, match="provider option"):
            gateway.send(GOOD, "x", provider_options={"nonsense": "1"})
    assert _stored(emulator)[0]["fields"]["account-ref"] == "team-7"


def test_config_errors_name_the_option() -> None:
    with pytest.raises(smsgate.ConfigError) as info:
        create_provider("vonage://k:s@MyApp?signature_secret=x&signature_method=sha3")
    assert info.value.field == "signature_method"
    with pytest.raises(smsgate.ConfigError):
        create_provider("vonage://k@MyApp")
    masked = create_provider("vonage://k:s@MyApp?signature_secret=topsecret")
    assert "topsecret" not in repr(masked)


def test_emulator_accepts_the_official_sdks_basic_auth_header(emulator: EmulatorThread) -> None:
    import requests

    vonage = emulator.emulator
    assert isinstance(vonage, VonageEmulator)
    fields = {"from": "MyApp", "to": "15555550100", "text": "hello"}
    header = Auth(api_key=vonage.api_key, api_secret=vonage.api_secret).create_basic_auth_string()
    answer = requests.post(
        f"{emulator.url}/sms/json", data=fields, headers={"Authorization": header}, timeout=10
    ).json()
    assert answer["messages"][0]["status"] == "0" and answer["messages"][0]["message-id"]
    wrong = Auth(api_key=vonage.api_key, api_secret="not-the-secret").create_basic_auth_string()
    refused = requests.post(
        f"{emulator.url}/sms/json", data=fields, headers={"Authorization": wrong}, timeout=10
    ).json()
    assert refused["messages"][0]["status"] == "4"
