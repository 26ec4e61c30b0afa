"""Bulk direct sends against one loopback Twilio-compatible server: four clients, one run.

    .venv/bin/python bench/bulk_direct.py [--messages 20000] [--in-flight 100]

The server is smsgate's own Twilio emulator, started as a separate process with
``smsgate emulate twilio --port N`` (so it has its own core and its CPU is not charged to the
clients), with no callbacks configured. Each client sends the same messages (unique OTP bodies
to 1,000 recipients in the fictional 555-01xx ranges) and is checked: every message must be
accepted, and the emulator must have recorded exactly that many. The clients:

- ``Gateway.send_many``: smsgate, building the ``Message`` objects inside the timed region;
- the seeds' pattern: ``requests.post`` per message in ``ThreadPoolExecutor(10)``;
- the official twilio SDK's async client: ``create_async`` on ``AsyncTwilioHttpClient``, 100 in
  flight (100 workers pulling from one iterator);
- a bare aiohttp loop: one session, 100 workers, form POST + JSON parse: a general-purpose
  client at its leanest (smsgate's own transport is a smaller HTTP/1.1 client, not aiohttp), and
  the emulator's own ceiling when the emulator saturates first.

For each client it prints messages/s, client CPU per message (``time.process_time`` delta / n,
every thread of this process) and the emulator's CPU use over the same interval (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from emulator_process import free_port, start_emulator

SENDER = "+15005550006"
TARGETS = {
    "seeds' pattern": 5.0,
    "twilio SDK async": 1.3,
    "bare aiohttp": 0.8,
}


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    provider_url: str
    account_sid: str
    auth_token: str

    @property
    def messages_url(self) -> str:
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def reset(self) -> None:
        requests.post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def count(self) -> int:
        answer = requests.get(f"{self.url}/_emulator/messages", timeout=60)
        answer.raise_for_status()
        return int(answer.json()["count"])

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the emulator process so far (Linux /proc), else None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Figure:
    name: str
    n: int
    ok: int
    seconds: float
    cpu: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def cpu_per_message_us(self) -> float:
        return self.cpu / self.n * 1e6


def start_server() -> Server:
    port = free_port()
    proc, provider_url = start_emulator("twilio", port)
    credentials = provider_url.removeprefix("twilio://").split("@", 1)[0]
    sid, _, token = credentials.partition(":")
    return Server(proc, f"http://127.0.0.1:{port}", provider_url, sid, token)


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(10)


def recipients(count: int = 1000) -> list[str]:
    # area codes 201..210, each with the 100 fictional numbers 555-0100..555-0199
    return [f"+1{201 + i // 100}555{100 + i % 100:04d}" for i in range(count)]


def workload(n: int) -> list[tuple[str, str]]:
    numbers = recipients()
    return [
        (numbers[i % len(numbers)], f"Your code is {i:06d}. It expires in 10 minutes.")
        for i in range(n)
    ]


# -- the four clients -----------------------------------------------------------------------


def run_send_many(server: Server, work: list[tuple[str, str]], in_flight: int) -> int:
    import smsgate

    url = f"{server.provider_url}&max_connections={in_flight}"
    with smsgate.Gateway.from_url(url) as gateway:
        messages = [smsgate.Message(to=to, body=body) for to, body in work]
        results = gateway.send_many(messages)
    return sum(r.ok for r in results)


def run_seed_pattern(server: Server, work: list[tuple[str, str]], in_flight: int) -> int:
    """Seed 002's bulk helper, aimed at Twilio: a module-level requests call per message."""
    del in_flight  # the seeds use 10 threads
    auth = (server.account_sid, server.auth_token)

    def send_sms(to_number: str, text: str) -> dict[str, object]:
        response = requests.post(
            server.messages_url,
            data={"To": to_number, "From": SENDER, "Body": text},
            auth=auth,
            timeout=10,
        )
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def _send(item: tuple[str, str]) -> bool:
        try:
            send_sms(*item)
            return True
        except Exception:
            return False

    with ThreadPoolExecutor(max_workers=10) as pool:
        return sum(pool.map(_send, work))


def run_twilio_async(server: Server, work: list[tuple[str, str]], in_flight: int) -> int:
    from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
    from twilio.http.async_http_client import (  # type: ignore[import-untyped]
        AsyncTwilioHttpClient,
    )
    from twilio.rest import Client  # type: ignore[import-untyped]

    async def main() -> int:
        http = AsyncTwilioHttpClient()
        client = Client(server.account_sid, server.auth_token, http_client=http)
        client.api.base_url = server.url
        messages = client.messages
        pending = iter(work)
        ok = 0

        async def worker() -> None:
            nonlocal ok
            for to, body in pending:
                try:
                    await messages.create_async(to=to, from_=SENDER, body=body)
                    ok += 1
                except TwilioRestException:
                    pass

        try:
            await asyncio.gather(*(worker() for _ in range(in_flight)))
        finally:
            await http.close()
        return ok

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's aiohttp.BasicAuth
        return asyncio.run(main())


