"""The durable path against the direct ones: 20,000 messages to a loopback Twilio-compatible server.

    .venv/bin/python bench/outbox_throughput.py [--messages 20000] [--rounds 2]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]   (or SMSGATE_TEST_POSTGRES_URL)

The server runs in a separate process, so its CPU is not charged to the clients. By default it
is the benchmarks' lean Twilio fake (``bench/twilio_fake.py``, about 40 µs of CPU per request);
``--server emulator`` runs smsgate's Twilio emulator (``smsgate emulate twilio``, about 200 µs).
On a 2-core machine the emulator, the worker and PostgreSQL compete for the cores, so with the
emulator the durable PostgreSQL round measures the emulator as much as the outbox; a provider's
API runs elsewhere in production. Each client sends the same messages (unique bodies to 1,000
fictional recipients, 100 requests in flight) and is checked: every message must be accepted,
and the server must have recorded exactly that many, none twice. Each round prints the server's
CPU per message too.

- ``outbox sqlite`` / ``outbox postgresql``: ``Outbox.submit_many`` then one in-process worker
  (``Outbox.arun_worker``, concurrency 100) until every message is recorded as sent. Timed from
  the first submit to the last result recorded (the last ``updated_at`` in the store). Every
  message is written four times on the way (the row, a "submitted" event, the crash-safety
  "sending" mark and event, and the result and its event).
- ``Gateway.send_many``: smsgate's direct path, nothing stored.
- ``twilio SDK async``: the official client, ``create_async`` on ``AsyncTwilioHttpClient``, 100
  in flight, nothing stored.

Rounds run the clients in turn; the best round of each is reported (a busy neighbour on a shared
machine slows a round, never speeds one up), with every round's figure shown as it runs, the
load average after it, and for PostgreSQL the CPU time of the server processes serving the
round (read from /proc, so only for a server on this host) and the deadlocks the server broke
meanwhile (each one stalls the worker's writes for the server's ``deadlock_timeout``). Wall
time on a busy machine varies with its load; CPU time per message does not, so the last line
compares the durable PostgreSQL path (this process and the server) with the SDK by that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from emulator_process import free_port, start_emulator
from twilio_fake import SENDER, start_fake

#: the durable path against the twilio SDK async, on SQLite and on PostgreSQL
TARGET = 1.0


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    provider_url: str
    sid: str
    token: str

    def reset(self) -> None:
        requests.post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def summary(self) -> tuple[int, int]:
        data = requests.get(f"{self.url}/_emulator/messages", timeout=120).json()
        return int(data["count"]), int(data["duplicates"])

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process so far (Linux /proc), else None."""
        return process_cpu(self.proc.pid)


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime, the 14th and 15th fields (the 12th and 13th after the name)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(kind: str) -> Server:
    port = free_port()
    proc, url = start_fake(port) if kind == "fake" else start_emulator("twilio", port)
    sid, _, token = url.removeprefix("twilio://").split("@", 1)[0].partition(":")
    return Server(proc, f"http://127.0.0.1:{port}", url, sid, token)


def workload(n: int, tag: str) -> list[tuple[str, str]]:
    numbers = [f"+1{201 + i // 100}555{100 + i % 100:04d}" for i in range(1000)]
    return [(numbers[i % 1000], f"Order {tag}-{i:06d} has shipped.") for i in range(n)]


# -- clients ----------------------------------------------------------------------------------


def run_outbox(server: Server, store: str, work: list[tuple[str, str]]) -> dict[str, float]:
    from smsgate.eventloop import run
    from smsgate.message import Status
    from smsgate.outbox import Outbox
    from smsgate.providers import create_provider

    with Outbox(store, migrate=True) as outbox:
        started = time.time()
        wall = time.perf_counter()
        report = outbox.submit_many({"to": to, "body": body} for to, body in work)
        submitted = time.perf_counter() - wall
        provider = create_provider(f"{server.provider_url}&max_connections=100")

        async def send() -> None:
            try:
                await outbox.arun_worker(
                    [provider], concurrency=100, batch_size=200, until_idle=True, poll_interval=0.01
                )
            finally:
                await provider.aclose()

        run(send())  # on uvloop, as Outbox.run_worker and `smsgate worker` run
        counts = outbox.counts()
        last = _last_update(outbox)
    if report.accepted != len(work) or counts.get(Status.SENT) != len(work):
        raise SystemExit(f"outbox: submitted {report.accepted}, sent {counts}")
    return {"seconds": last - started, "submit": submitted}


