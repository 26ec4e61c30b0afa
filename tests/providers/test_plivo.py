from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from plivo.utils.signature_v3 import (
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.plivo import PlivoEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    ProviderUnavailable,
    RateLimited,
    TransientError,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.plivo import PlivoProvider, plivo_v3_signature
from smsgate.providers.transport import HttpResponse
from tests.providers.contract import (
    GOOD,
    GOOD_2,
    MAGIC_OPTED_OUT,
    MEDIA,
    ProviderContract,
    with_options,
)
from tests.providers.reconcile_contract import ReconcileContract
from tests.support.webhooks import WebhookReceiver

TOKEN = "MzE0NjA1YjFmNDkxNGEzZjliY2M5NDcyNWQwZmFi"


class TestPlivoContract(ProviderContract):
    emulator_cls = PlivoEmulator
    wrong_credentials = "MAWRONG0000000000000:not-the-token"
    opt_out_in_receipt = True


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = PlivoEmulator().run_in_thread()
    yield running
    running.stop()


def _summary(emulator: EmulatorThread) -> Any:
    return emulator.call(emulator.emulator.summary)


def _callback_url(emulator: EmulatorThread, receiver: WebhookReceiver) -> str:
    return with_options(emulator.emulator.provider_url(), callback=f"{receiver.url}/status")


# -- V3 signatures, cross-checked with the official SDK -----------------------------------------

FORM = [
    ("MessageUUID", "db3ce55a-7f1d-11e1-8ea7-1231380bc196"),
    ("To", "15555550100"),
    ("From", "15005550006"),
    ("Status", "delivered"),
    ("ErrorCode", ""),
    ("Units", "1"),
    ("TotalRate", "0.005"),
]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/plivo/status",
        "https://example.com/plivo/status?smsgate_id=msg_01&b=2&a=1",
        "https://example.com:8443/plivo/status?a=2&a=1",
    ],
)
def test_v3_post_signature_matches_the_official_sdk(url: str) -> None:
    nonce = "12345678901234567890"
    ours = plivo_v3_signature(TOKEN, url, nonce, FORM)
    assert validate_v3_signature("POST", url, nonce, TOKEN, ours, dict(FORM))
    assert not validate_v3_signature(
        "POST", url, nonce, TOKEN, ours, {**dict(FORM), "Status": "failed"}
    )
    assert not validate_v3_signature("POST", url, "9" + nonce[1:], TOKEN, ours, dict(FORM))


def test_v3_get_and_empty_post_signatures_match_the_official_sdk() -> None:
    nonce = "09876543210987654321"
    url = "https://example.com/plivo/status?" + urlencode(FORM)
    ours = plivo_v3_signature(TOKEN, url, nonce, method="GET")
    assert validate_v3_signature("GET", url, nonce, TOKEN, ours, {})
    bare = "https://example.com/plivo/status?x=1"
    assert validate_v3_signature(
        "POST", bare, nonce, TOKEN, plivo_v3_signature(TOKEN, bare, nonce), {}
    )


