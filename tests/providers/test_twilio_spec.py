"""Twilio's wire contract checked against Twilio's own OpenAPI description, not our reading of it.

``specs/twilio_messages.json`` is an excerpt of twilio/twilio-oai ``twilio_api_v2010.json`` (the
Messages create and list operations and the Message resource; the source commit is in the file).
The requests the provider builds, and the answers the emulator gives, must fit it: a drift on
either side fails here. ``specs/twilio_webhooks.json`` lists the parameters of Twilio's status
callbacks and incoming-message webhooks as Twilio's docs give them: the emulator sends no others,
and the provider reads what carries only the documented minimum.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from twilio.request_validator import RequestValidator

import smsgate
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.twilio import STATUSES, TwilioProvider
from tests.providers.contract import post_inbound
from tests.support.webhooks import WebhookReceiver

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parent / "specs" / "twilio_messages.json").read_text(encoding="utf-8")
)
CREATE = SPEC["create_message"]
MESSAGE = SPEC["message"]


def fits(value: Any, schema: dict[str, Any], name: str) -> None:
    if value is None:
        assert schema.get("nullable") or "$ref" in schema, f"{name} is null"
        return
    if "$ref" in schema:
        enum = schema["$ref"].rsplit("_", 1)[-1]
        assert value in SPEC["enums"][enum], f"{name}={value!r} not in {enum}"
        return
    kinds = {"string": str, "integer": int, "object": dict, "array": list, "boolean": bool}
    assert isinstance(value, kinds[schema["type"]]), f"{name}={value!r} is not {schema['type']}"


def test_every_field_the_provider_sends_is_a_declared_create_parameter() -> None:
    provider = TwilioProvider(
        account_sid="AC1", auth_token="t", sender="+15005550006", status_callback="https://h/s"
    )
    message = Message(
        to="+15555550100",
        body="hi",
        media=("https://example.com/a.jpg",),
        validity=600,
        provider_options={"SmartEncoded": "true"},
    )
    request = provider.build_send_request(message)
    names = {name for name, _ in request.data}  # type: ignore[union-attr]
    assert names <= set(CREATE["properties"]), names - set(CREATE["properties"])
    assert set(CREATE["required"]) <= names
    service = TwilioProvider(account_sid="AC1", auth_token="t", sender="MG" + "0" * 32)
    assert "MessagingServiceSid" in {n for n, _ in service.build_send_request(message).data}  # type: ignore[union-attr]
    # Options passed through are Twilio's own create parameters.
    assert provider.supported_options() <= set(CREATE["properties"])


def test_emulator_answers_fit_the_message_resource_and_list_response() -> None:
    with TwilioEmulator().run_in_thread() as running:
        emulator = running.emulator
        assert isinstance(emulator, TwilioEmulator)
        auth = (emulator.account_sid, emulator.auth_token)
        base = f"{running.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages"
        created = requests.post(
            f"{base}.json",
            data={"To": "+15555550100", "From": "+15005550006", "Body": "hi"},
            auth=auth,
            timeout=10,
        )
        assert str(created.status_code) in CREATE["responses"]
        fetched = requests.get(f"{base}/{created.json()['sid']}.json", auth=auth, timeout=10)
        listed = requests.get(f"{base}.json", params={"PageSize": "1"}, auth=auth, timeout=10)
    for resource in (created.json(), fetched.json(), *listed.json()["messages"]):
        assert set(resource) == set(MESSAGE), set(resource) ^ set(MESSAGE)
        for name, value in resource.items():
            fits(value, MESSAGE[name], name)
    page = listed.json()
    assert set(page) == set(SPEC["list_messages"]["response"])
    for name, value in page.items():
        if name != "messages":
            fits(value, SPEC["list_messages"]["response"][name], name)


def test_reconcile_asks_only_with_declared_list_parameters() -> None:
    emulator = TwilioEmulator()
    emulator.max_page_size = 2
    with emulator.run_in_thread(), smsgate.Gateway.from_url(emulator.provider_url()) as gateway:
        since = time.time()
        for i in range(5):
            gateway.send("+15555550100", f"text {i}")
        provider = create_provider(emulator.provider_url())

        async def lookup() -> object:
            try:
                return await provider.areconcile(
                    Message(to="+15555550100", body="not sent"), since=since
                )
            finally:
                await provider.aclose()

        assert asyncio.run(lookup()) is None
    declared = set(SPEC["list_messages"]["query"])
    assert len(emulator.list_queries) >= 4  # two reads, each over several pages
    for query in emulator.list_queries:
        assert set(query) <= declared, set(query) - declared
    assert any("DateSent>" in query for query in emulator.list_queries)


# -- webhooks: status callbacks and incoming messages ------------------------------------------

WEBHOOKS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "specs" / "twilio_webhooks.json").read_text(encoding="utf-8")
)
INBOUND = WEBHOOKS["inbound"]
CALLBACK = WEBHOOKS["status_callback"]
#: the parameters of Twilio's request to a webhook, as its docs list them
STANDARD = set(INBOUND["documented"]) | set(INBOUND["geographic"])


def media_names(count: int) -> set[str]:
    return {name.replace("{N}", str(i)) for name in INBOUND["per_media"] for i in range(count)}


@pytest.mark.parametrize("outcome", ["delivered", "undelivered", "failed"])
def test_the_emulators_status_callbacks_carry_only_documented_parameters(
    webhook_receiver: WebhookReceiver, outcome: str
) -> None:
    emulator = TwilioEmulator()
    emulator.callbacks.outcomes = {outcome: 1.0}
    with emulator.run_in_thread():
        url = f"{emulator.provider_url()}&callback={webhook_receiver.url}/status"
        with smsgate.Gateway.from_url(url) as gateway:
            gateway.send("+15555550100", "hi")
        callbacks = webhook_receiver.wait(2, path="/status")
    allowed = STANDARD | set(CALLBACK["adds"]) | set(CALLBACK["legacy"])
    statuses = []
    for request in callbacks:
        fields = dict(request.form())
        assert set(fields) <= allowed, set(fields) - allowed
        assert set(CALLBACK["minimum"]) <= set(fields), set(CALLBACK["minimum"]) - set(fields)
        assert fields["MessageStatus"] in SPEC["enums"]["status"]
        assert fields["SmsSid"] == fields["MessageSid"]
        assert fields["SmsStatus"] == fields["MessageStatus"]
        assert ("ErrorCode" in fields) == (fields["MessageStatus"] in CALLBACK["error_statuses"])
        statuses.append(fields["MessageStatus"])
    assert statuses == ["sent", outcome]


def test_the_emulators_incoming_messages_carry_the_documented_and_legacy_parameters(
    webhook_receiver: WebhookReceiver,
) -> None:
    with TwilioEmulator().run_in_thread() as running:
        for media in ([], ["https://example.com/a.jpg", "https://example.com/b.png"]):
            post_inbound(running, f"{webhook_receiver.url}/in", "Hello there", media)
        received = webhook_receiver.wait(2, path="/in")
    for request in received:
        fields = dict(request.form())
        count = int(fields["NumMedia"])
        allowed = STANDARD | set(INBOUND["legacy"]) | media_names(count)
        assert set(fields) <= allowed, set(fields) - allowed
        assert set(INBOUND["minimum"]) | media_names(count) <= set(fields)
        sid = fields["MessageSid"]
        assert fields["SmsMessageSid"] == fields["SmsSid"] == sid
        assert fields["SmsStatus"] == INBOUND["legacy"]["SmsStatus"]
        assert fields["ApiVersion"] == INBOUND["legacy"]["ApiVersion"]
    assert sorted(int(dict(r.form())["NumMedia"]) for r in received) == [0, 2]


def _signed(fields: dict[str, str]) -> WebhookRequest:
    url = "https://gw.example.com/webhooks/twilio?smsgate_id=msg_1"
    # signed by the official twilio SDK, independently of smsgate's own signing
    signature = RequestValidator("tok").compute_signature(url, fields)
    return WebhookRequest(
        url, "POST", {"X-Twilio-Signature": signature}, urlencode(fields).encode()
    )


def test_the_provider_reads_callbacks_with_only_the_documented_minimum() -> None:
    provider = create_provider("twilio://AC1:tok@+15005550006")
    fields = {name: "x" for name in CALLBACK["minimum"]}
    fields.update(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003")
    [event] = provider.handle_status_webhook(_signed(fields))
    assert (event.provider_message_id, event.status, event.error_code) == (
        "SM1",
        Status.UNDELIVERED,
        "30003",
    )
    inbound = {name: "x" for name in INBOUND["minimum"]}
    inbound.update(MessageSid="MM1", From="+15555550199", Body="pic", NumMedia="1")
    inbound["MediaUrl0"] = "https://example.com/a.jpg"
    [message] = provider.handle_inbound_webhook(_signed(inbound))
    assert (message.provider_message_id, message.body) == ("MM1", "pic")
    assert message.media == ("https://example.com/a.jpg",)


def test_the_provider_reads_every_status_twilio_declares() -> None:
    assert set(SPEC["enums"]["status"]) - {"receiving", "received"} <= set(STATUSES)