def run_bare_aiohttp(server: Server, work: list[tuple[str, str]], in_flight: int) -> int:
    import aiohttp

    token = f"{server.account_sid}:{server.auth_token}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}
    url = server.messages_url

    async def main() -> int:
        connector = aiohttp.TCPConnector(limit=in_flight)
        ok = 0
        pending = iter(work)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal ok
                for to, body in pending:
                    form = {"To": to, "From": SENDER, "Body": body}
                    async with session.post(url, data=form, headers=headers) as response:
                        data = json.loads(await response.read())
                        if response.status == 201 and data.get("sid"):
                            ok += 1

            await asyncio.gather(*(worker() for _ in range(in_flight)))
        return ok

    return asyncio.run(main())


CLIENTS: list[tuple[str, Callable[[Server, list[tuple[str, str]], int], int]]] = [
    ("Gateway.send_many", run_send_many),
    ("seeds' pattern", run_seed_pattern),
    ("twilio SDK async", run_twilio_async),
    ("bare aiohttp", run_bare_aiohttp),
]


def measure(
    name: str,
    fn: Callable[[Server, list[tuple[str, str]], int], int],
    server: Server,
    work: list[tuple[str, str]],
    in_flight: int,
) -> Figure:
    """Send ``work`` with one client; check that every message was accepted and recorded."""
    server.reset()
    server_before = server.cpu_seconds()
    cpu_before = time.process_time()
    started = time.perf_counter()
    ok = fn(server, work, in_flight)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    server_after = server.cpu_seconds()
    server_cpu = None
    if server_before is not None and server_after is not None:
        server_cpu = server_after - server_before
    stored = server.count()
    if ok != len(work) or stored != len(work):
        raise SystemExit(f"{name}: {ok} of {len(work)} accepted, the emulator recorded {stored}")
    server.reset()
    return Figure(name, len(work), ok, seconds, cpu, server_cpu)


def combine(parts: list[Figure]) -> Figure:
    server = [p.server_cpu for p in parts]
    return Figure(
        parts[0].name,
        sum(p.n for p in parts),
        sum(p.ok for p in parts),
        sum(p.seconds for p in parts),
        sum(p.cpu for p in parts),
        None if None in server else sum(s for s in server if s is not None),
    )


def report(figures: list[Figure], slices: int) -> None:
    best = {f.name: f for f in figures}
    print()
    print(f"totals ({slices} interleaved slice(s) per client):")
    print(
        f"{'client':<20} {'msg/s':>9} {'client CPU/msg':>15} {'emulator CPU/msg':>17} "
        f"{'emulator busy':>14}"
    )
    for f in best.values():
        if f.server_cpu is None:
            server_per, busy = "-", "-"
        else:
            server_per = f"{f.server_cpu / f.n * 1e6:,.0f} µs"
            busy = f"{f.server_cpu / f.seconds:.0%}"
        print(
            f"{f.name:<20} {f.rate:>9,.0f} {f.cpu_per_message_us:>12,.0f} µs {server_per:>17} "
            f"{busy:>14}"
        )
    ours = best["Gateway.send_many"]
    print()
    print("Gateway.send_many against the targets (msg/s; client CPU/msg in brackets):")
    for name, target in TARGETS.items():
        ratio = ours.rate / best[name].rate
        cpu_ratio = best[name].cpu_per_message_us / ours.cpu_per_message_us
        verdict = "met" if ratio >= target else "MISSED"
        print(
            f"  vs {name:<18} {ratio:5.2f}x [{cpu_ratio:4.2f}x]  (target >= {target:g}x: {verdict})"
        )
    print(
        "\n(emulator busy: the share of one core the emulator process used while that client "
        "ran;\n near 100% means the emulator, not the client, set the pace.)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="per client")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="send each client's messages in this many slices, interleaved with\n"
        "the other clients' slices, so a noisy neighbour hits every client",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="unmeasured messages per client before the measured slices",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the clients whose name contains this (repeatable)",
    )
    args = parser.parse_args(argv)
    clients = [
        (name, fn)
        for name, fn in CLIENTS
        if not args.only or any(p.lower() in name.lower() for p in args.only)
    ]
    work = workload(args.messages)
    size = -(-len(work) // args.slices)
    slices = [work[i : i + size] for i in range(0, len(work), size)]
    server = start_server()
    print(
        f"emulator: {server.url} (pid {server.proc.pid}); {os.cpu_count()} CPUs; "
        f"{args.messages:,} messages per client in {len(slices)} slice(s), "
        f"{args.in_flight} in flight"
    )
    parts: dict[str, list[Figure]] = {name: [] for name, _ in clients}
    try:
        for _, fn in clients:
            if args.warmup:
                fn(server, workload(args.warmup), args.in_flight)
        for number, chunk in enumerate(slices, 1):
            for name, fn in clients:
                figure = measure(name, fn, server, chunk, args.in_flight)
                print(
                    f"  slice {number}  {name:<20} {figure.rate:>8,.0f} msg/s  "
                    f"{figure.cpu_per_message_us:>6,.0f} µs CPU/msg",
                    flush=True,
                )
                parts[name].append(figure)
    finally:
        stop_server(server)
    if len(clients) == len(CLIENTS):
        report([combine(p) for p in parts.values()], len(slices))
    else:
        for p in parts.values():
            total = combine(p)
            print(
                f"{total.name:<20} {total.rate:>9,.0f} msg/s "
                f"{total.cpu_per_message_us:>8,.0f} µs CPU/msg"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
