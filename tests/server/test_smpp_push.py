"""The gateway service with an SMPP provider: receipts and inbound arrive on the bind, not as
webhooks, and take the same path webhook ones take (the outbox's status, the inbound store, STOP).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pytest
from tests.server.conftest import ServerFactory

from smsgate.emulators.base import Callbacks
from smsgate.emulators.smpp import SmppEmulator
from smsgate.outbox.sql import sql_store
from smsgate.smpp import pdu as p

PERSON = "+447700900123"
OURS = "+4930123456"
NOTE = {"delivered": " (DELIVRD)", "undelivered": " (UNDELIV); code 001"}


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


@pytest.mark.parametrize(
    ("outcomes", "before_restart", "status"),
    [
        (("delivered", "delivered", "delivered"), 0, "delivered"),
        (("delivered", "undelivered", "delivered"), 1, "undelivered"),
    ],
)
def test_a_long_messages_receipts_fold_after_a_restart(
    server_factory: ServerFactory,
    store_url: str,
    outcomes: tuple[str, ...],
    before_restart: int,
    status: str,
) -> None:
    # docs/smpp.md: the part ids are stored with the send, so receipts that reach a new process
    # (whose provider never saw the parts) still fold into the message's status, and so does a
    # part's receipt taken before the restart. The SMSC quotes the ids in decimal, its
    # responses gave them in hex.
    emulator = SmppEmulator(callbacks=Callbacks(delay=600), receipt_ids="decimal")
    with emulator.run_in_thread() as smsc:
        config = {"providers": {"smpp": {"url": emulator.provider_url() + "&backoff=0.05"}}}
        before = server_factory(store_url, worker=True, config=config)
        body = "Your parcel is on its way. " * 12  # three parts
        answer = before.post("/v1/messages", json={"to": PERSON, "body": body, "sender": OURS})
        assert answer.status_code == 201, answer.text
        message = answer.json()["id"]
        wait_for(lambda: before.get(f"/v1/messages/{message}").json()["status"] == "sent")
        [sent] = [e for e in before.outbox.store.events(message) if e.to_status.value == "sent"]
        part_ids = sent.raw["message_ids"]
        submits = smsc.call(
            lambda: [pdu for pdu in emulator._captured if pdu.command == p.Command.SUBMIT_SM]
        )
        assert len(part_ids) == len(submits) == 3
        receipts = [
            partial(emulator.send_receipt, "smsgate", submit, part_id, outcome)
            for submit, part_id, outcome in zip(submits, part_ids, outcomes, strict=True)
        ]

        def parts() -> list[tuple[str, str | None]]:
            return sorted(
                (e.to_status.value, e.reason)
                for e in before.outbox.store.events(message)
                if e.reason and " of 3" in e.reason
            )

        for receipt in receipts[:before_restart]:
            smsc.call(receipt)
        wait_for(lambda: len(parts()) == before_restart)
        before.thread.stop()  # the process ends, and the provider's memory of the parts with it
        wait_for(lambda: not smsc.call(emulator.receivers))

        after = server_factory(store_url, worker=True, config=config)
        wait_for(lambda: bool(smsc.call(emulator.receivers)))
        for receipt in receipts[before_restart:]:
            smsc.call(receipt)
        wait_for(lambda: after.get(f"/v1/messages/{message}").json()["status"] != "sent")

        record = after.get(f"/v1/messages/{message}").json()
        assert record["status"] == status
        # One entry per part, in the order the receipts were recorded (they may overtake).
        assert parts() == sorted(
            ("sent", f"sent receipt does not move a sent message ({o}{NOTE[o]}; part {n} of 3)")
            for n, o in enumerate(outcomes, start=1)
        )
        history = after.outbox.store.events(message)
        finals = [e for e in history if e.to_status.value == status]
        assert len(finals) == 1
        assert finals[0].reason and finals[0].reason.startswith("smpp reports")
        assert sql_store(after.outbox.store, "the test").pending_receipts() == 0  # none left over
