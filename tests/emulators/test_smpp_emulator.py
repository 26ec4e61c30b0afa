"""The SMPP SMSC emulator: the CLI, its introspection endpoints, bind rules, seeded faults."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import smsgate
from smsgate.emulators.base import Callbacks, Faults
from smsgate.emulators.smpp import SmppEmulator
from smsgate.errors import AuthError, InvalidRecipient, RateLimited
from smsgate.smpp import pdu as p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _smsgate() -> list[str]:
    import sys

    return [str(Path(sys.executable).with_name("smsgate"))]


def _emulate(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``smsgate emulate smpp ARGS`` started, and the lines it printed (by label) once ready."""
    proc = subprocess.Popen(
        [*_smsgate(), "emulate", "smpp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while "recorded messages" not in lines and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"the emulator exited early ({proc.poll()})"
        key, _, value = line.partition(": ")
        lines[key.strip()] = value.strip()
    return proc, lines


def test_smsgate_emulate_smpp_and_its_introspection() -> None:
    port, http_port = _free_port(), _free_port()
    proc, lines = _emulate(
        "--port",
        str(port),
        "--credentials",
        "acme:s3cret",
        "--option",
        f"http_port={http_port}",
        "--seed",
        "1",
        "--callback-delay",
        "0.01",
    )
    try:
        assert f"127.0.0.1:{port}" in next(k for k in lines if k.startswith("smpp emulator"))
        base = f"http://127.0.0.1:{http_port}/_emulator"
        assert lines["recorded messages"] == f"{base}/messages"
        url = lines["provider URL"]
        assert url.startswith(f"smpp://acme:s3cret@127.0.0.1:{port}?")
        with smsgate.Gateway.from_url(url) as gw:
            assert gw.send("+15555550100", "from the command line").ok
            with pytest.raises(InvalidRecipient):
                gw.send("+15005550001", "a magic invalid number")
            faults = requests.post(f"{base}/faults", json={"rate_limit_rate": 1}, timeout=10)
            assert faults.json()["rate_limit_rate"] == 1
            with pytest.raises(RateLimited):
                gw.send("+15555550100", "throttled")
        data = requests.get(f"{base}/messages", params={"pdus": 1}, timeout=10).json()
        assert data["count"] == 1 and data["messages"][0]["body"] == "from the command line"
        assert data["binds"] == 1 and data["submits"] == 1
        commands = [x["command"] for x in data["pdus"]]
        assert commands[0] == "bind_transceiver" and commands.count("submit_sm") == 3
        assert commands[-1] == "unbind"  # the gateway closed, unbinding gracefully
        assert requests.post(f"{base}/reset", timeout=10).status_code == 200
        assert requests.get(f"{base}/messages", timeout=10).json()["count"] == 0
        refused = requests.post(
            f"{base}/inbound", json={"from": "+1555", "to": "x", "body": "hi"}, timeout=10
        )
        assert refused.status_code == 409 and "bound" in refused.json()["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0


def test_smsgate_emulate_smpp_with_tls() -> None:
    proc, lines = _emulate("--option", "tls=true", "--callback-delay", "0.01")
    try:
        assert any(k.startswith("smpp emulator") and k.endswith("(TLS)") for k in lines)
        ca_file = lines["CA certificate"].split(" ")[0]
        assert Path(ca_file).is_file()
        url = lines["provider URL"]
        assert "tls=true" in url and "ca_file=" in url
        with smsgate.Gateway.from_url(url) as gateway:
            assert gateway.send("+4915112345678", "from the command line, over TLS").ok
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
    assert not Path(ca_file).exists()  # the CA made for the run goes with it


async def _exchange(port: int, *pdus: p.Pdu, raw: bytes = b"") -> list[p.Pdu]:
    """Write ``pdus`` (and ``raw`` bytes) and read one answer per PDU."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i, pdu in enumerate(pdus, start=1):
        pdu.sequence = i
        writer.write(p.encode(pdu))
    writer.write(raw)
    buffer = bytearray()
    answers: list[p.Pdu] = []
    expected = len(pdus) + (1 if raw else 0)
    while len(answers) < expected:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, "the emulator closed the connection"
        buffer += chunk
        answers += [p.decode(frame) for frame in p.frames(buffer)]
    writer.close()
    return answers


def _bind(system_id: str = "smsgate", password: str = "emulator") -> p.Pdu:
    return p.Pdu(
        p.Command.BIND_TRANSCEIVER,
        fields={"system_id": system_id, "password": password, "interface_version": 0x34},
    )


def _submit(to: str = "4915112345678") -> p.Pdu:
    return p.Pdu(
        p.Command.SUBMIT_SM,
        fields={"source_addr": "MyApp", "destination_addr": to, "short_message": b"hi"},
    )


def test_binds_are_authenticated_and_state_is_enforced() -> None:
    async def main() -> None:
        emulator = SmppEmulator()
        await emulator.start()
        try:
            port = emulator.smpp_port
            [wrong_id] = await _exchange(port, _bind("nobody"))
            [wrong_password] = await _exchange(port, _bind(password="nope"))
            early, unknown = await _exchange(
                port, _submit(), p.Pdu(p.Command.DATA_SM, body=b"\x00")
            )
            bound, again, submitted, link = await _exchange(
                port, _bind(), _bind(), _submit(), p.Pdu(p.Command.ENQUIRE_LINK)
            )
        finally:
            await emulator.stop()
        assert wrong_id.status == p.Status.ESME_RINVSYSID
        assert wrong_password.status == p.Status.ESME_RINVPASWD
        assert early.status == p.Status.ESME_RINVBNDSTS  # submit before bind
        assert unknown.command == p.Command.GENERIC_NACK
        assert unknown.status == p.Status.ESME_RINVCMDID
        assert bound.status == 0 and again.status == p.Status.ESME_RALYBND
        assert submitted.status == 0 and submitted.get("message_id")
        assert link.command == p.Command.ENQUIRE_LINK_RESP
        assert emulator.bind_failures == 2 and emulator.binds == 1

    asyncio.run(main())


def test_a_malformed_pdu_gets_a_generic_nack() -> None:
    async def main() -> None:
        emulator = SmppEmulator()
        await emulator.start()
        try:
            # A submit_sm whose short_message length runs past the PDU.
            body = b"\x00" * 3 + b"A\x00" + b"\x00\x00" + b"B\x00" + b"\x00" * 9 + b"\xff"
            bad = p.HEADER.pack(16 + len(body), p.Command.SUBMIT_SM, 0, 9) + body
            [bound, nack] = await _exchange(emulator.smpp_port, _bind(), raw=bad)
        finally:
            await emulator.stop()
        assert bound.status == 0
        assert nack.command == p.Command.GENERIC_NACK and nack.sequence == 9
        assert nack.status == p.Status.ESME_RINVMSGLEN

    asyncio.run(main())


def test_seeded_faults_repeat() -> None:
    async def statuses(seed: int) -> list[int]:
        emulator = SmppEmulator(faults=Faults(error_rate=0.3, rate_limit_rate=0.3, seed=seed))
        await emulator.start()
        try:
            answers = await _exchange(emulator.smpp_port, _bind(), *(_submit() for _ in range(30)))
        finally:
            await emulator.stop()
        return [a.status for a in answers[1:]]

    first, again = asyncio.run(statuses(5)), asyncio.run(statuses(5))
    assert first == again
    assert {p.Status.ESME_ROK, p.Status.ESME_RSYSERR, p.Status.ESME_RTHROTTLED} == set(first)


def test_wrong_credentials_are_refused_to_the_provider() -> None:
    with SmppEmulator().run_in_thread() as running:
        url = running.emulator.provider_url().replace("smsgate:", "other:")
        with smsgate.Gateway.from_url(url) as gw, pytest.raises(AuthError) as info:
            gw.send("+15555550100", "hello")
        assert info.value.code == "ESME_RINVSYSID"


def test_inbound_and_drop_over_http() -> None:
    async def main() -> dict[str, Any]:
        emulator = SmppEmulator(callbacks=Callbacks(delay=0.01))
        await emulator.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", emulator.smpp_port)
            writer.write(p.encode(_bind()))
            await reader.read(65536)
            loop = asyncio.get_running_loop()
            inbound = await loop.run_in_executor(
                None,
                lambda: requests.post(
                    f"{emulator.url}/_emulator/inbound",
                    json={"from": "+447700900123", "to": "MyApp", "body": "é" * 200, "mode": "sar"},
                    timeout=10,
                ),
            )
            buffer = bytearray()
            delivered: list[p.Pdu] = []
            while len(delivered) < 2:
                buffer += await asyncio.wait_for(reader.read(65536), 5)
                delivered += [p.decode(f) for f in p.frames(buffer)]
            dropped = await loop.run_in_executor(
                None, lambda: requests.post(f"{emulator.url}/_emulator/drop", timeout=10)
            )
            closed = await asyncio.wait_for(reader.read(65536), 5)
            writer.close()
        finally:
            await emulator.stop()
        return {
            "inbound": inbound.json(),
            "texts": [p.read_text(d) for d in delivered],
            "dropped": dropped.json(),
            "closed": closed,
        }

    out = asyncio.run(main())
    assert out["inbound"] == {"parts": 2}  # 200 GSM-7 septets: 2 parts
    assert "".join(t.text for t in out["texts"]) == "é" * 200
    assert [(t.total, t.sequence) for t in out["texts"]] == [(2, 1), (2, 2)]
    assert out["dropped"] == {"dropped": 1} and out["closed"] == b""
