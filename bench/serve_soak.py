"""A soak of ``smsgate serve``: a steady rate of requests for a long while, its resident memory
and open file descriptors printed every minute (both should level off).

    .venv/bin/python bench/serve_soak.py [--minutes 30] [--rate 100] [--every 60]
        [--postgres URL] [--trace FILE]

Processes on loopback, as in production: the Twilio emulator (``smsgate emulate twilio``, with
delivery receipts called back to the gateway), the gateway (``smsgate serve`` with its
in-process worker) and this client. At the start of every second the client sends a burst of
``--rate`` requests from a pool of 16 threads that is replaced every 15 s (so the server sees
connections come and go): one in four is ``POST /v1/messages``, the others reads
(``GET /v1/messages/{id}``, ``GET /v1/messages``, ``GET /v1/webhooks``), which the server runs
on its thread pool. Every ``--every`` seconds it prints the gateway's resident memory
(VmRSS, and its anonymous part RssAnon), its open descriptors (all, and those on the SQLite
files), requests answered and failed, and messages sent and delivered. The run is bounded by
``--minutes`` and the request count by rate x duration. ``--trace FILE`` runs the gateway
under ``bench/soak_trace.py`` (tracemalloc, object counts, SQLite's and the allocator's
memory), to find what grows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from emulator_process import free_port, smsgate_command, start_emulator


def start_gateway(
    config: Path, trace: str | None, every: float
) -> tuple[subprocess.Popen[str], str, deque[str]]:
    command = smsgate_command()
    if trace:
        command = [
            sys.executable,
            str(Path(__file__).with_name("soak_trace.py")),
            trace,
            str(every),
        ]
    proc = subprocess.Popen(
        [*command, "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("smsgate serving http://127.0.0.1:"):
        raise SystemExit(f"smsgate serve did not start: {first!r}")
    output: deque[str] = deque(maxlen=20)
    threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True).start()
    return proc, first.split()[2], output


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` in MB: all of it, and its anonymous part (the heap; the rest
    is mapped files: code, libraries, SQLite's shared WAL index)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0)


def descriptors(pid: int, database: str | None) -> tuple[int, int]:
    """Open descriptors of ``pid``: all of them, and those on the SQLite database's files."""
    total = on_db = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        total += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if database and target.startswith(database):
            on_db += 1
    return total, on_db


class Client:
    """Requests at a steady rate; counts answers and failures."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.ids: deque[str] = deque(maxlen=1000)
        self.answered = 0
        self.failed = 0
        self.failures: deque[str] = deque(maxlen=5)
        self.lock = threading.Lock()
        self.counter = itertools.count()

    def one(self, session: requests.Session) -> None:
        n = next(self.counter)
        try:
            if n % 4 == 0 or not self.ids:
                response = session.post(
                    f"{self.url}/v1/messages",
                    json={"to": f"+1555558{n % 10000:04d}", "body": f"soak {n}"},
                    timeout=10,
                )
                if response.status_code == 201:
                    self.ids.append(response.json()["id"])
            elif n % 4 == 1:
                response = session.get(
                    f"{self.url}/v1/messages/{random.choice(self.ids)}", timeout=10
                )
            elif n % 4 == 2:
                response = session.get(f"{self.url}/v1/messages?limit=20", timeout=10)
            else:
                response = session.get(f"{self.url}/v1/webhooks", timeout=10)
            ok = response.status_code < 400
            detail = f"{response.status_code} {response.text[:120]}"
        except requests.RequestException as exc:
            ok, detail = False, type(exc).__name__
        with self.lock:
            if ok:
                self.answered += 1
            else:
                self.failed += 1
                self.failures.append(detail)


def metric(url: str, name: str) -> float | None:
    """The sum of a counter's series; None when the gateway is too busy to answer in time
    (a soak reports on, it does not stop on one slow scrape)."""
    try:
        text = requests.get(f"{url}/metrics", timeout=30).text
    except requests.RequestException:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def _count(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=100, help="requests per second")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between reports")
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of a SQLite file")
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="run the gateway under tracemalloc (bench/soak_trace.py), its growth appended "
        "to FILE every --every seconds (slower: figures are for finding a leak, not for RSS)",
    )
    args = parser.parse_args()
    if not 1 <= args.rate <= 2000 or not 0 < args.minutes <= 240:
        raise SystemExit("--rate must be 1..2000 and --minutes 0..240 (a bounded run)")
    folder = Path(tempfile.mkdtemp(prefix="smsgate-soak-"))
    database = None if args.postgres else str(folder / "soak.db")
    store = args.postgres or f"sqlite:///{database}"
    if args.postgres:
        joiner = "&" if "?" in store else "?"
        store = f"{store}{joiner}schema=smsgate_soak_{secrets.token_hex(4)}"
    emulator, provider_url = start_emulator(
        "twilio", free_port(), "--callback-delay", "0.5", timeout=60
    )
    # keep reading what it prints: a full pipe would stop it
    if emulator.stdout is not None:
        threading.Thread(target=emulator.stdout.read, daemon=True).start()
    gateway = None
    try:
        config = folder / "smsgate.toml"
        config.write_text(
            f'store = "{store}"\n\n[providers.twilio]\nurl = "{provider_url}"\n'
            "\n[server]\nrequest_receipts = true\n"
        )
        subprocess.run([*smsgate_command(), "db", "upgrade", "--config", str(config)], check=True)
        key = subprocess.run(
            [*smsgate_command(), "keys", "create", "soak", "--config", str(config)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        gateway, url, output = start_gateway(config, args.trace, args.every)
        client = Client(url, key)
        print(
            f"soak of smsgate serve ({'postgresql' if args.postgres else 'sqlite'}): "
            f"{args.rate} req/s for {args.minutes:g} min, a report every {args.every:g} s"
        )
        print(
            f"{'minute':>6} {'RSS MB':>7} {'anon MB':>7} {'fds':>5} {'db fds':>6} {'answered':>9} "
            f"{'failed':>7} {'sent':>7} {'delivered':>9}"
        )
        start = time.monotonic()
        end = start + args.minutes * 60
        next_report = start
        pool: ThreadPoolExecutor | None = None
        pool_started = 0.0
        local = threading.local()

        def request() -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.headers.update(client.headers)
            client.one(session)

        tick = start
        while True:
            now = time.monotonic()
            if now >= next_report:
                rss, anon = rss_mb(gateway.pid)
                total, on_db = descriptors(gateway.pid, database)
                sent = metric(url, "smsgate_messages_sent_total")
                delivered = metric(url, "smsgate_messages_delivered_total")
                print(
                    f"{(now - start) / 60:6.1f} {rss:7.1f} {anon:7.1f} {total:5d} "
                    f"{on_db if database else '-':>6} {client.answered:9,d} {client.failed:7,d} "
                    f"{_count(sent):>7} {_count(delivered):>9}",
                    flush=True,
                )
                next_report += args.every
            if now >= end:
                break
            if pool is None or now - pool_started > 15:
                # a new pool of client threads (and connections), the old one left to finish
                if pool is not None:
                    pool.shutdown(wait=False)
                pool, pool_started = ThreadPoolExecutor(16), now
            for _ in range(args.rate):
                pool.submit(request)
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
            if gateway.poll() is not None:
                raise SystemExit(f"smsgate serve exited: {''.join(output)}")
        if pool is not None:
            pool.shutdown(wait=True)
        if client.failures:
            print("last failures:", *client.failures, sep="\n  ")
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
