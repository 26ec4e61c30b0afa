"""Bulk direct sends against one loopback Twilio-compatible server: four clients, one run.

    .venv/bin/python bench/bulk_direct.py [--messages 20000] [--in-flight 100] [--scheme http]

The server runs in a separate process (so its CPU is not charged to the clients) and is the
same for every client. By default it is the benchmarks' lean Twilio fake (``--server fake``,
``bench/twilio_fake.py``): it answers 201 with the message resource Twilio returns and costs a
fraction of smsgate's aiohttp emulator per request, so the clients, not the server, set the
pace; on a machine shared with other work a server that takes as much CPU per request as a
client compresses every ratio towards 1.
``--server emulator`` runs smsgate's full emulator instead. It listens twice: on plain HTTP and
on TLS with a certificate from a CA of the bench's own (made with ``cryptography`` at start),
and every client runs over both (``--scheme`` picks one). Every client trusts that CA and only
it: ``Gateway`` through its ``ca_file=`` option, the others through ``SSL_CERT_FILE`` (which
OpenSSL's default verify paths read). Each client sends the same messages (unique OTP bodies to
1,000 recipients in the fictional 555-01xx ranges) and is checked: every message must be
accepted, and the server must have recorded exactly that many. Every client has the same
limits: ``--in-flight`` requests at once (100) over at most that many connections (smsgate's
``max_connections``, aiohttp's default connector limit of 100, which the twilio SDK's client
uses too), except the seeds' pattern, which is the seeds' own 10 threads. Each client runs on
the event loop it uses by default: smsgate on uvloop, aiohttp and the SDK on asyncio's.
The clients:

- ``Gateway.send_many``: smsgate, building the ``Message`` objects inside the timed region;
- the seeds' pattern: ``requests.post`` per message in ``ThreadPoolExecutor(10)``;
- the official twilio SDK's async client: ``create_async`` on ``AsyncTwilioHttpClient``, 100 in
  flight (100 workers pulling from one iterator);
- a bare aiohttp loop: one session, 100 workers, form POST + JSON parse: a general-purpose
  client at its leanest (smsgate's own transport is a smaller HTTP/1.1 client, not aiohttp), and
  the server's own ceiling when the server saturates first.

For each client it prints messages/s, client CPU per message (``time.process_time`` delta / n,
every thread of this process) and the server's CPU use over the same interval (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from emulator_process import free_port, read_provider_url
from twilio_fake import SENDER, serve_fake

TARGETS = {
    "seeds' pattern": 5.0,
    "twilio SDK async": 3.0,
    "bare aiohttp": 2.0,
}


@dataclass
class Server:
    proc: subprocess.Popen[str]
    #: the server's plain-HTTP listener; ``base`` is where the clients send (HTTP or TLS)
    url: str
    tls_url: str
    provider_url: str
    account_sid: str
    auth_token: str
    ca_file: str
    base: str = ""

    @property
    def messages_url(self) -> str:
        return f"{self.base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def gateway_url(self, in_flight: int) -> str:
        url = self.provider_url.replace(f"base_url={self.url}", f"base_url={self.base}")
        url += f"&max_connections={in_flight}"
        if self.base.startswith("https:"):
            url += f"&ca_file={self.ca_file}"
        return url

    def reset(self) -> None:
        requests.post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def count(self) -> int:
        answer = requests.get(f"{self.url}/_emulator/messages", timeout=60)
        answer.raise_for_status()
        return int(answer.json()["count"])

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process so far (Linux /proc), else None."""
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


def own_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of our own and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.tls import OwnCA

    ca = OwnCA(directory, "bulk_direct bench CA")
    issued = ca.issue("127.0.0.1")
    return ca.pem, issued.cert, issued.key


def serve(kind: str, port: int, tls_port: int, cert: str, key: str) -> None:
    """The child process: the Twilio fake or emulator on ``port`` (HTTP) and ``tls_port`` (TLS)."""
    import ssl

    from smsgate.eventloop import run

    async def main() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        if kind == "fake":
            await serve_fake(port, tls_port, context, stop)
        else:
            await serve_emulator(port, tls_port, context, stop)

    run(main())


async def serve_emulator(
    port: int, tls_port: int, context: ssl.SSLContext, stop: asyncio.Event
) -> None:
    from aiohttp import web

    from smsgate.emulators import emulator_class

    emulator = emulator_class("twilio")()
    await emulator.start("127.0.0.1", port)
    assert emulator._runner is not None
    await web.TCPSite(
        emulator._runner, "127.0.0.1", tls_port, ssl_context=context, backlog=1024
    ).start()
    for line in emulator.describe():
        print(line, flush=True)
    await stop.wait()
    await emulator.stop()


