from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests

import smsgate
from smsgate.emulators.base import EmulatorThread, Faults
from smsgate.emulators.smspm import SmspmEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    UnsupportedFeature,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.smspm import SmspmProvider
from smsgate.providers.transport import HttpResponse
from tests.providers.contract import ProviderContract, with_options

GOOD = "+15555550100"
GOOD_2 = "+447700900123"
ESTONIA = "+37256789045"


class TestSmspmContract(ProviderContract):
    emulator_cls = SmspmEmulator
    wrong_credentials = "emulator-hash:not-the-token"


def running(**options: Any) -> EmulatorThread:
    return SmspmEmulator(faults=Faults(seed=3), **options).run_in_thread()


@pytest.fixture(params=["seed", "v2"])
def shaped(request: pytest.FixtureRequest) -> Iterator[EmulatorThread]:
    emulator = running(shape=request.param)
    yield emulator
    emulator.stop()


def shape_of(emulator: EmulatorThread) -> str:
    assert isinstance(emulator.emulator, SmspmEmulator)
    return emulator.emulator.shape


def stored(emulator: EmulatorThread) -> list[dict[str, Any]]:
    summary: dict[str, Any] = emulator.call(emulator.emulator.summary)
    return summary["messages"]


# -- both answer shapes ---------------------------------------------------------------------------


