"""Vonage's SMS contract checked against Vonage's own specification, not our reading of it.

``specs/vonage_sms.json`` is an excerpt of Nexmo/api-specification ``definitions/sms.yml`` (the
request, the answer, the inbound message and the delivery receipt; the source commit is in the
file). The provider's requests, the emulator's answers and the emulator's webhooks must fit it.
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
from smsgate.emulators.vonage import VonageEmulator
from smsgate.message import Message
from smsgate.providers.vonage import VonageProvider
from tests.support.webhooks import WebhookReceiver

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parent / "specs" / "vonage_sms.json").read_text(encoding="utf-8")
)
#: Vonage adds these to any webhook it signs (its signing guide; the excerpt's InboundMessage
#: schema lists timestamp and nonce but not sig)
SIGNING = frozenset({"sig", "timestamp", "nonce"})


def fields_fit(fields: dict[str, Any], schema: str, *, extra: frozenset[str] = frozenset()) -> None:
    declared = SPEC[schema]["properties"]
    assert set(fields) <= set(declared) | extra, set(fields) - set(declared) - extra
    assert set(SPEC[schema]["required"]) <= set(fields), set(SPEC[schema]["required"]) - set(fields)
    for name, value in fields.items():
        kind = declared.get(name, {}).get("type", "string")
        if kind == "string":
            assert isinstance(value, str), f"{name}={value!r}"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with VonageEmulator().run_in_thread() as running:
        yield running


def test_the_request_the_provider_builds_fits_new_message() -> None:
    provider = VonageProvider(
        api_key="key", api_secret="secret", sender="MyApp", status_callback="https://h/dlr"
    )
    message = Message(
        to="+15555550100", body="Привет", validity=600, provider_options={"account-ref": "a1"}
    )
    request = provider.build_send_request(message)
    fields = dict(request.data)  # type: ignore[arg-type]
    fields_fit({k: str(v) for k, v in fields.items()}, "NewMessage")
    assert fields["type"] in SPEC["NewMessage"]["properties"]["type"]["enum"]
    assert provider.supported_options() <= set(SPEC["NewMessage"]["properties"])


def test_the_emulators_answers_fit_the_sms_response(emulator: EmulatorThread) -> None:
    vonage = emulator.emulator
    assert isinstance(vonage, VonageEmulator)
    base = {"api_key": vonage.api_key, "api_secret": vonage.api_secret, "from": "MyApp"}
    long_text = "x" * 400  # three parts: one entry each
    for fields in (
        {**base, "to": "15555550100", "text": long_text},
        {**base, "to": "15005550001", "text": "invalid number"},
        {**base, "api_secret": "wrong", "to": "15555550100", "text": "bad credentials"},
    ):
        answer = requests.post(f"{emulator.url}/sms/json", data=fields, timeout=10).json()
        assert set(answer) <= set(SPEC["SMS"]["properties"])
        assert isinstance(answer["message-count"], str)
        for entry in answer["messages"]:
            declared = set(SPEC["Message"]["properties"]) | set(SPEC["ErrorMessage"]["properties"])
            assert set(entry) <= declared, set(entry) - declared
            assert all(isinstance(value, str) for value in entry.values())
    assert answer["messages"][0]["status"] != "0"


def test_the_emulators_receipts_and_inbound_messages_fit_the_spec(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    vonage = emulator.emulator
    url = f"{vonage.provider_url()}&callback={webhook_receiver.url}/dlr"
    with smsgate.Gateway.from_url(url) as gateway:
        gateway.send("+15555550100", "x" * 200)  # two parts: a receipt for each
    receipts = webhook_receiver.wait(2, path="/dlr")
    for request in receipts:
        fields_fit(dict(request.form()), "DeliveryReceipt", extra=SIGNING)
    requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={
            "from": "+15555550199",
            "to": "+15005550006",
            "body": "Hello there",
            "url": f"{webhook_receiver.url}/in",
        },
        timeout=10,
    ).raise_for_status()
    [inbound] = webhook_receiver.wait(1, path="/in")
    fields_fit(dict(inbound.form()), "InboundMessage", extra=SIGNING)
