"""Claim-to-send latency at a steady 1,000 messages/s.

    .venv/bin/python bench/claim_latency.py [--rate 1000] [--seconds 20]
        [--postgres URL]   (or SMSGATE_TEST_POSTGRES_URL; SQLite always runs)

A submitter in this process submits messages at a steady rate (a small batch every 5 ms) while
one ``smsgate worker`` process sends them to the Twilio emulator (another process, so each has a
core of its own as far as the machine allows). From each message's history it reports, p50, p90,
p99 and max:

- submit -> claimed-and-started: from the "submitted" event to the "sending" event, written
  right before the HTTP request (the worker's whole pick-up path: poll, claim, route, group
  commit of the crash-safety mark);
- submit -> sent: to the event that records the provider's answer;
- submit_many: how long the submitter's own call took (its rows are due from its commit on, so
  this much of the first figure is the submitter's, not the worker's).

Both events carry wall-clock times from the two processes' clocks (the same host).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator_process import free_port, start_emulator

SMSGATE = str(Path(sys.executable).with_name("smsgate"))


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"p50 {cuts[49] * 1000:6.1f} ms  p90 {cuts[89] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  max {values[-1] * 1000:6.1f} ms"
    )


def run(store: str, provider_url: str, rate: int, seconds: float, folder: Path) -> None:
    from smsgate.message import Status
    from smsgate.outbox import Outbox

    config = folder / f"{secrets.token_hex(3)}.toml"
    config.write_text(
        f'store = "{store}"\n[providers.twilio]\nurl = "{provider_url}"\n'
        "[worker]\nconcurrency = 50\nbatch_size = 50\n",
        encoding="utf-8",
    )
    with Outbox(store, migrate=True) as outbox:
        worker = subprocess.Popen(
            [SMSGATE, "worker", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.5)  # the worker's start-up is not part of the figure
            step = 0.005
            per_step = max(1, round(rate * step))
            total = int(rate * seconds)
            sent = 0
            calls: list[float] = []
            started = time.perf_counter()
            while sent < total:
                due = started + (sent // per_step) * step
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                batch = [
                    {"to": f"+1{201 + (n % 700)}5550{n % 100:03d}", "body": f"latency {n}"}
                    for n in range(sent, min(total, sent + per_step))
                ]
                before = time.perf_counter()
                outbox.submit_many(batch)
                calls.append(time.perf_counter() - before)
                sent += len(batch)
            achieved = total / (time.perf_counter() - started)
            deadline = time.monotonic() + 60
            while outbox.counts().get(Status.SENT, 0) < total and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        with outbox.store._read() as tx:  # type: ignore[attr-defined]
            rows = tx.execute(
                "SELECT message_id, to_status, at FROM smsgate_events ORDER BY message_id, id"
            )
    times: dict[str, dict[str, float]] = {}
    for message_id, status, at in rows:
        times.setdefault(message_id, {}).setdefault(status, float(at))
    start = [t["sending"] - t["queued"] for t in times.values() if "sending" in t]
    done = [t["sent"] - t["queued"] for t in times.values() if "sent" in t]
    print(f"  submitted {total:,} at {achieved:,.0f}/s; {len(done):,} sent")
    print(f"  submit -> started: {percentiles(start)}")
    print(f"  submit -> sent:    {percentiles(done)}")
    print(f"  submit_many({per_step}):    {percentiles(calls)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", default=os.environ.get("SMSGATE_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    emulator, provider_url = start_emulator("twilio", free_port())
    folder = Path(tempfile.mkdtemp(prefix="smsgate-latency-"))
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"{args.rate:,} messages/s for {args.seconds:g} s; one worker (concurrency 50)"
    )
    try:
        print("SQLite:")
        run(f"sqlite:///{folder / 'outbox.db'}", provider_url, args.rate, args.seconds, folder)
        if args.postgres:
            import psycopg

            schema = f"bench_{secrets.token_hex(4)}"
            joiner = "&" if "?" in args.postgres else "?"
            try:
                print("PostgreSQL:")
                run(
                    f"{args.postgres}{joiner}schema={schema}",
                    provider_url,
                    args.rate,
                    args.seconds,
                    folder,
                )
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
