"""``smsgate serve`` under load: POST /v1/messages with the worker running, then the batch endpoint.

    .venv/bin/python bench/api_throughput.py [--requests 40000] [--connections 64]
        [--batches 5] [--batch-size 10000] [--postgres URL] [--receipts]

Three processes on loopback, as in production: the Twilio emulator (``smsgate emulate twilio``),
the gateway (``smsgate serve`` with its in-process worker sending to the emulator) and this
client. The client is a bare asyncio HTTP/1.1 loop over keep-alive connections (a heavier
client would measure itself), each connection sending its next request as soon as the previous
answer is read; every answer must be 201. It prints:

- single submissions: requests/s over the timed run, latency p50/p99/max, and how many messages
  the worker sent (and, with ``--receipts``, receipts the gateway recorded) while the clients
  were submitting;
- the batch endpoint: messages/s per request of ``--batch-size`` messages;
- CPU seconds used by the gateway and the emulator, and a final check that every submitted
  message is stored (queue depth by status, read from /metrics).

``--receipts`` also has the emulator call back with delivery receipts (two per message), which
the same server verifies and records. The loops are bounded by count and the run by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import requests

TIMEOUT = 600.0


@dataclass
class Process:
    proc: subprocess.Popen[str]
    url: str
    #: the last lines it printed after starting (read all along: a full pipe would block it)
    output: deque[str]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def smsgate() -> list[str]:
    script = Path(sys.executable).with_name("smsgate")
    return [str(script)] if script.exists() else [shutil.which("smsgate") or "smsgate"]


def launch(args: list[str], marker: str) -> tuple[subprocess.Popen[str], str, deque[str]]:
    """Start ``smsgate ARGS``; returns it, the rest of its first line containing marker, and the
    last lines it prints from then on."""
    proc = subprocess.Popen(
        [*smsgate(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"smsgate {args[0]} exited early (status {proc.poll()})")
        if marker in line:
            output: deque[str] = deque(maxlen=40)
            threading.Thread(target=output.extend, args=(proc.stdout,), daemon=True).start()
            return proc, line.split(marker, 1)[1].strip(), output
    proc.kill()
    raise SystemExit(f"smsgate {args[0]} did not start within 60 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_emulator() -> tuple[Process, str]:
    """The emulator calls back only when the gateway gives it a callback URL (--receipts)."""
    port = free_port()
    proc, provider_url, output = launch(
        ["emulate", "twilio", "--port", str(port), "--callback-delay", "0.2"], "provider URL: "
    )
    return Process(proc, f"http://127.0.0.1:{port}", output), provider_url


def start_gateway(config: Path) -> Process:
    proc, rest, output = launch(
        ["serve", "--config", str(config), "--port", "0", "--log-level", "warning"],
        "smsgate serving ",
    )
    return Process(proc, rest.split()[0], output)


# -- the client --------------------------------------------------------------------------------


async def _connection(
    host: str, port: int, requests_: list[bytes], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests_:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def submit_requests(key: str, count: int, offset: int) -> list[bytes]:
    made = []
    for n in range(offset, offset + count):
        body = json.dumps(
            {"to": f"+1{201 + n % 10}555{100 + n % 100:04d}", "body": f"Your code is {n:06d}"}
        ).encode()
        made.append(
            b"POST /v1/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return made


async def load(
    url: str, key: str, count: int, connections: int, offset: int
) -> tuple[float, list[float], dict[int, int]]:
    host, port = url.removeprefix("http://").split(":")
    all_requests = submit_requests(key, count, offset)
    shares = [all_requests[i::connections] for i in range(connections)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(
            *(_connection(host, int(port), share, latencies, statuses) for share in shares)
        ),
        TIMEOUT,
    )
    return time.perf_counter() - started, latencies, statuses


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# -- gateway state -----------------------------------------------------------------------------


def metrics(url: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in requests.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        totals[name_labels] = float(value)
    return totals


def sent_total(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith("smsgate_messages_sent_total"))


def receipts_total(values: dict[str, float]) -> float:
    """Status webhooks answered (stored or duplicate; not refused or malformed)."""
    return sum(
        v
        for k, v in values.items()
        if k.startswith("smsgate_provider_webhooks_total")
        and 'kind="status"' in k
        and ('outcome="stored"' in k or 'outcome="duplicate"' in k)
    )


def stored_total(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith("smsgate_queue_depth"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help="sends the in-process worker keeps in flight (default: the "
        "config default, [worker] concurrency)",
    )
    parser.add_argument(
        "--postgres",
        help="a PostgreSQL database to run on, in a schema of its "
        "own dropped afterwards (default: a SQLite file in a temp folder)",
    )
    parser.add_argument(
        "--receipts", action="store_true", help="have the emulator call back with delivery receipts"
    )
    args = parser.parse_args()

    from smsgate.outbox import Outbox
    from smsgate.outbox.tables.server import ServerStore
    from smsgate.server.auth import create_key

    folder = Path(tempfile.mkdtemp(prefix="smsgate-bench-"))
    store = f"sqlite:///{folder / 'bench.db'}"
    schema = f"api_bench_{secrets.token_hex(4)}"
    if args.postgres:
        store = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
    emulator, provider_url = start_emulator()
    gateway = None
    try:
        config = folder / "smsgate.toml"
        config.write_text(
            f'store = "{store}"\n\n[providers.twilio]\nurl = "{provider_url}"\n\n'
            f"[server]\nrequest_receipts = {'true' if args.receipts else 'false'}\n"
            + (
                f"\n[worker]\nconcurrency = {args.worker_concurrency}\n"
                if args.worker_concurrency
                else ""
            )
        )
        with Outbox(store, migrate=True) as outbox:
            key = create_key(ServerStore.of(outbox.store), "bench").key
        gateway = start_gateway(config)
        print(
            f"gateway {gateway.url} ({'postgresql' if args.postgres else 'sqlite'} store), emulator {emulator.url}, "
            f"{args.connections} connections, receipts {'on' if args.receipts else 'off'}, "
            f"worker concurrency {args.worker_concurrency or 'default'}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )

        asyncio.run(load(gateway.url, key, 2_000, args.connections, 10_000_000))  # warm-up
        before = metrics(gateway.url)
        cpu_gateway, cpu_emulator = gateway.cpu_seconds(), emulator.cpu_seconds()
        seconds, latencies, statuses = asyncio.run(
            load(gateway.url, key, args.requests, args.connections, 0)
        )
        after = metrics(gateway.url)
        rate = args.requests / seconds
        print(
            f"POST /v1/messages: {args.requests} requests in {seconds:.2f} s = {rate:,.0f}/s; "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms; statuses {statuses}"
        )
        sent = sent_total(after) - sent_total(before)
        receipts = receipts_total(after) - receipts_total(before)
        print(
            f"  the worker sent {sent:,.0f} messages meanwhile ({sent / seconds:,.0f}/s)"
            + (
                f", {receipts:,.0f} receipts recorded ({receipts / seconds:,.0f}/s)"
                if args.receipts
                else ""
            )
            + f"; CPU: gateway {gateway.cpu_seconds() - cpu_gateway:.1f} s, "
            f"emulator {emulator.cpu_seconds() - cpu_emulator:.1f} s"
        )

        rates = []
        cpu_gateway = gateway.cpu_seconds()
        for b in range(args.batches):
            messages = [
                {"to": f"+4477009{n:05d}", "body": f"Batch {b} message {n}"}
                for n in range(args.batch_size)
            ]
            started = time.perf_counter()
            answer = requests.post(
                gateway.url + "/v1/messages/batch",
                json={"messages": messages},
                timeout=TIMEOUT,
                headers={"Authorization": f"Bearer {key}"},
            )
            elapsed = time.perf_counter() - started
            body = answer.json()
            if answer.status_code != 200 or body["accepted"] != args.batch_size:
                raise SystemExit(f"batch {b} failed: {answer.status_code} {str(body)[:300]}")
            rates.append(args.batch_size / elapsed)
        if rates:
            print(
                f"POST /v1/messages/batch: {args.batches} x {args.batch_size} messages, "
                f"{min(rates):,.0f}..{max(rates):,.0f} messages/s "
                f"(median {sorted(rates)[len(rates) // 2]:,.0f}); gateway CPU "
                f"{gateway.cpu_seconds() - cpu_gateway:.1f} s"
            )

        expected = 2_000 + args.requests + args.batches * args.batch_size
        stored = stored_total(metrics(gateway.url))
        print(
            f"stored: {stored:,.0f} of {expected:,} submitted"
            + ("" if stored == expected else "  <-- MISSING MESSAGES")
        )
        ok = statuses.get(201, 0) == args.requests and stored == expected
        started = time.perf_counter()
        code = gateway.stop()
        gateway_output = gateway.output
        gateway = None
        print(
            f"gateway stopped with status {code}, {time.perf_counter() - started:.1f} s "
            f"after SIGTERM; load average {os.getloadavg()[0]:.2f}"
        )
        if not ok or code != 0:
            print("the gateway's last lines:", *gateway_output, sep="\n  ")
            raise SystemExit(1)
    finally:
        if gateway is not None:  # the run failed before the gateway was stopped
            gateway.stop()
            print("the gateway's last lines:", *gateway.output, sep="\n  ")
        emulator.stop()
        shutil.rmtree(folder, ignore_errors=True)
        if args.postgres:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