def test_send_in_either_shape(shaped: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(shaped.emulator.provider_url()) as gateway:
        result = gateway.send(ESTONIA, "Hello from SMSPM! Your code is 847392.")
    assert result.ok and result.status is Status.QUEUED
    [message] = stored(shaped)
    assert result.provider_message_id == message["id"]
    assert message["to"] == ESTONIA and message["sender"] == "SMSPM"
    assert message["fields"]["method"] == "POST"  # credentials never ride in a URL
    if shape_of(shaped) == "seed":
        assert result.raw == {"status": "success", "messageId": message["id"]}
    else:
        assert result.raw == {
            "messages": [{"id": message["id"], "toNumber": ESTONIA[1:], "status": "Added to queue"}]
        }


def test_refusals_in_either_shape_keep_the_sentence_and_raw_body(shaped: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(shaped.emulator.provider_url()) as gateway:
        with pytest.raises(InvalidRecipient) as invalid:
            gateway.send("+15005550001", "hello")
        with pytest.raises(OptedOut) as opted:
            gateway.send("+15005550004", "hello")
    assert invalid.value.code == "Invalid phone number: 15005550001"
    assert invalid.value.provider == "smspm" and invalid.value.field == "to"
    assert opted.value.code is not None and "opted out" in opted.value.code
    if shape_of(shaped) == "seed":
        assert invalid.value.raw == {"status": "error", "message": invalid.value.code}
    else:
        assert invalid.value.raw == {"error": invalid.value.code}
    assert stored(shaped) == []


def test_send_many_uses_one_array_request_with_results_in_order(shaped: EmulatorThread) -> None:
    numbers = [GOOD, "+15005550001", GOOD_2, "+15005550004", "+15005550009", ESTONIA]
    with smsgate.Gateway.from_url(shaped.emulator.provider_url()) as gateway:
        results = gateway.send_many([Message(to=n, body="Your order shipped") for n in numbers])
    assert [r.to for r in results] == numbers
    assert [r.ok for r in results] == [True, False, True, False, False, True]
    errors = [type(r.error) for r in results if r.error]
    assert errors == [InvalidRecipient, OptedOut, InvalidRecipient]
    assert [r.status for r in results if r.error] == [Status.REJECTED] * 3
    accepted = stored(shaped)
    assert [m["to"] for m in accepted] == [GOOD, GOOD_2, ESTONIA]
    by_to = {m["to"]: m["id"] for m in accepted}
    ids = [r.provider_message_id for r in results if r.ok]
    assert ids == [by_to[GOOD], by_to[GOOD_2], by_to[ESTONIA]]
    # One request carried them all: the failed ones are answered per recipient, not per request.
    assert isinstance(results[1].raw, dict) and results[1].raw["toNumber"] == "15005550001"


def test_a_batch_rejected_for_one_number_is_retried_one_by_one() -> None:
    with running(bulk_errors="reject_batch") as emulator:
        numbers = [GOOD, "+15005550001", GOOD_2]
        with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
            results = gateway.send_many([Message(to=n, body="Sale starts now") for n in numbers])
        assert [r.ok for r in results] == [True, False, True]
        assert isinstance(results[1].error, InvalidRecipient)
        assert sorted(m["to"] for m in stored(emulator)) == sorted([GOOD, GOOD_2])


def test_send_many_splits_past_the_100_recipient_limit() -> None:
    with running() as emulator:
        numbers = [f"+447700900{i:03d}" for i in range(150)]
        with smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway:
            results = gateway.send_many([Message(to=n, body="hi") for n in numbers])
        assert all(r.ok for r in results) and [r.to for r in results] == numbers
        assert len(stored(emulator)) == 150


# -- errors ---------------------------------------------------------------------------------------


def test_out_of_credit_is_insufficient_funds_and_fails_over(shaped: EmulatorThread) -> None:
    shaped.call(lambda: setattr(shaped.emulator, "balance", 1))
    with smsgate.Gateway.from_url(shaped.emulator.provider_url()) as gateway:
        assert gateway.send(GOOD, "one part").ok
        with pytest.raises(InsufficientFunds) as info:
            gateway.send(GOOD, "and another")
        results = gateway.send_many([Message(to=n, body="bulk") for n in (GOOD, GOOD_2)])
    assert info.value.failover and info.value.code == "Insufficient balance"
    assert all(isinstance(r.error, InsufficientFunds) for r in results)
    assert len(stored(shaped)) == 1


def test_sender_refusals_and_throttling() -> None:
    with running() as emulator:
        url = emulator.emulator.provider_url()
        with smsgate.Gateway.from_url(url) as gateway:
            with pytest.raises(InvalidMessage) as own:
                gateway.send(GOOD, "hi", sender="+15005550007")
            with pytest.raises(RateLimited) as throttled:
                gateway.send(GOOD, "hi", sender="+15005550008")
        assert own.value.field == "sender"
        assert throttled.value.retry_after == 1
        bad_sender = url.replace("@SMSPM?", "@+15005550001?")
        with smsgate.Gateway.from_url(bad_sender) as gateway, pytest.raises(ProviderUnavailable):
            gateway.send(GOOD, "hi")  # the URL's sender is wrong for every message: fail over


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "Hash is required"}, AuthError),
        (400, {"error": "Token is required"}, AuthError),
        (400, {"error": "Message text is required"}, InvalidMessage),
        (400, {"error": "At least one recipient number is required"}, InvalidRecipient),
        (402, {"error": "Insufficient balance"}, InsufficientFunds),
        (200, {"status": "error", "message": "Invalid phone number: 123"}, InvalidRecipient),
        (
            200,
            {"messages": [{"toNumber": "1", "status": "Rejected", "error": "Invalid number"}]},
            InvalidRecipient,
        ),
        (500, {"error": "Internal server error"}, AmbiguousSend),
        (503, {"error": "Service temporarily unavailable"}, smsgate.TransientError),
    ],
)
def test_documented_sentences_map_into_the_taxonomy(status: int, body: Any, expected: type) -> None:
    import json

    provider = create_provider("smspm://h:t@MyApp")
    response = HttpResponse(status, {}, json.dumps(body).encode())
    message = Message(to=GOOD, body="x")
    assert provider.is_error_response(response) or status >= 400
    assert type(provider.map_error_response(response, message)) is expected


def test_mms_and_callbacks_are_refused_before_any_request() -> None:
    with running() as emulator:
        url = emulator.emulator.provider_url()
        with smsgate.Gateway.from_url(url) as gateway:
            [result] = gateway.send_many(
                [Message(to=GOOD, body="look", media=("https://example.com/a.jpg",))]
            )
        assert isinstance(result.error, UnsupportedFeature)
        assert stored(emulator) == []
        with pytest.raises(ConfigError) as info:
            smsgate.Gateway.from_url(with_options(url, callback="https://example.com/dlr"))
        assert info.value.field == "callback"


# -- the emulator speaks GET, JSON POST and form POST ----------------------------------------------