def _last_update(outbox: object) -> float:
    store = outbox.store  # type: ignore[attr-defined]
    with store._read() as tx:
        return float(tx.execute("SELECT max(updated_at) FROM smsgate_messages")[0][0])


def run_send_many(server: Server, work: list[tuple[str, str]]) -> dict[str, float]:
    import smsgate

    started = time.perf_counter()
    with smsgate.Gateway.from_url(f"{server.provider_url}&max_connections=100") as gateway:
        results = gateway.send_many([smsgate.Message(to=to, body=body) for to, body in work])
    seconds = time.perf_counter() - started
    if sum(r.ok for r in results) != len(work):
        raise SystemExit("send_many: not every message was accepted")
    return {"seconds": seconds}


def run_twilio_sdk(server: Server, work: list[tuple[str, str]]) -> dict[str, float]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
    from twilio.rest import Client  # type: ignore[import-untyped]

    async def main() -> int:
        http = AsyncTwilioHttpClient()
        client = Client(server.sid, server.token, http_client=http)
        client.api.base_url = server.url
        pending = iter(work)
        ok = 0

        async def worker() -> None:
            nonlocal ok
            for to, body in pending:
                await client.messages.create_async(to=to, from_=SENDER, body=body)
                ok += 1

        try:
            await asyncio.gather(*(worker() for _ in range(100)))
        finally:
            await http.close()
        return ok

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ok = asyncio.run(main())
    seconds = time.perf_counter() - started
    if ok != len(work):
        raise SystemExit("twilio SDK: not every message was accepted")
    return {"seconds": seconds}


# -- driver -----------------------------------------------------------------------------------


def postgres_store(base: str) -> tuple[str, str, Callable[[], None]]:
    """A store URL in a fresh schema, the application_name its connections carry, and a
    function dropping the schema."""
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    joiner = "&" if "?" in base else "?"

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return f"{base}{joiner}schema={schema}&application_name={schema}", schema, drop


class ServerCpu:
    """CPU time the PostgreSQL server processes of one application_name spent, read from /proc
    every 50 ms while they live (the server must run on this host). The durable path's cost is
    this plus the client's: wall-clock rounds on a shared machine vary with its load, CPU time
    per message does not."""

    def __init__(self, base: str, application: str) -> None:
        self._base = base
        self._application = application
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ServerCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def seconds(self) -> float | None:
        return sum(self._seen.values()) if self._seen else None

    def _watch(self) -> None:
        import psycopg

        with psycopg.connect(self._base, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (self._application,),
                ).fetchall()
                for (pid,) in rows:
                    used = process_cpu(pid)
                    if used is not None:  # else gone, or not on this host
                        self._seen[pid] = max(used, self._seen.get(pid, 0.0))