def test_emulator_callbacks_pass_the_official_sdks_check(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        gateway.send(GOOD, "track me")
    [request, *_] = webhook_receiver.wait(2, path="/status")
    assert validate_v3_signature(
        "POST",
        request.url,
        request.header("X-Plivo-Signature-V3-Nonce"),
        emulator.emulator.auth_token,
        request.header("X-Plivo-Signature-V3"),
        dict(request.form()),
    )


def test_any_of_several_comma_separated_signatures_is_accepted(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        gateway.send(GOOD, "track me")
    [request, *_] = webhook_receiver.wait(1, path="/status")
    provider = create_provider(emulator.emulator.provider_url())
    real = request.header("X-Plivo-Signature-V3")
    fake = plivo_v3_signature("another-token", request.url, "1", request.form())

    def with_header(value: str) -> WebhookRequest:
        headers = {**request.headers, "X-Plivo-Signature-V3": value}
        return WebhookRequest(request.url, request.method, headers, request.body)

    provider.verify_webhook(with_header(f"{fake}, {real}"))
    provider.verify_webhook(with_header(f"{real},{fake}"))
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(with_header(f"{fake},{fake[::-1]}"))
    missing = WebhookRequest(
        request.url, request.method, {"X-Plivo-Signature-V3": real}, request.body
    )
    with pytest.raises(WebhookVerificationError, match="Nonce"):
        provider.verify_webhook(missing)


def test_public_url_behind_a_proxy() -> None:
    form = [("MessageUUID", "u1"), ("Status", "sent"), ("To", "15555550100")]
    public = "https://sms.example.com/hooks/plivo?x=1"
    headers = {
        "X-Plivo-Signature-V3": plivo_v3_signature(TOKEN, public, "42", form),
        "X-Plivo-Signature-V3-Nonce": "42",
    }
    internal = WebhookRequest(
        "http://10.0.0.5:8080/hooks/plivo?x=1", "POST", headers, urlencode(form).encode()
    )
    with pytest.raises(WebhookVerificationError):
        create_provider(f"plivo://MA1:{TOKEN}@+15005550006").verify_webhook(internal)
    provider = create_provider(
        f"plivo://MA1:{TOKEN}@+15005550006?public_url=https://sms.example.com"
    )
    [event] = provider.handle_status_webhook(internal)
    assert event.status is Status.SENT


# -- bulk through "<"-joined destinations ----------------------------------------------------------


def test_mixed_validity_bulk_is_one_request_with_per_recipient_results(
    emulator: EmulatorThread,
) -> None:
    numbers = [GOOD, "+15005550001", GOOD_2, "+15005550009", "+15005550004", "+15555550101"]
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        results = gateway.send_many([Message(to=n, body="Your order shipped") for n in numbers])
    summary = _summary(emulator)
    assert summary["send_requests"] == 1
    [request_fields] = {
        json.dumps(m["fields"]["request"], sort_keys=True) for m in summary["messages"]
    }
    assert json.loads(request_fields)["text"] == "Your order shipped"
    assert [r.to for r in results] == numbers
    # the opted-out number is accepted: Plivo fails it later, in its status callback
    assert [r.ok for r in results] == [True, False, True, False, True, True]
    for i in (1, 3):
        assert isinstance(results[i].error, InvalidRecipient)
        assert results[i].error.code == "invalid_number"
        assert results[i].status is Status.REJECTED
    # each accepted recipient got the uuid the emulator gave its own destination
    stored = {m["to"]: m["id"] for m in summary["messages"]}
    for result in (results[0], results[2], results[4], results[5]):
        assert result.provider_message_id == stored[result.to.lstrip("+")]
    assert len({r.provider_message_id for r in results if r.ok}) == 4


def test_opted_out_recipient_is_accepted_then_failed_in_its_callback(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    numbers = [GOOD, MAGIC_OPTED_OUT]
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        results = gateway.send_many([Message(to=n, body="Your order shipped") for n in numbers])
    assert all(r.ok and r.provider_message_id for r in results)
    # Plivo's answer has no field for opt-outs: only what its API documents
    assert set(results[1].raw) <= {"api_id", "message", "message_uuid", "invalid_number"}
    requests_ = webhook_receiver.wait(3, path="/status")  # sent + delivered, then one failed
    provider = create_provider(emulator.emulator.provider_url())
    events = [e for r in requests_ for e in provider.handle_status_webhook(r)]
    by_id = {r.provider_message_id: r.to for r in results}
    [blocked] = [e for e in events if by_id[e.provider_message_id] == MAGIC_OPTED_OUT]
    assert blocked.status is Status.FAILED and blocked.error_code == "200" and blocked.opted_out
    assert blocked.reason == "recipient opted out (STOP)"
    good = [e for e in events if by_id[e.provider_message_id] == GOOD]
    assert [e.status for e in good] == [Status.SENT, Status.DELIVERED]
    assert not any(e.opted_out for e in good)


def test_start_lifts_a_stop(emulator: EmulatorThread, webhook_receiver: WebhookReceiver) -> None:
    provider = create_provider(emulator.emulator.provider_url())
    statuses = []
    for word, callbacks in (("STOP", 1), ("start", 3)):  # failed; then sent and delivered
        requests.post(
            f"{emulator.url}/_emulator/inbound",
            timeout=10,
            # our number written another way is still our number
            json={
                "from": GOOD,
                "to": "+1 (500) 555-0006",
                "body": word,
                "url": f"{webhook_receiver.url}/in",
            },
        )
        with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
            assert gateway.send(GOOD, f"after {word}").ok
        received = webhook_receiver.wait(callbacks, path="/status")
        statuses = [e.status for r in received for e in provider.handle_status_webhook(r)]
    assert statuses == [Status.FAILED, Status.SENT, Status.DELIVERED]


def test_a_recipient_twice_in_one_bulk_is_sent_twice(emulator: EmulatorThread) -> None:
    messages = [Message(to=n, body="same text") for n in (GOOD, GOOD_2, GOOD)]
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        results = gateway.send_many(messages)
    summary = _summary(emulator)
    assert summary["send_requests"] == 2  # Plivo would drop the repeat from one dst list
    assert [r.ok for r in results] == [True, True, True]
    assert len({r.provider_message_id for r in results}) == 3
    assert sorted(m["to"] for m in summary["messages"]) == sorted(
        ["15555550100", "15555550100", "447700900123"]
    )


def test_bulk_callbacks_come_one_per_destination(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    numbers = [GOOD, GOOD_2, "+15555550101"]
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        results = gateway.send_many([Message(to=n, body="hi all") for n in numbers])
    requests_ = webhook_receiver.wait(6, path="/status")  # sent + delivered for each
    provider = create_provider(emulator.emulator.provider_url())
    events = [e for r in requests_ for e in provider.handle_status_webhook(r)]
    delivered = {e.provider_message_id: e.to for e in events if e.status is Status.DELIVERED}
    assert delivered == {r.provider_message_id: r.to for r in results}


def test_bulk_limit_and_grouping() -> None:
    provider = PlivoProvider(auth_id="MA1", auth_token=TOKEN, sender="+15005550006")
    messages = [Message(to=GOOD, body="a"), Message(to=GOOD_2, body="a")]
    request = provider.build_bulk_request(messages)
    assert request.json["dst"] == "15555550100<447700900123"
    assert request.path == "/v1/Account/MA1/Message/"
    assert provider.bulk_batch_size == 1000


# -- sending, MMS, status, errors ------------------------------------------------------------------


def test_request_fields_and_mms(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        sms = gateway.send(GOOD, "plain")
        mms = gateway.send(GOOD, "look", media=(MEDIA,))
    first, second = (m["fields"]["request"] for m in _summary(emulator)["messages"])
    assert first["type"] == "sms" and first["src"] == "15005550006" and "media_urls" not in first
    assert second["type"] == "mms" and second["media_urls"] == [MEDIA]
    assert sms.provider_message_id != mms.provider_message_id


def test_powerpack_sender() -> None:
    pack = "2dca8f70-1387-4cbd-b97f-796717a5784b"
    provider = create_provider(f"plivo://MA1:{TOKEN}@{pack}")
    payload = provider.build_send_request(Message(to=GOOD, body="x")).json
    assert payload["powerpack_uuid"] == pack and "src" not in payload


def test_status_fetch_follows_callbacks(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        result = gateway.send(GOOD, "track me")
        assert result.provider_message_id
        webhook_receiver.wait(2, path="/status")
        fetched = gateway.fetch_status(result.provider_message_id)
        assert fetched.status is Status.DELIVERED and fetched.to == GOOD and fetched.segments == 1
        with pytest.raises(InvalidMessage) as info:
            gateway.fetch_status("00000000-0000-0000-0000-000000000000")
    assert info.value.code == "404"


def test_callback_error_codes(emulator: EmulatorThread, webhook_receiver: WebhookReceiver) -> None:
    requests.post(
        f"{emulator.url}/_emulator/inbound",
        timeout=10,
        json={
            "from": GOOD,
            "to": "+15005550006",
            "body": "stop",
            "url": f"{webhook_receiver.url}/in",
        },
    )
    with smsgate.Gateway.from_url(_callback_url(emulator, webhook_receiver)) as gateway:
        result = gateway.send(GOOD, "are you still there?")
    assert result.ok  # Plivo accepts, then fails the message with ErrorCode 200
    [request] = webhook_receiver.wait(1, path="/status")
    provider = create_provider(emulator.emulator.provider_url())
    [event] = provider.handle_status_webhook(request)
    assert event.opted_out and event.error_code == "200" and event.status is Status.FAILED
    assert event.message_id == result.id  # our id rode along in the callback URL
    # ErrorCode 900, signed by the emulator as Plivo would sign it
    form = {**dict(request.form()), "ErrorCode": "900"}
    headers = {
        **emulator.emulator.sign(request.url, form),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    [credit] = provider.handle_status_webhook(
        WebhookRequest(request.url, "POST", headers, urlencode(form).encode())
    )
    assert credit.reason == "insufficient credit" and not credit.opted_out


def test_get_callbacks_verify(webhook_receiver: WebhookReceiver) -> None:
    running = PlivoEmulator().run_in_thread()
    try:
        provider = create_provider(running.emulator.provider_url())
        payload = {
            "src": "15005550006",
            "dst": "15555550100",
            "text": "hi",
            "url": f"{webhook_receiver.url}/status",
            "method": "GET",
        }
        answer = requests.post(
            f"{running.url}/v1/Account/{running.emulator.auth_id}/Message/",
            json=payload,
            auth=tuple(running.emulator.credentials.split(":")),
            timeout=10,
        )
        assert answer.status_code == 202
        requests_ = webhook_receiver.wait(2, path="/status")
        assert all(r.method == "GET" for r in requests_)
        events = [e for r in requests_ for e in provider.handle_status_webhook(r)]
        assert [e.status for e in events] == [Status.SENT, Status.DELIVERED]
        tampered = requests_[0].url.replace("Status=sent", "Status=delivered")
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(WebhookRequest(tampered, "GET", requests_[0].headers))
    finally:
        running.stop()


def test_magic_senders_and_credentials(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
        with pytest.raises(InvalidMessage) as bad_sender:
            gateway.send(GOOD, "x", sender="+15005550001")
        with pytest.raises(RateLimited):
            gateway.send(GOOD, "x", sender="+15005550008")
    assert bad_sender.value.field == "sender" and bad_sender.value.code == "400"
    url = emulator.emulator.provider_url().replace("@+15005550006", "@+15005550007")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(ProviderUnavailable):
        gateway.send(GOOD, "x")


def _response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(status, headers or {}, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "text", "error", "headers"),
    [
        (401, "authentication failed", AuthError, None),
        (404, "not found", AuthError, None),
        (429, "too many requests", RateLimited, {"Retry-After": "3"}),
        (500, "server error", AmbiguousSend, None),
        (503, "service unavailable", TransientError, None),
        (400, "insufficient credit to send", InsufficientFunds, None),
        (400, "dst parameter is invalid", InvalidRecipient, None),
        (400, "text parameter is required", InvalidMessage, None),
    ],
)
def test_error_bodies_map_into_the_taxonomy(
    status: int, text: str, error: type[Exception], headers: dict[str, str] | None
) -> None:
    provider = PlivoProvider(auth_id="MA1", auth_token=TOKEN, sender="+15005550006")
    response = _response(status, {"api_id": "x", "error": text}, headers)
    mapped = provider.map_error_response(response, Message(to=GOOD, body="x"))
    assert isinstance(mapped, error) and mapped.code == str(status)
    if isinstance(mapped, RateLimited):
        assert mapped.retry_after == 3


def test_inbound_with_media(emulator: EmulatorThread, webhook_receiver: WebhookReceiver) -> None:
    requests.post(
        f"{emulator.url}/_emulator/inbound",
        timeout=10,
        json={
            "from": "+15555550199",
            "to": "+15005550006",
            "body": "pic",
            "media": [MEDIA],
            "url": f"{webhook_receiver.url}/in",
        },
    )
    [request] = webhook_receiver.wait(1, path="/in")
    [inbound] = create_provider(emulator.emulator.provider_url()).handle_inbound_webhook(request)
    assert inbound.media == (MEDIA,) and inbound.sender == "+15555550199"
    assert dict(parse_qsl(request.body.decode()))["Type"] == "mms"


def test_a_receipt_replayed_with_its_parameters_reordered_is_the_same_event(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    # The V3 signature covers the parameters sorted, so a reordered replay still verifies: the
    # event id must come from the signed content, not the bytes as they arrived.
    url = with_options(emulator.emulator.provider_url(), callback=f"{webhook_receiver.url}/status")
    with smsgate.Gateway.from_url(url) as gateway:
        gateway.send(GOOD, "track me")
    [request, *_] = webhook_receiver.wait(1, path="/status")
    provider = create_provider(emulator.emulator.provider_url())
    [event] = provider.handle_status_webhook(request)
    pairs = parse_qsl(request.body.decode(), keep_blank_values=True)
    reordered = urlencode(list(reversed(pairs))).encode()
    replay = WebhookRequest(request.url, request.method, request.headers, reordered)
    assert reordered != request.body
    [again] = provider.handle_status_webhook(replay)
    assert again.event_id == event.event_id


def test_inbound_mms_as_the_api_reference_sends_it_and_as_the_older_article_shows_it() -> None:
    provider = PlivoProvider(auth_id="MA1", auth_token=TOKEN, sender="+15005550006")
    url = "https://hooks.example.com/plivo/inbound"

    def inbound(fields: dict[str, str]) -> Any:
        body = urlencode(fields).encode()
        nonce = "12345678901234567890"
        signature = plivo_v3_signature(TOKEN, url, nonce, fields.items())
        headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
        [message] = provider.handle_inbound_webhook(WebhookRequest(url, "POST", headers, body))
        return message

    common = {"From": "15555550199", "To": "15005550006", "MessageUUID": "u1", "Type": "mms"}
    reference = inbound(
        {
            **common,
            "Body": "look",
            "MediaCount": "2",
            "Media1": "https://m/1",
            "Media2": "https://m/2",
        }
    )
    assert (reference.body, reference.media) == ("look", ("https://m/1", "https://m/2"))
    older = inbound({**common, "Text": "look", "MediaCount": "1", "Media0": "https://m/0"})
    assert (older.body, older.media) == ("look", ("https://m/0",))


@pytest.mark.parametrize("text", ["Café à Noël", "Ça marche 😜", "plain ascii"])
def test_non_ascii_texts_verify_signed_once_like_plivo_node_or_twice_like_plivo_python(
    text: str,
) -> None:
    provider = PlivoProvider(auth_id="MA1", auth_token=TOKEN, sender="+15005550006")
    url = "https://hooks.example.com/plivo/inbound"
    fields = {"From": "15555550199", "To": "15005550006", "MessageUUID": "u2", "Text": text}
    body = urlencode(fields).encode()
    nonce = "98765432109876543210"

    def python_sdk(params: dict[str, Any]) -> str:
        # plivo-python's own signing code: given the values as text it encodes them once (as
        # plivo-node does); given them as the bytes a server read, it reads those as Latin-1 and
        # encodes them again.
        data = construct_post_url(url, dict(params)).decode("utf-8")
        return get_signature_v3(TOKEN.encode(), data, nonce.encode()).decode()

    once = python_sdk(fields)
    twice = python_sdk({k: v.encode("utf-8") for k, v in fields.items()})
    assert (once == twice) == text.isascii()
    for signature in (once, twice):
        headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
        [message] = provider.handle_inbound_webhook(WebhookRequest(url, "POST", headers, body))
        assert message.body == text
    # A different text under either signature is still refused.
    forged = urlencode({**fields, "Text": text + "!"}).encode()
    for signature in (once, twice):
        headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
        with pytest.raises(WebhookVerificationError):
            provider.handle_inbound_webhook(WebhookRequest(url, "POST", headers, forged))


class TestPlivoReconcile(ReconcileContract):
    emulator_cls = PlivoEmulator
    identifies = False
