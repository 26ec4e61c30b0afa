from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.infobip import InfobipEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
    InvalidMessage,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.infobip import InfobipProvider
from smsgate.providers.transport import HttpResponse
from tests.providers.contract import GOOD, ProviderContract, with_options
from tests.providers.reconcile_contract import ReconcileContract, reconcile, send
from tests.support.webhooks import WebhookReceiver


class TestInfobipContract(ProviderContract):
    emulator_cls = InfobipEmulator
    wrong_credentials = "ffffffffffffffffffffffffffffffff-wrong-00000000-0000-0000"
    signs_body = False

    def secrets(self, emulator: Any) -> list[str]:
        assert isinstance(emulator, InfobipEmulator)
        return [emulator.credentials, emulator.webhook_token]


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = InfobipEmulator().run_in_thread()
    yield running
    running.stop()


def _emulated(emulator: EmulatorThread) -> InfobipEmulator:
    assert isinstance(emulator.emulator, InfobipEmulator)
    return emulator.emulator


def test_wire_request_is_infobips_v3_shape(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    inner = _emulated(emulator)
    url = with_options(inner.provider_url(), callback=f"{webhook_receiver.url}/status")
    provider = create_provider(url)
    assert isinstance(provider, InfobipProvider)
    message = Message(to=GOOD, body="Your code is 1234", validity=3600)
    request = provider.build_send_request(message)
    assert (request.method, request.path) == ("POST", "/sms/3/messages")
    payload = request.json
    [entry] = payload["messages"]
    assert entry["sender"] == "InfoSMS"
    assert entry["destinations"] == [{"to": GOOD.lstrip("+"), "messageId": message.id}]
    assert entry["content"] == {"text": "Your code is 1234"}
    delivery = entry["webhooks"]["delivery"]["url"]
    assert delivery.startswith(f"{webhook_receiver.url}/status?")
    assert f"smsgate_id={message.id}" in delivery and "smsgate_token=" in delivery
    assert entry["options"]["validityPeriod"] == {"amount": 60, "timeUnit": "MINUTES"}
    assert request.headers["Authorization"] == f"App {inner.credentials}"


def test_status_fetch_reads_the_logs(emulator: EmulatorThread) -> None:
    with smsgate.Gateway.from_url(_emulated(emulator).provider_url()) as gateway:
        sent = gateway.send(GOOD, "hello")
        assert sent.provider_message_id
        result = gateway.fetch_status(sent.provider_message_id)
    assert result.status is Status.QUEUED and result.to == GOOD.lstrip("+")
    assert result.price_unit == "EUR"


def test_bulk_is_one_request_with_a_result_per_destination(emulator: EmulatorThread) -> None:
    numbers = [GOOD, "+15005550004", "+447700900123", "+15005550001"]
    with smsgate.Gateway.from_url(_emulated(emulator).provider_url()) as gateway:
        results = gateway.send_many([Message(to=n, body="Sale today") for n in numbers])
    assert [r.ok for r in results] == [True, False, True, False]
    assert isinstance(results[1].error, OptedOut) and results[1].error.code == "10"
    assert results[0].provider_message_id == results[0].id  # our id is Infobip's messageId
    stored = {
        m["bulk_id"] for m in (x["fields"] for x in _emulated(emulator).summary()["messages"])
    }
    assert len(stored) == 1  # both accepted destinations travelled in one request


def test_inbound_stop_puts_the_number_on_the_dnd_list(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    answer = requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={"from": GOOD, "to": "InfoSMS", "body": "STOP", "url": f"{webhook_receiver.url}/in"},
        timeout=10,
    )
    assert answer.status_code == 200
    with (
        smsgate.Gateway.from_url(_emulated(emulator).provider_url()) as gateway,
        pytest.raises(OptedOut),
    ):
        gateway.send(GOOD, "still there?")


# -- webhook forgeries ---------------------------------------------------------------------------

REPORT = json.dumps(
    {
        "results": [
            {
                "bulkId": "b-1",
                "messageId": "m-1",
                "to": "15555550100",
                "sentAt": "2024-05-01T12:00:00.000+0000",
                "doneAt": "2024-05-01T12:00:05.000+0000",
                "messageCount": 1,
                "status": {
                    "groupId": 3,
                    "groupName": "DELIVERED",
                    "id": 5,
                    "name": "DELIVERED_TO_HANDSET",
                },
                "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR"},
            }
        ]
    }
).encode()


def _provider(token: str | None = "s3cret-token") -> InfobipProvider:
    url = "infobip://KEY@InfoSMS" + (f"?webhook_token={token}" if token else "")
    provider = create_provider(url)
    assert isinstance(provider, InfobipProvider)
    return provider


def _request(query: str) -> WebhookRequest:
    return WebhookRequest(
        f"https://hooks.example.com/infobip{query}",
        "POST",
        {"Content-Type": "application/json"},
        REPORT,
    )


def test_report_with_the_token_parses() -> None:
    [event] = _provider().handle_status_webhook(_request("?smsgate_token=s3cret-token"))
    assert event.status is Status.DELIVERED and event.provider_message_id == "m-1"
    assert event.occurred_at is not None and event.occurred_at.utcoffset() is not None
    assert event.error_code is None


