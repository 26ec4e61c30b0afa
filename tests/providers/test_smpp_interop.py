"""SMPP against code nobody here wrote.

- smpplib (thread-based) and aiosmpplib (asyncio) bind to smsgate's SMSC emulator, submit short
  and long messages in their own layouts, and receive the receipts;
- smsgate's provider submits to smpp34's SMSC (a Rust implementation with a Python binding) and
  takes the receipts that SMSC sends back.

Each library is in the ``[test]`` extra; a test skips, saying so, when its library is missing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from smsgate.emulators.base import Callbacks
from smsgate.emulators.smpp import SmppEmulator
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.smpp import QueueSink

LONG = "Interop check: " + "the quick brown fox jumps over the lazy dog " * 6


def test_smpplib_binds_submits_and_gets_receipts() -> None:
    smpplib_client = pytest.importorskip("smpplib.client", reason="smpplib is not installed")
    import smpplib.consts
    import smpplib.gsm

    emulator = SmppEmulator(callbacks=Callbacks(delay=0.01))
    running = emulator.run_in_thread()
    try:
        client = smpplib_client.Client(
            "127.0.0.1", emulator.smpp_port, timeout=5, allow_unknown_opt_params=True
        )
        received: list[Any] = []
        sent: list[Any] = []
        client.set_message_received_handler(lambda pdu: received.append(pdu))
        client.set_message_sent_handler(lambda pdu: sent.append(pdu))
        client.connect()
        client.bind_transceiver(system_id=emulator.system_id, password=emulator.password)
        total = 0
        for text in ("Hello from smpplib", LONG):
            parts, coding, esm_class = smpplib.gsm.make_parts(text)
            total += len(parts)
            for part in parts:
                client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                    source_addr="smpplib",
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                    destination_addr="4915112345678",
                    short_message=part,
                    data_coding=coding,
                    esm_class=esm_class,
                    registered_delivery=True,
                )
        deadline = time.monotonic() + 10
        while len(received) < total and time.monotonic() < deadline:
            client.read_once()
        client.unbind()
        client.disconnect()
        bodies = running.call(lambda: [m.body for m in emulator.messages])
        assert bodies == ["Hello from smpplib", LONG]
        assert total > 2 and len(sent) == total  # one submit_sm_resp per part
        ids = {pdu.message_id.decode() for pdu in sent}
        receipted = {pdu.receipted_message_id.decode() for pdu in received}
        assert receipted == ids
        assert all(b"stat:DELIVRD" in pdu.short_message for pdu in received)
    finally:
        running.stop()


def test_aiosmpplib_binds_submits_and_gets_receipts() -> None:
    aiosmpplib = pytest.importorskip("aiosmpplib", reason="aiosmpplib is not installed")

    class Hook(aiosmpplib.AbstractHook):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.responses: list[Any] = []
            self.receipts: list[Any] = []

        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            pass

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, aiosmpplib.SubmitSmResp):
                self.responses.append(smpp_message)
            elif isinstance(smpp_message, aiosmpplib.DeliverSm) and smpp_message.is_receipt():
                self.receipts.append(smpp_message)

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            raise AssertionError(f"aiosmpplib failed to send: {error!r}")

    async def main() -> None:
        emulator = SmppEmulator(callbacks=Callbacks(delay=0.01))
        await emulator.start()
        hook = Hook()
        esme = aiosmpplib.ESME(
            smsc_host="127.0.0.1",
            smsc_port=emulator.smpp_port,
            system_id=emulator.system_id,
            password=emulator.password,
            hook=hook,
            log_level="WARNING",
        )
        # A long text goes as one submit_sm carrying message_payload (aiosmpplib's choice).
        for i, text in enumerate(("Hello from aiosmpplib", LONG)):
            await esme.broker.enqueue(
                aiosmpplib.SubmitSm(
                    short_message=text,
                    source=aiosmpplib.PhoneNumber("4930123456"),
                    destination=aiosmpplib.PhoneNumber("4915112345678"),
                    log_id=f"m{i}",
                )
            )
        task = asyncio.create_task(esme.start())
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while len(hook.receipts) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await esme.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await emulator.stop()
        assert sorted(m.body for m in emulator.messages) == sorted(["Hello from aiosmpplib", LONG])
        ids = {r.message_id for r in hook.responses}
        receipted = {r.parse_receipt()["id"] for r in hook.receipts}
        assert len(ids) == 2 and receipted == ids
        assert {r.parse_receipt()["stat"] for r in hook.receipts} == {"DELIVRD"}

    asyncio.run(main())


def test_smsgate_submits_to_smpp34s_smsc() -> None:
    smpp34 = pytest.importorskip("smpp34", reason="smpp34 (an independent SMSC) is not installed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ucs2 = "Привет из smsgate " * 5  # 90 UCS-2 units: two parts

    async def main() -> None:
        server = smpp34.Server("127.0.0.1", port, system_id="smpp34")
        await server.start()
        submits: list[Any] = []
        sessions: dict[str, Any] = {}

        async def smsc() -> None:
            while True:
                event = await server.next()
                if isinstance(event, smpp34.Esme):
                    sessions[event.session_id] = event
                elif isinstance(event, smpp34.SubmitSmEvent):
                    message_id = f"{len(submits) + 0xA000:X}"
                    submits.append((event, message_id))
                    event.accept(message_id)
                    # The receipt quotes the id in decimal, as many SMSCs do.
                    text = f"id:{int(message_id, 16)} sub:001 dlvrd:001 stat:DELIVRD err:000"
                    await sessions[event.session_id].deliver_sm(
                        event.source_addr,
                        text.encode(),
                        source_addr=event.destination_addr,
                        esm_class=0x04,
                    )

        task = asyncio.create_task(smsc())
        provider = create_provider(f"smpp://esme:pw@127.0.0.1:{port}?from=MyApp")
        sink = QueueSink()
        await provider.alisten(sink)
        try:
            short = await provider.asend(Message(to="+31600000000", body="Hello smpp34"))
            long = await provider.asend(Message(to="+31600000000", body=ucs2))
            events = [await asyncio.wait_for(sink.deliveries.get(), 5) for _ in range(2)]
        finally:
            await provider.aclose()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        assert short.status == long.status == Status.SENT and long.segments == 2
        first = submits[0][0]
        assert first.destination_addr == "31600000000" and first.source_addr == "MyApp"
        assert first.short_message == b"Hello smpp34" and first.data_coding == 0
        # The UCS-2 parts carry an 8-bit concatenation UDH; their payloads join to the text.
        parts = [event.short_message for event, _ in submits[1:]]
        assert all(part[:3] == b"\x05\x00\x03" for part in parts)
        assert [part[5] for part in parts] == [1, 2]
        assert b"".join(part[6:] for part in parts).decode("utf-16-be") == ucs2
        by_id = {event.provider_message_id: event for event in events}
        assert short.provider_message_id and long.provider_message_id
        assert by_id[short.provider_message_id].status == Status.DELIVERED
        folded = by_id[long.provider_message_id]
        assert folded.status == Status.DELIVERED and "2 parts" in (folded.reason or "")

    asyncio.run(main())
