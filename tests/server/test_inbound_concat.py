"""Vonage concatenated inbound: the parts of a long text, posted by the Vonage emulator over
loopback HTTP to a running server, are recorded as one message, once, in part order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest
import requests
from tests.server.conftest import Running, ServerFactory

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.vonage import VonageEmulator
from smsgate.outbox.tables.server import InboundRecord

PERSON = "+447700900123"
OURS = "+447700900999"
LONG = "".join(f"word{i:03d} " for i in range(80)).strip()  # 639 characters: five parts


@pytest.fixture
def vonage() -> Iterator[EmulatorThread]:
    running = VonageEmulator().run_in_thread()
    yield running
    running.stop()


def start(server_factory: ServerFactory, store_url: str, vonage: EmulatorThread) -> Running:
    return server_factory(
        store_url, config={"providers": {"vonage": {"url": vonage.emulator.provider_url()}}}
    )


def parts(vonage: EmulatorThread, body: str = LONG) -> list[dict[str, str]]:
    found: list[dict[str, str]] = vonage.call(
        lambda: vonage.emulator.inbound_parts(PERSON, OURS, body)
    )
    return found


def post(vonage: EmulatorThread, gateway: Running, params: dict[str, str]) -> int:
    """One signed inbound webhook, as the emulator sends it, over HTTP to the server."""
    url = f"{gateway.url}/webhooks/vonage/inbound"
    sent = asyncio.run_coroutine_threadsafe(vonage.emulator.send_webhook(url, params), vonage.loop)
    status: int = sent.result(10)
    return status


def inbound(gateway: Running) -> list[InboundRecord]:
    return gateway.store.list_inbound(sender=PERSON)


def test_the_emulator_splits_a_long_text_like_vonage(vonage: EmulatorThread) -> None:
    found = parts(vonage)
    assert [p["concat-part"] for p in found] == ["1", "2", "3", "4", "5"]
    assert {p["concat-total"] for p in found} == {"5"} and len(
        {p["concat-ref"] for p in found}
    ) == 1
    assert len({p["messageId"] for p in found}) == 5
    assert "".join(p["text"] for p in found) == LONG
    assert "concat" not in parts(vonage, "short")[0]


def test_a_long_text_sent_in_parts_is_one_message(
    server_factory: ServerFactory, store_url: str, vonage: EmulatorThread
) -> None:
    gateway = start(server_factory, store_url, vonage)
    response = requests.post(
        vonage.url + "/_emulator/inbound",
        json={
            "from": PERSON,
            "to": OURS,
            "body": LONG,
            "url": f"{gateway.url}/webhooks/vonage/inbound",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    (record,) = inbound(gateway)
    assert record.body == LONG and record.to == OURS
    listed = gateway.get("/v1/inbound").json()
    assert [item["body"] for item in listed["items"]] == [LONG]


def test_parts_in_any_order_and_repeated_are_recorded_once_in_part_order(
    server_factory: ServerFactory, store_url: str, vonage: EmulatorThread
) -> None:
    gateway = start(server_factory, store_url, vonage)
    found = parts(vonage)
    shuffled = [found[3], found[0], found[3], found[4], found[2], found[0]]
    for params in shuffled:
        assert post(vonage, gateway, params) == 200
        assert inbound(gateway) == []  # part 2 is still missing
    assert post(vonage, gateway, found[1]) == 200
    (record,) = inbound(gateway)
    assert record.body == LONG
    # a provider's late retry of any part changes nothing
    for params in random.Random(7).sample(found, len(found)):
        assert post(vonage, gateway, params) == 200
    assert [r.body for r in inbound(gateway)] == [LONG]


def test_parts_survive_the_server_that_received_them(
    server_factory: ServerFactory, store_url: str, vonage: EmulatorThread
) -> None:
    """Parts answered 200 by one server are in the store: another server on the same store
    (after a crash, a restart, or behind a load balancer) completes the message."""
    first = start(server_factory, store_url, vonage)
    found = parts(vonage)
    for params in found[:-1]:
        assert post(vonage, first, params) == 200
    second = start(server_factory, store_url, vonage)
    assert post(vonage, second, found[-1]) == 200
    (record,) = inbound(second)
    assert record.body == LONG


def test_two_long_texts_with_interleaved_parts_stay_apart(
    server_factory: ServerFactory, store_url: str, vonage: EmulatorThread
) -> None:
    gateway = start(server_factory, store_url, vonage)
    other = LONG.upper()
    first, second = parts(vonage), parts(vonage, other)
    for index, params in enumerate(second):
        params["concat-ref"] = "7"
        first[index]["concat-ref"] = "8"
    for a, b in zip(first, second, strict=True):
        assert post(vonage, gateway, b) == 200
        assert post(vonage, gateway, a) == 200
    assert sorted(r.body for r in inbound(gateway)) == sorted([LONG, other])


def test_a_part_without_its_numbers_is_refused_naming_them(
    server_factory: ServerFactory, store_url: str, vonage: EmulatorThread
) -> None:
    gateway = start(server_factory, store_url, vonage)
    broken = {**parts(vonage)[0], "concat-part": "9"}
    assert post(vonage, gateway, broken) == 403
    assert inbound(gateway) == []