def start_server(kind: str, ca: Path, cert: Path, key: str | Path) -> Server:
    port, tls_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(port), str(tls_port), str(cert), str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    provider_url = read_provider_url(proc, "twilio")
    credentials = provider_url.removeprefix("twilio://").split("@", 1)[0]
    sid, _, token = credentials.partition(":")
    url = f"http://127.0.0.1:{port}"
    tls_url = f"https://127.0.0.1:{tls_port}"
    return Server(proc, url, tls_url, provider_url, sid, token, str(ca), base=url)


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

    with smsgate.Gateway.from_url(server.gateway_url(in_flight)) as gateway:
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
            verify=server.ca_file,
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
        client.api.base_url = server.base
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
    import ssl

    import aiohttp

    token = f"{server.account_sid}:{server.auth_token}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}
    url = server.messages_url

    async def main() -> int:
        context = ssl.create_default_context(cafile=server.ca_file)
        connector = aiohttp.TCPConnector(limit=in_flight, ssl=context)
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
        raise SystemExit(f"{name}: {ok} of {len(work)} accepted, the server recorded {stored}")
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


def report(scheme: str, figures: list[Figure], slices: int) -> None:
    best = {f.name: f for f in figures}
    print()
    print(f"{scheme.upper()} totals ({slices} interleaved slice(s) per client):")
    print(
        f"{'client':<20} {'msg/s':>9} {'client CPU/msg':>15} {'server CPU/msg':>17} "
        f"{'server busy':>14}"
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
    print(
        f"{scheme.upper()}: Gateway.send_many against the targets (msg/s; client CPU/msg in brackets):"
    )
    for name, target in TARGETS.items():
        ratio = ours.rate / best[name].rate
        cpu_ratio = best[name].cpu_per_message_us / ours.cpu_per_message_us
        verdict = "met" if ratio >= target else "MISSED"
        print(
            f"  vs {name:<18} {ratio:5.2f}x [{cpu_ratio:4.2f}x]  (target >= {target:g}x: {verdict})"
        )
    print(
        "\n(server busy: the share of one core the server process used while that client "
        "ran;\n near 100% means the server, not the client, set the pace.)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="per client and scheme")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument(
        "--scheme",
        choices=["http", "https"],
        action="append",
        default=[],
        help="run over this scheme only (repeatable; default both)",
    )
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
    parser.add_argument(
        "--server",
        choices=["fake", "emulator"],
        default="fake",
        help="fake: the bench's lean Twilio fake (default), so the clients, not the\n"
        "server, set the pace; emulator: smsgate's full Twilio emulator",
    )
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, port, tls_port, cert, key = args.serve
        serve(kind, int(port), int(tls_port), cert, key)
        return 0
    clients = [
        (name, fn)
        for name, fn in CLIENTS
        if not args.only or any(p.lower() in name.lower() for p in args.only)
    ]
    schemes = args.scheme or ["http", "https"]
    work = workload(args.messages)
    size = -(-len(work) // args.slices)
    slices = [work[i : i + size] for i in range(0, len(work), size)]
    with tempfile.TemporaryDirectory() as directory:
        ca, cert, key = own_ca(Path(directory))
        # Before any client library builds its default TLS context (aiohttp does on import).
        os.environ["SSL_CERT_FILE"] = str(ca)
        server = start_server(args.server, ca, cert, key)
        print(
            f"server ({args.server}): {server.url} and {server.tls_url} (pid {server.proc.pid}); "
            f"{os.cpu_count()} CPUs; {args.messages:,} messages per client and scheme in "
            f"{len(slices)} slice(s), {args.in_flight} in flight"
        )
        try:
            for scheme in schemes:
                target = replace(server, base=server.url if scheme == "http" else server.tls_url)
                run_scheme(scheme, target, clients, slices, args)
        finally:
            stop_server(server)
    return 0


def run_scheme(
    scheme: str,
    server: Server,
    clients: list[tuple[str, Callable[[Server, list[tuple[str, str]], int], int]]],
    slices: list[list[tuple[str, str]]],
    args: argparse.Namespace,
) -> None:
    print(f"\n{scheme.upper()} ({server.base})")
    parts: dict[str, list[Figure]] = {name: [] for name, _ in clients}
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
    if len(clients) == len(CLIENTS):
        report(scheme, [combine(p) for p in parts.values()], len(slices))
        return
    for p in parts.values():
        total = combine(p)
        print(
            f"{total.name:<20} {total.rate:>9,.0f} msg/s "
            f"{total.cpu_per_message_us:>8,.0f} µs CPU/msg"
        )


if __name__ == "__main__":
    raise SystemExit(main())
