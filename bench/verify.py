"""``smsgate serve`` verifying: start-and-check pairs per second through the API, on SQLite.

    .venv/bin/python bench/verify.py [--pairs 10000] [--connections 32] [--synchronous full]

Two processes on loopback: the gateway (``smsgate serve`` with ``[verify]``, no providers, so the
texts stay queued in the outbox) and this client. Each client connection loops: ``POST
/v1/verifications`` for a new number, then ``POST /v1/verifications/{id}/check`` with the right
code, and counts a pair only when the check answers ``valid: true``. The client learns the code
the way only the server secret allows: it reads the verification's salt from the store and
derives the code with :func:`smsgate.verify.codes.derive_code` (the bench wrote the secret).

Every request comes from 127.0.0.1, so the per-IP buckets are turned off (they would stop one
address at 50 starts per 10 minutes, which is their point); the per-number buckets, the country
rules, the pumping detector (every prefix converts, so none is blocked) and the decision log all
run. Prints pairs/s, pair latency p50/p99/max, each request's p50/p99, and the gateway's CPU.
The loops are bounded by count and the run by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import phonenumbers

TIMEOUT = 600.0
SECRET = "bench-secret-" + "s" * 40


def smsgate() -> list[str]:
    script = Path(sys.executable).with_name("smsgate")
    return [str(script)] if script.exists() else [shutil.which("smsgate") or "smsgate"]


def start_gateway(config: Path) -> tuple[subprocess.Popen[str], str, deque[str]]:
    proc = subprocess.Popen(
        [*smsgate(), "serve", "--config", str(config), "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"smsgate serve exited early (status {proc.poll()})")
        if "smsgate serving " in line:
            output: deque[str] = deque(maxlen=40)
            threading.Thread(target=output.extend, args=(proc.stdout,), daemon=True).start()
            return proc, line.split("smsgate serving ", 1)[1].split()[0], output
    proc.kill()
    raise SystemExit("smsgate serve did not start within 60 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def numbers(count: int) -> list[str]:
    """``count`` distinct valid US mobile-or-fixed numbers over many area codes."""
    found: list[str] = []
    area = 201
    line = 0
    while len(found) < count:
        candidate = f"+1{area}{234 + line // 10000:03d}{line % 10000:04d}"
        line += 1
        if line % 2000 == 0:
            area = 201 + (area - 200) % 780
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            found.append(candidate)
    return found


def request(path: str, key: str, body: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def _connection(
    host: str,
    port: int,
    key: str,
    mine: list[str],
    db: sqlite3.Connection,
    stats: dict[str, list[float]],
    failures: list[str],
) -> None:
    from smsgate.verify.codes import derive_code

    reader, writer = await asyncio.open_connection(host, port)
    try:
        for number in mine:
            began = time.perf_counter()
            writer.write(request("/v1/verifications", key, {"to": number}))
            status, body = await _answer(reader)
            started = time.perf_counter()
            if status != 201:
                failures.append(f"start {status} {body[:200]!r}")
                continue
            ident = json.loads(body)["id"]
            salt, length = db.execute(
                "SELECT salt, code_length FROM smsgate_verifications WHERE id = ?", (ident,)
            ).fetchone()
            code = derive_code(SECRET.encode(), ident, salt, length)
            looked = time.perf_counter()
            writer.write(request(f"/v1/verifications/{ident}/check", key, {"code": code}))
            status, body = await _answer(reader)
            done = time.perf_counter()
            if status != 200 or not json.loads(body)["valid"]:
                failures.append(f"check {status} {body[:200]!r}")
                continue
            stats["start"].append(started - began)
            stats["check"].append(done - looked)
            stats["pair"].append(done - began - (looked - started))
    finally:
        writer.close()


async def load(
    url: str, key: str, store: Path, batch: list[str], connections: int
) -> tuple[float, dict[str, list[float]], list[str]]:
    host, port = url.removeprefix("http://").split(":")
    stats: dict[str, list[float]] = {"start": [], "check": [], "pair": []}
    failures: list[str] = []
    dbs = [sqlite3.connect(f"file:{store}?mode=ro", uri=True) for _ in range(connections)]
    began = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _connection(
                        host, int(port), key, batch[i::connections], dbs[i], stats, failures
                    )
                    for i in range(connections)
                )
            ),
            TIMEOUT,
        )
    finally:
        for db in dbs:
            db.close()
    return time.perf_counter() - began, stats, failures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--synchronous",
        default="full",
        choices=["full", "normal"],
        help="the SQLite store's synchronous option (full: every commit waits for the disk)",
    )
    args = parser.parse_args()

    from smsgate.outbox import Outbox
    from smsgate.outbox.tables.server import ServerStore
    from smsgate.server.auth import create_key

    folder = Path(tempfile.mkdtemp(prefix="smsgate-verify-bench-"))
    db_path = folder / "bench.db"
    store = f"sqlite:///{db_path}?synchronous={args.synchronous}"
    config = folder / "smsgate.toml"
    config.write_text(
        f'store = "{store}"\n\n[verify]\nsecret = "{SECRET}"\n\n'
        '[verify.limits]\nip_starts = "off"\nip_checks = "off"\n'
    )
    warmup = 500
    all_numbers = numbers(args.pairs + warmup)
    with Outbox(store, migrate=True) as outbox:
        key = create_key(ServerStore.of(outbox.store), "bench").key
    proc, url, output = start_gateway(config)
    ok = False
    try:
        print(
            f"gateway {url} (sqlite, synchronous={args.synchronous}), {args.connections} "
            f"connections; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
        asyncio.run(load(url, key, db_path, all_numbers[:warmup], args.connections))
        cpu = cpu_seconds(proc.pid)
        seconds, stats, failures = asyncio.run(
            load(url, key, db_path, all_numbers[warmup:], args.connections)
        )
        used = cpu_seconds(proc.pid) - cpu
        pairs = len(stats["pair"])
        print(
            f"{pairs} start-and-check pairs in {seconds:.2f} s = {pairs / seconds:,.0f} pairs/s "
            f"({2 * pairs / seconds:,.0f} requests/s); pair latency "
            f"p50 {percentile(stats['pair'], 0.5) * 1e3:.1f} ms, "
            f"p99 {percentile(stats['pair'], 0.99) * 1e3:.1f} ms, "
            f"max {max(stats['pair']) * 1e3:.1f} ms"
        )
        for name in ("start", "check"):
            print(
                f"  {name}: p50 {percentile(stats[name], 0.5) * 1e3:.1f} ms, "
                f"p99 {percentile(stats[name], 0.99) * 1e3:.1f} ms"
            )
        print(f"  gateway CPU {used:.1f} s ({used / pairs * 1e6:.0f} µs per pair)")
        if failures:
            print(f"{len(failures)} failures, first: {failures[0]}")
        ok = not failures and pairs == args.pairs
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    if not ok or code != 0:
        print("the gateway's last lines:", *output, sep="\n  ")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
