"""Twilio's wire contract checked against Twilio's own OpenAPI description, not our reading of it.

``specs/twilio_messages.json`` is an excerpt of twilio/twilio-oai ``twilio_api_v2010.json`` (the
Messages create and list operations and the Message resource; the source commit is in the file).
The requests the provider builds, and the answers the emulator gives, must fit it: a drift on
either side fails here.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import smsgate
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.message import Message
from smsgate.providers import create_provider
from smsgate.providers.twilio import TwilioProvider

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
        import requests

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
