"""submit_sm per second on loopback: smsgate's SMPP provider and independent clients, one run.

    .venv/bin/python bench/smpp.py [--messages 20000] [--window 100] [--seconds 60]

The SMSC is smsgate's emulator (``smsgate emulate smpp``) in its own process, so its CPU is not
charged to the clients. Each client binds as a transceiver and submits the same short GSM-7 text
with ``registered_delivery=0`` (this measures submits, not receipts) and at most ``--window``
submits outstanding:

- smsgate: ``SmppProvider.asend`` from ``--window`` concurrent tasks (the provider's window is
  the same size), building each ``Message`` inside the timed region, on uvloop;
- smpp34 (Rust core, asyncio binding): ``Smsc.submit_sm`` from ``--window`` tasks with
  ``window_size=--window``;
- aiosmpplib (pure Python asyncio): messages queued on its broker, the run ends when the last
  submit_sm_resp arrives (it keeps its own window). It runs at a few hundred a second, so it
  gets at most 3,000 messages to keep the run short.

Each run is checked: every submit answered OK and the emulator counted that many submits. It
prints submit_sm/s, client CPU per submit (user plus kernel, ``os.times``; the kernel part
is mostly the socket's system calls), the emulator's CPU per submit (from /proc), how long the client's event loop was runnable but waiting for a CPU (the run
queue, from /proc schedstat: on a loaded machine that, not the client's CPU, sets the rate) and the
machine's load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emulator_process import free_port, start_emulator

BODY = "Your code is 481902"
TO = "4915112345678"


def emulator_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def smsgate_run(url: str, n: int, window: int, seconds: float) -> int:
    from smsgate.message import Message
    from smsgate.providers import create_provider

    provider = create_provider(f"{url}&window={window}&registered_delivery=0")
    await provider.asend(Message(to="+" + TO, body=BODY))  # bind outside the timed region
    pending = iter(range(n))
    ok = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal ok
        for _ in pending:
            if time.monotonic() > deadline:
                return
            result = await provider.asend(Message(to="+" + TO, body=BODY))
            ok += result.provider_message_id is not None

    await timed.run(lambda: asyncio.gather(*(worker() for _ in range(window))))
    await provider.aclose()
    return ok


async def smpp34_run(port: int, creds: tuple[str, str], n: int, window: int, s: float) -> int:
    import smpp34

    client = smpp34.Client(
        "127.0.0.1", port, creds[0], creds[1], bind_type="TRX", window_size=window
    )
    smsc = await client.connect()
    pending = iter(range(n))
    ok = 0
    deadline = time.monotonic() + s

    async def worker() -> None:
        nonlocal ok
        for _ in pending:
            if time.monotonic() > deadline:
                return
            resp = await smsc.submit_sm(TO, BODY.encode(), source_addr="bench")
            ok += resp.is_success

    await timed.run(lambda: asyncio.gather(*(worker() for _ in range(window))))
    await smsc.unbind()
    await client.stop()
    return ok


async def aiosmpplib_run(port: int, creds: tuple[str, str], n: int, seconds: float) -> int:
    import aiosmpplib

    done = asyncio.Event()

    class Broker(aiosmpplib.AbstractBroker):  # type: ignore[misc]
        """aiosmpplib's in-memory broker without its 2,500-message cap."""

        def __init__(self) -> None:
            self.queue: asyncio.Queue[Any] = asyncio.Queue()

        async def enqueue(self, message: Any) -> None:
            await self.queue.put(message)

        async def dequeue(self) -> Any:
            return await self.queue.get()

    class Hook(aiosmpplib.AbstractHook):  # type: ignore[misc]
        ok = 0

        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            pass

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, aiosmpplib.SubmitSmResp):
                Hook.ok += smpp_message.command_status == aiosmpplib.SmppCommandStatus.ESME_ROK
                if Hook.ok >= n:
                    done.set()

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            pass

    esme = aiosmpplib.ESME(
        smsc_host="127.0.0.1",
        smsc_port=port,
        system_id=creds[0],
        password=creds[1],
        hook=Hook(),
        broker=Broker(),
        log_level="ERROR",
    )
    await esme.connect()
    for i in range(n):
        await esme.broker.enqueue(
            aiosmpplib.SubmitSm(
                short_message=BODY,
                source=aiosmpplib.PhoneNumber("bench"),
                destination=aiosmpplib.PhoneNumber(TO),
                registered_delivery=0,
                log_id=str(i),
            )
        )

    async def wait() -> None:
        task = asyncio.create_task(esme.start())
        try:
            await asyncio.wait_for(done.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            await esme.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    await timed.run(wait)
    return Hook.ok


def run_queue_wait() -> float:
    """Seconds the main thread (the event loop's) was runnable but waiting for a CPU (Linux
    schedstat; 0 where there is none). smpp34's Rust threads are not counted."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    return 0.0


class _Timer:
    wall = 0.0
    cpu = 0.0
    #: of cpu, the time in the kernel (mostly send/recv on the socket)
    system = 0.0
    #: of wall, the time the client was ready to run but another process had the CPU
    waiting = 0.0

    async def run(self, work: Callable[[], Awaitable[Any]]) -> None:
        start, wall, waited = os.times(), time.perf_counter(), run_queue_wait()
        await work()
        end = os.times()
        self.wall = time.perf_counter() - wall
        self.waiting = run_queue_wait() - waited
        self.system = end.system - start.system
        self.cpu = end.user - start.user + self.system


timed = _Timer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    n, window = min(args.messages, 200_000), args.window
    port, http_port = free_port(), free_port()
    proc, url = start_emulator("smpp", port, "--option", f"http_port={http_port}")
    creds = ("smsgate", "emulator")
    from smsgate.eventloop import run

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{n} submit_sm, window {window}, GSM-7 {len(BODY)} characters, no receipts")
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("smsgate", lambda: run(smsgate_run(url, n, window, args.seconds))),
    ]
    try:
        import smpp34  # noqa: F401

        runs.append(("smpp34", lambda: run(smpp34_run(port, creds, n, window, args.seconds))))
    except ImportError:
        print("smpp34: not installed, skipped")
    try:
        import aiosmpplib  # noqa: F401

        runs.append(
            (
                "aiosmpplib",
                lambda: asyncio.run(aiosmpplib_run(port, creds, min(n, 3000), args.seconds)),
            )
        )
    except ImportError:
        print("aiosmpplib: not installed, skipped")
    try:
        for name, go in runs:
            before = requests.get(f"http://127.0.0.1:{http_port}/_emulator/messages", timeout=10)
            counted = before.json()["submits"]
            smsc_cpu = emulator_cpu(proc.pid)
            ok = go()
            smsc_cpu = emulator_cpu(proc.pid) - smsc_cpu
            after = requests.get(f"http://127.0.0.1:{http_port}/_emulator/messages", timeout=10)
            arrived = after.json()["submits"] - counted
            requests.post(f"http://127.0.0.1:{http_port}/_emulator/reset", timeout=10)
            rate = ok / timed.wall if timed.wall else 0.0
            print(
                f"{name:>10}: {ok} ok ({arrived} at the SMSC) in {timed.wall:.2f} s = "
                f"{rate:,.0f} submit_sm/s; client CPU {timed.cpu / max(ok, 1) * 1e6:.0f} µs "
                f"({timed.system / max(ok, 1) * 1e6:.0f} in the kernel), "
                f"SMSC CPU {smsc_cpu / max(arrived, 1) * 1e6:.0f} µs per submit; "
                f"client's loop waited {timed.waiting:.2f} s for a CPU"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