@pytest.mark.parametrize(
    "query",
    ["", "?smsgate_token=", "?smsgate_token=s3cret-tokeN", "?smsgate_id=x&token=s3cret-token"],
)
def test_forged_reports_are_refused(query: str) -> None:
    with pytest.raises(WebhookVerificationError):
        _provider().handle_status_webhook(_request(query))
    with pytest.raises(WebhookVerificationError):
        _provider().handle_inbound_webhook(_request(query))


def test_without_a_configured_token_every_webhook_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="webhook_token"):
        _provider(None).handle_status_webhook(_request("?smsgate_token=anything"))


def test_token_never_shows_in_reprs_or_masked_urls() -> None:
    from smsgate.providers.url import ProviderURL

    provider = _provider()
    masked = ProviderURL.parse("infobip://KEY@InfoSMS?webhook_token=s3cret-token").masked()
    assert "s3cret-token" not in repr(provider) + masked and "KEY" not in masked


# -- error bodies --------------------------------------------------------------------------------


def _answer(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            401,
            {
                "requestError": {
                    "serviceException": {
                        "messageId": "UNAUTHORIZED",
                        "text": "Invalid login details",
                    }
                }
            },
            AuthError,
        ),
        (429, {"errorCode": "E429", "description": "Too many requests"}, RateLimited),
        (
            400,
            {
                "requestError": {
                    "serviceException": {
                        "messageId": "BAD_REQUEST",
                        "text": "Bad",
                        "validationErrors": {"messages[0].content.text": ["must not be blank"]},
                    }
                }
            },
            InvalidMessage,
        ),
    ],
)
def test_request_errors_map(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    mapped = _provider().map_error_response(_answer(status, body), Message(to=GOOD, body="x"))
    assert isinstance(mapped, error)
    if status == 400:
        assert "content.text" in str(mapped)


@pytest.mark.parametrize(
    ("name", "sender", "error"),
    [
        ("REJECTED_NOT_ENOUGH_CREDITS", None, InsufficientFunds),
        ("REJECTED_SENDER", None, ProviderUnavailable),
        ("REJECTED_SENDER", "Other", InvalidMessage),
    ],
)
def test_rejected_statuses_blame_the_right_party(
    name: str, sender: str | None, error: type[Exception]
) -> None:
    body = {
        "bulkId": "b",
        "messages": [
            {
                "messageId": "m",
                "destination": "15555550100",
                "status": {"groupId": 5, "groupName": "REJECTED", "id": 12, "name": name},
            }
        ],
    }
    message = Message(to=GOOD, body="x", sender=sender)
    with pytest.raises(error):
        _provider().parse_send_response(message, _answer(200, body))


# -- Infobip's own client, as a second, independent speaker of the wire contract -----------------


def test_official_infobip_client_sends_through_the_emulator(emulator: EmulatorThread) -> None:
    sdk = pytest.importorskip("infobip_api_client", reason="pip install infobip-api-python-client")
    inner = _emulated(emulator)
    config = sdk.Configuration(host=emulator.url, api_key=inner.credentials)
    with sdk.ApiClient(config) as client:
        api = sdk.SmsApi(client)
        request = sdk.SmsRequest(
            messages=[
                sdk.SmsMessage(
                    sender="InfoSMS",
                    destinations=[sdk.SmsDestination(to="15555550100")],
                    content=sdk.SmsMessageContent(sdk.SmsTextContent(text="from the SDK")),
                )
            ]
        )
        answer = api.send_sms_messages(sms_request=request)
        [sent] = answer.messages
        assert sent.message_id and sent.status.group_name == "PENDING"
        logs = api.get_outbound_sms_message_logs(message_id=[sent.message_id])
        assert [log.message_id for log in logs.results] == [sent.message_id]
        bad = sdk.ApiClient(sdk.Configuration(host=emulator.url, api_key="wrong"))
        with pytest.raises(sdk.exceptions.UnauthorizedException):
            sdk.SmsApi(bad).send_sms_messages(sms_request=request)
    [stored] = inner.summary()["messages"]
    assert stored["body"] == "from the SDK" and stored["id"] == sent.message_id


class TestInfobipReconcile(ReconcileContract):
    emulator_cls = InfobipEmulator

    def sent_apart(self, emulator: EmulatorThread) -> None:
        # Infobip pages by time with millisecond stamps: five sends on loopback may share one.
        def spread() -> None:
            for i, message in enumerate(reversed(emulator.emulator.messages)):
                message.created_at -= i * 0.01

        emulator.call(spread)

    def test_a_window_older_than_the_logs_kept_is_no_proof(self, emulator: EmulatorThread) -> None:
        old = time.time() - 49 * 3600
        with pytest.raises(AmbiguousSend, match="48 hours"):
            reconcile(emulator.emulator.provider_url(), Message(to=GOOD, body="x"), old)

    def test_a_full_page_within_one_millisecond_is_no_proof(self, emulator: EmulatorThread) -> None:
        # Infobip pages by time only: more logs in one millisecond than a page holds cannot be
        # paged past, so the search stops short and proves nothing.
        url = emulator.emulator.provider_url()
        message = Message(to=GOOD, body="never sent")
        since = time.time()
        send(url, self.decoys(message))

        def same_time() -> None:
            for sent in emulator.emulator.messages:
                sent.created_at = since

        emulator.call(same_time)
        with pytest.raises(AmbiguousSend, match="same millisecond"):
            self.lookup(url, message, since)