def test_emulator_accepts_get_json_and_form_requests() -> None:
    with running(shape="v2") as emulator:
        creds = {"hash": "emulator-hash", "token": "emulator-token"}
        got = requests.get(
            emulator.url,
            params={**creds, "toNumber": ["37256789045", "+447700900123"], "text": "hi"},
            timeout=10,
        ).json()
        posted = requests.post(
            emulator.url, json={**creds, "toNumber": "0037256789045", "text": "hi"}, timeout=10
        ).json()
        form = requests.post(
            f"{emulator.url}/?hash=emulator-hash",
            data={"token": "emulator-token", "toNumber": "37256789045", "text": "hi"},
            timeout=10,
        ).json()
        refused = requests.get(emulator.url, params={**creds, "text": "hi"}, timeout=10)
        wrong = requests.get(
            emulator.url, params={**creds, "token": "x", "toNumber": "1", "text": "hi"}, timeout=10
        )
        senders = {m["sender"] for m in stored(emulator)}
        leaked = [m for m in stored(emulator) if "emulator-token" in str(m)]
    assert [m["status"] for m in got["messages"]] == ["Added to queue"] * 2
    assert len(posted["messages"]) == 1 and len(form["messages"]) == 1
    assert refused.status_code == 400
    assert refused.json() == {"error": "At least one recipient number is required"}
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Invalid hash or token"})
    assert senders == {"SMSPM.com"}
    assert leaked == []


# -- secrets --------------------------------------------------------------------------------------


def test_hash_and_token_never_reach_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running() as emulator:
        url = emulator.emulator.provider_url()
        texts: list[str] = []
        with smsgate.Gateway.from_url(url) as gateway:
            texts.append(repr(gateway))
            gateway.send(GOOD, "hello")
            gateway.send_many([Message(to=n, body="bulk") for n in (GOOD, "+15005550001")])
            for bad in ("+15005550001", "+15005550004"):
                try:
                    gateway.send(bad, "hello")
                except smsgate.SmsgateError as exc:
                    texts += [str(exc), repr(exc), str(exc.to_dict())]
        wrong = url.replace("emulator-token", "wrong-token-value")
        with smsgate.Gateway.from_url(wrong) as gateway, pytest.raises(AuthError) as info:
            gateway.send(GOOD, "hello")
        texts += [str(info.value), repr(info.value), repr(gateway.providers["smspm"])]
    assert "smspm POST /" in caplog.text  # the transport did log at DEBUG
    joined = caplog.text + "\n".join(texts)
    for secret in ("emulator-hash", "emulator-token", "wrong-token-value"):
        assert secret not in joined
    provider = create_provider(url)
    assert isinstance(provider, SmspmProvider)
    assert "emulator-token" not in repr(provider)


# -- the bulk fallback hook -----------------------------------------------------------------------


class _AlwaysFallBack(SmspmProvider):
    """An SMSPM client that would resend every failed array one by one, if the base let it."""

    def bulk_fallback(self, error: smsgate.SmsgateError, group: Sequence[Message]) -> bool:
        return True


def test_bulk_fallback_is_never_asked_after_an_ambiguous_failure() -> None:
    with running() as emulator:
        emulator.call(lambda: emulator.emulator.faults.update({"reset_rate": 1}))
        provider = _AlwaysFallBack(
            hash="emulator-hash", token="emulator-token", sender="SMSPM", base_url=emulator.url
        )

        async def send() -> list[smsgate.SendResult]:
            try:
                return await provider.asend_many([Message(to=n, body="hi") for n in (GOOD, GOOD_2)])
            finally:
                await provider.aclose()

        results = asyncio.run(send())
        assert all(isinstance(r.error, AmbiguousSend) for r in results)
        # the array arrived once; resending it one by one would have sent each message twice
        assert sorted(m["to"] for m in stored(emulator)) == sorted([GOOD, GOOD_2])


def test_a_refusal_before_any_request_is_each_recipients_result() -> None:
    provider = SmspmProvider(hash="h", token="t", base_url="http://127.0.0.1:9")
    messages = [Message(to=n, body="no sender anywhere") for n in (GOOD, GOOD_2)]
    results = asyncio.run(provider.asend_many(messages))
    assert [r.to for r in results] == [GOOD, GOOD_2]
    assert all(isinstance(r.error, InvalidMessage) and r.error.field == "sender" for r in results)