def deadlocks(base: str) -> int:
    """Deadlocks the server has broken in this database so far (each stalls a writer for the
    server's deadlock_timeout, a second by default): a round with any is a slow round. Other
    clients of the same database count too."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def paired(name: str, rounds: list[dict[str, float]]) -> str:
    """``name`` against the SDK within each round (run minutes apart at most, so under
    similar load), and the median: the best rounds of two clients may come from different
    loads."""
    ratios = [r["twilio SDK async"] / r[name] for r in rounds]
    listed = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
    return f"{listed}; median {statistics.median(ratios):.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("SMSGATE_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--server",
        choices=["fake", "emulator"],
        default="fake",
        help="fake: the benchmarks' lean Twilio fake (default); emulator: smsgate's\n"
        "Twilio emulator, which takes about as much CPU per request as a client",
    )
    args = parser.parse_args(argv)
    server = start_server(args.server)
    print(
        f"server ({args.server}) {server.url} (pid {server.proc.pid}); {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}; {args.messages:,} messages per client, "
        "100 in flight",
        flush=True,
    )
    folder = tempfile.mkdtemp(prefix="smsgate-bench-")
    clients: list[tuple[str, Callable[[list[tuple[str, str]]], dict[str, float]]]] = [
        (
            "outbox sqlite",
            lambda w: run_outbox(server, f"sqlite:///{folder}/{secrets.token_hex(4)}.db", w),
        ),
    ]
    drops: list[Callable[[], None]] = []
    if args.postgres:

        def run_pg(work: list[tuple[str, str]]) -> dict[str, float]:
            store, application, drop = postgres_store(args.postgres)
            drops.append(drop)
            before = deadlocks(args.postgres)
            with ServerCpu(args.postgres, application) as server_cpu:
                figure = run_outbox(server, store, work)
            figure["deadlocks"] = deadlocks(args.postgres) - before
            if server_cpu.seconds is not None:
                figure["server_cpu"] = server_cpu.seconds
            return figure

        clients.append(("outbox postgresql", run_pg))
    else:
        print("(no PostgreSQL: pass --postgres URL or set SMSGATE_TEST_POSTGRES_URL)")
    clients += [
        ("Gateway.send_many", lambda w: run_send_many(server, w)),
        ("twilio SDK async", lambda w: run_twilio_sdk(server, w)),
    ]
    best: dict[str, dict[str, float]] = {}
    rounds: list[dict[str, float]] = []  # each round's seconds by client
    try:
        for _, fn in clients:  # warm-up: imports, connection pools, the first sessions
            server.reset()
            fn(workload(300, "warm"))
        for round_ in range(1, args.rounds + 1):
            for name, fn in clients:
                server.reset()
                cpu, served = time.process_time(), server.cpu_seconds()
                figure = fn(workload(args.messages, f"r{round_}"))
                figure["cpu"] = time.process_time() - cpu
                after = server.cpu_seconds()
                if served is not None and after is not None:
                    extra_server = f", server {(after - served) / args.messages * 1e6:.0f} µs/msg"
                else:
                    extra_server = ""
                count, duplicates = server.summary()
                if count != args.messages or duplicates:
                    raise SystemExit(f"{name}: emulator recorded {count}, {duplicates} twice")
                rate = args.messages / figure["seconds"]
                extra = f" (submit {figure['submit']:.2f} s)" if "submit" in figure else ""
                extra += extra_server
                if "server_cpu" in figure:
                    server_us = figure["server_cpu"] / args.messages * 1e6
                    extra += f", + {server_us:.0f} µs CPU/msg in the PostgreSQL server"
                if "deadlocks" in figure:
                    extra += f", {figure['deadlocks']:.0f} deadlocks"
                cpu_us = figure["cpu"] / args.messages * 1e6
                print(
                    f"  round {round_}  {name:<18} {figure['seconds']:6.2f} s  {rate:>7,.0f} msg/s"
                    f"  {cpu_us:5.0f} µs CPU/msg  load {os.getloadavg()[0]:5.2f}{extra}",
                    flush=True,
                )
                if name not in best or figure["seconds"] < best[name]["seconds"]:
                    best[name] = figure
                if len(rounds) < round_:
                    rounds.append({})
                rounds[-1][name] = figure["seconds"]
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(10)
        for drop in drops:
            drop()
    print("\nbest round per client (first submit -> last result recorded for the outbox):")
    for name, figure in best.items():
        print(
            f"  {name:<18} {args.messages / figure['seconds']:>7,.0f} msg/s  "
            f"({figure['seconds']:.2f} s, {figure['cpu'] / args.messages * 1e6:.0f} µs CPU/msg "
            "in this process: client, store and worker; the server runs in its own)"
        )
    ratio = best["twilio SDK async"]["seconds"] / best["outbox sqlite"]["seconds"]
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"\ndurable SQLite vs twilio SDK async: {ratio:.2f}x (target >= {TARGET:g}x: {verdict})")
    print(f"  round by round: {paired('outbox sqlite', rounds)}")
    if "outbox postgresql" in best:
        ratio_pg = best["twilio SDK async"]["seconds"] / best["outbox postgresql"]["seconds"]
        verdict = "met" if ratio_pg >= TARGET else "MISSED"
        print(
            f"durable PostgreSQL vs twilio SDK async: {ratio_pg:.2f}x "
            f"(target >= {TARGET:g}x: {verdict})"
        )
        print(f"  round by round: {paired('outbox postgresql', rounds)}")
        pg, sdk = best["outbox postgresql"], best["twilio SDK async"]
        if "server_cpu" in pg:
            cost = (pg["cpu"] + pg["server_cpu"]) / args.messages * 1e6
            sdk_cost = sdk["cpu"] / args.messages * 1e6
            print(
                f"CPU per message, which the load does not change: durable PostgreSQL {cost:.0f} µs "
                f"(this process and the server's), twilio SDK async {sdk_cost:.0f} µs: "
                f"{sdk_cost / cost:.2f}x"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
