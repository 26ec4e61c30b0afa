"""The gateway service with an SMPP provider: receipts and inbound arrive on the bind, not as
webhooks, and take the same path webhook ones take (the outbox's status, the inbound store, STOP).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.server.conftest import ServerFactory

from smsgate.emulators.base import Callbacks
from smsgate.emulators.smpp import SmppEmulator

PERSON = "+447700900123"
OURS = "+4930123456"


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_receipts_and_inbound_over_the_bind_reach_the_store(
    server_factory: ServerFactory, sqlite_url: str
) -> None:
    mix = Callbacks(delay=0.05, outcomes={"delivered": 1.0})
    emulator = SmppEmulator(callbacks=mix)
    with emulator.run_in_thread() as smsc:
        gateway = server_factory(
            sqlite_url,
            worker=True,
            config={"providers": {"smpp": {"url": emulator.provider_url() + "&backoff=0.05"}}},
        )
        long_body = "Your parcel is on its way. " * 12  # three parts
        ids = []
        for body in ("Code 123456", long_body):
            answer = gateway.post("/v1/messages", json={"to": PERSON, "body": body, "sender": OURS})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])

        def delivered() -> bool:
            return all(
                gateway.get(f"/v1/messages/{m}").json()["status"] == "delivered" for m in ids
            )

        wait_for(delivered)
        record = gateway.get(f"/v1/messages/{ids[1]}").json()
        assert record["provider"] == "smpp"
        assert record["events"][-1]["source"].startswith("webhook")
        assert smsc.call(lambda: len(emulator.callback_log)) == 4  # one receipt per part

        # A person writes a long text (three concatenated parts), then STOP.
        reply = "Thanks, but please leave it with the neighbour at number 12. " * 3
        assert smsc.call(lambda: emulator.inject_inbound(PERSON, OURS, reply)) == 2
        smsc.call(lambda: emulator.inject_inbound(PERSON, OURS, "STOP"))

        def inbound() -> list[tuple[str, str, str]]:
            items = gateway.get("/v1/inbound", params={"from": PERSON}).json()["items"]
            return [(m["from"], m["to"], m["body"]) for m in items]

        wait_for(lambda: len(inbound()) == 2)
        assert sorted(inbound()) == sorted([(PERSON, OURS, reply), (PERSON, OURS, "STOP")])
        suppressed = gateway.get("/v1/suppressions", params={"recipient": PERSON}).json()
        assert [s["keyword"] for s in suppressed["items"]] == ["STOP"]
