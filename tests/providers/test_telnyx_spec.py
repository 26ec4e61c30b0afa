"""Telnyx's answers and webhooks checked against Telnyx's own OpenAPI description.

``specs/telnyx_messages.json`` is an excerpt of the message resource, the error body and the
``message.sent`` / ``message.finalized`` / ``message.received`` webhook events as Telnyx's OpenAPI
declares them (through the SDK types generated from it; the sources and commits are in the file
and in ``specs/README.md``). The emulator's answers and webhooks must fit it, and the provider
must read every delivery status it declares: a drift on either side fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.telnyx import TelnyxEmulator
from smsgate.message import Status
from smsgate.providers import create_provider
from smsgate.providers.telnyx import STATUSES
from tests.providers.contract import GOOD, post_inbound, with_options
from tests.providers.spec_check import problems
from tests.support.webhooks import WebhookReceiver

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parent / "specs" / "telnyx_messages.json").read_text(encoding="utf-8")
)
SCHEMAS: dict[str, Any] = SPEC["schemas"]


def fits(value: Any, schema: str) -> None:
    found = problems(value, SCHEMAS[schema], SCHEMAS)
    assert not found, "\n".join(found)


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with TelnyxEmulator().run_in_thread() as running:
        yield running


def test_the_emulators_answers_fit_the_message_resource_and_error_body(
    emulator: EmulatorThread,
) -> None:
    telnyx = emulator.emulator
    assert isinstance(telnyx, TelnyxEmulator)
    auth = {"Authorization": f"Bearer {telnyx.credentials}"}
    base = f"{emulator.url}/v2/messages"
    sms = requests.post(
        base, json={"from": "+15005550006", "to": GOOD, "text": "hi"}, headers=auth, timeout=10
    )
    mms = requests.post(
        base,
        json={"from": "+15005550006", "to": GOOD, "media_urls": ["https://example.com/a.jpg"]},
        headers=auth,
        timeout=10,
    )
    for answer in (sms, mms):
        assert answer.status_code == 200, answer.text
        fits(answer.json(), "MessageSendResponse")
        assert answer.json()["data"]["id"]
    fetched = requests.get(f"{base}/{sms.json()['data']['id']}", headers=auth, timeout=10)
    fits(fetched.json(), "MessageSendResponse")
    refused = requests.post(
        base, json={"from": "+15005550006", "to": "+1", "text": "hi"}, headers=auth, timeout=10
    )
    unauthorized = requests.post(base, json={"to": GOOD, "text": "hi"}, timeout=10)
    for answer in (refused, unauthorized):
        assert answer.status_code >= 400
        fits(answer.json(), "Errors")
        assert answer.json()["errors"]


@pytest.mark.parametrize("outcome", ["delivered", "undelivered", "failed", "expired"])
def test_the_emulators_delivery_webhooks_fit_the_delivery_update_event(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver, outcome: str
) -> None:
    emulator.call(lambda: setattr(emulator.emulator.callbacks, "outcomes", {outcome: 1.0}))
    url = with_options(emulator.emulator.provider_url(), callback=f"{webhook_receiver.url}/dlr")
    with smsgate.Gateway.from_url(url) as gateway:
        gateway.send(GOOD, "x")
    # a message that fails before the carrier gets no message.sent
    events = webhook_receiver.wait(1 if outcome == "failed" else 2, path="/dlr")
    kinds = []
    for request in events:
        event = json.loads(request.body)
        fits(event, "DeliveryUpdateWebhookEvent")
        kinds.append(event["data"]["event_type"])
    assert kinds[-1] == "message.finalized"


def test_the_emulators_inbound_webhooks_fit_the_inbound_message_event(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    for media in ([], ["https://example.com/cat.jpg"]):
        post_inbound(emulator, f"{webhook_receiver.url}/in", "Hello there", media)
    for request in webhook_receiver.wait(2, path="/in"):
        event = json.loads(request.body)
        # Telnyx's SDK declares ``meta`` on delivery events only; every Telnyx webhook carries
        # the same envelope, so an inbound one may have it in that shape.
        meta = event.pop("meta", None)
        fits({"meta": meta}, "DeliveryUpdateWebhookEvent")
        fits(event, "InboundMessageWebhookEvent")
        messages = create_provider(emulator.emulator.provider_url()).parse_inbound_webhook(request)
        assert [m.body for m in messages] == ["Hello there"]


def test_the_provider_reads_every_delivery_status_telnyx_declares() -> None:
    declared = SCHEMAS["OutboundMessagePayload"]["properties"]["to"]["items"]["properties"]
    statuses = declared["status"]["enum"]
    assert set(statuses) <= set(STATUSES), set(statuses) - set(STATUSES)
    assert all(STATUSES[name] is not Status.UNKNOWN for name in statuses)
