"""Email-to-SMS in bulk: smsgate's SMTP provider against the seeds' pattern on one server.

    .venv/bin/python bench/smtp_bulk.py [--messages 2000] [--connections 8] [--latency 0]
        [--runs 1] [--no-pipelining]

The server is smsgate's SMTP emulator (aiosmtpd, STARTTLS with a generated certificate, AUTH),
started as a separate process with ``smsgate emulate smtp --port N --option http_port=M`` so its
CPU is not charged to the clients. Both clients send the same texts to the same fictional
numbers through the Google Fi gateway domain, and each run is checked: every send must succeed
and the emulator must have recorded exactly that many mails. The clients:

- smsgate: ``Gateway.send_many`` on ``smtp://...&connections=N`` (a pool of N connections, each
  logged in once), building the ``Message`` objects inside the timed region;
- the seeds' pattern, as seed 000 writes it: per message a new ``smtplib.SMTP``, ``starttls()``,
  ``login()``, ``sendmail()`` of a ``MIMEText``, and QUIT when the ``with`` block ends. (Its
  ``starttls()`` checks no certificate, so it costs less than a verifying client would.)

The emulator offers PIPELINING (RFC 2920) as Gmail does, so smsgate sends MAIL, RCPT and DATA in
one write; ``--no-pipelining`` starts it without (the seeds' smtplib never pipelines).

``--runs N`` measures both clients N times, alternating, against the same emulator and ends with
the spread of the ratios: on a machine shared with other work single runs vary a lot.

``--latency S`` makes the emulator hold each reply to MAIL, RCPT and DATA for S seconds, a crude
stand-in for a relay across the internet (Gmail is tens of milliseconds away, not loopback's
tens of microseconds). It is conservative for the seeds: their extra round trips (connect,
EHLO, STARTTLS, the TLS handshake, AUTH, QUIT) are not slowed.

For each client it prints messages/s, client CPU per message (``time.process_time``, every
thread of this process) and the emulator's CPU per message (from /proc), the emulator's count of
connections, logins and pipelined reply groups during the timed run (smsgate's pool was opened by
one warm-up send), and CPU per message of client plus emulator, the ratio that moves least with
the machine's load.
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import statistics
import subprocess
import time
from dataclasses import dataclass
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import requests
from emulator_process import free_port, start_emulator

TARGET_SPEEDUP = 10.0
NUMBERS = [f"+1{201 + i // 100}555{100 + i % 100:04d}" for i in range(1000)]


@dataclass
class Server:
    proc: subprocess.Popen[str]
    host: str
    port: int
    url: str
    provider_url: str
    user: str
    password: str

    def reset(self) -> None:
        requests.post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def summary(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/_emulator/messages", timeout=120)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    name: str
    n: int
    ok: int
    seconds: float
    cpu: float
    server_cpu: float | None
    connections: int
    logins: int
    reply_groups: int

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def start_server(latency: float, pipelining: bool) -> Server:
    port, http_port = free_port(), free_port()
    proc, provider_url = start_emulator(
        "smtp",
        port,
        "--latency",
        str(latency),
        "--option",
        f"http_port={http_port}",
        "--option",
        f"pipelining={str(pipelining).lower()}",
        timeout=60,
    )
    from smsgate.providers.url import ProviderURL

    parsed = ProviderURL.parse(provider_url)
    assert parsed.username and parsed.password is not None
    return Server(
        proc,
        "127.0.0.1",
        port,
        f"http://127.0.0.1:{http_port}",
        provider_url,
        parsed.username,
        parsed.password,
    )


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(10)


def measure(name: str, server: Server, n: int, run: Any) -> Figure:
    server.reset()
    cpu0, server0 = time.process_time(), server.cpu_seconds()
    started = time.perf_counter()
    ok = run()
    seconds = time.perf_counter() - started
    cpu, server1 = time.process_time() - cpu0, server.cpu_seconds()
    summary = server.summary()
    if summary["count"] != n or ok != n:
        raise SystemExit(
            f"{name}: {ok} sends succeeded, the emulator recorded {summary['count']} of {n}"
        )
    return Figure(
        name,
        n,
        ok,
        seconds,
        cpu,
        None if server0 is None or server1 is None else server1 - server0,
        summary["connections"],
        summary["logins"],
        summary["reply_groups"],
    )


def run_smsgate(server: Server, n: int, connections: int) -> Figure:
    import smsgate

    url = f"{server.provider_url}&connections={connections}&helo=localhost"
    gateway = smsgate.Gateway.from_url(url)
    # One unmeasured send so the sync runner's thread exists, as in any long-lived process.
    gateway.send(NUMBERS[0], "warm-up")

    def run() -> int:
        messages = [
            smsgate.Message(to=NUMBERS[i % len(NUMBERS)], body=f"Your code is {100000 + i}")
            for i in range(n)
        ]
        results = gateway.send_many(messages)
        return sum(r.ok for r in results)

    try:
        return measure(f"smsgate (connections={connections})", server, n, run)
    finally:
        gateway.close()


def run_seeds(server: Server, n: int, time_limit: float) -> Figure:
    def run() -> int:
        ok = 0
        deadline = time.monotonic() + time_limit
        for i in range(n):
            if time.monotonic() > deadline:
                raise SystemExit(f"seeds' pattern: over {time_limit:g} s after {i} messages")
            number = NUMBERS[i % len(NUMBERS)]
            msg = MIMEText(f"Your code is {100000 + i}")
            msg["From"] = server.user
            msg["To"] = f"{number[2:]}@msg.fi.google.com"
            # Seed 000, line for line: a new connection, STARTTLS and login for every message.
            with smtplib.SMTP(server.host, server.port) as email_handler:
                email_handler.starttls()
                email_handler.login(server.user, server.password)
                email_handler.sendmail(server.user, [msg["To"]], msg.as_string())
            ok += 1
        return ok

    return measure("seeds' pattern (smtplib per message)", server, n, run)


def report(figure: Figure) -> None:
    server_cpu = (
        "n/a" if figure.server_cpu is None else f"{figure.server_cpu / figure.n * 1e3:.2f} ms"
    )
    print(
        f"{figure.name:<40} {figure.n:>6} msgs {figure.seconds:>8.2f} s {figure.rate:>9.1f} msg/s"
        f"   client CPU {figure.cpu / figure.n * 1e3:.2f} ms/msg   emulator CPU {server_cpu}/msg"
        f"   connections opened {figure.connections}, logins {figure.logins}, "
        f"pipelined groups {figure.reply_groups}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed-messages", type=int, default=None, help="default: --messages")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.0, help="emulator reply delay, seconds")
    parser.add_argument("--time-limit", type=float, default=600.0, help="per client, seconds")
    parser.add_argument("--runs", type=int, default=1, help="measure both clients this many times")
    parser.add_argument(
        "--no-pipelining", action="store_true", help="the emulator does not offer PIPELINING"
    )
    args = parser.parse_args()
    seed_n = args.seed_messages or args.messages
    server = start_server(args.latency, pipelining=not args.no_pipelining)
    speedups: list[float] = []
    cpu_ratios: list[float] = []
    try:
        print(
            f"emulator: {server.provider_url.split('?')[0].split('@')[-1]} (STARTTLS, "
            f"{'no ' if args.no_pipelining else ''}PIPELINING), latency {args.latency:g} s per "
            f"reply; {os.cpu_count()} CPUs"
        )
        for run in range(args.runs):
            print(f"run {run + 1}: load average {os.getloadavg()[0]:.1f}")
            ours = run_smsgate(server, args.messages, args.connections)
            report(ours)
            seeds = run_seeds(server, seed_n, args.time_limit)
            report(seeds)
            speedups.append(ours.rate / seeds.rate)
            verdict = "meets" if speedups[-1] >= TARGET_SPEEDUP else "misses"
            print(
                f"speedup: {speedups[-1]:.1f}x the seeds' pattern "
                f"({verdict} the {TARGET_SPEEDUP:g}x target)"
            )
            if ours.server_cpu is not None and seeds.server_cpu is not None:
                # On loopback both ends are CPU-bound; this ratio moves least with the load.
                mine = (ours.cpu + ours.server_cpu) / ours.n
                theirs = (seeds.cpu + seeds.server_cpu) / seeds.n
                cpu_ratios.append(theirs / mine)
                print(
                    f"CPU per message (client + emulator): smsgate {mine * 1e3:.2f} ms, seeds' "
                    f"pattern {theirs * 1e3:.2f} ms ({cpu_ratios[-1]:.1f}x)"
                )
    finally:
        stop_server(server)
    if args.runs > 1:
        print(f"speedup over {args.runs} runs: {spread(speedups)}")
        if cpu_ratios:
            print(f"CPU per message ratio over {len(cpu_ratios)} runs: {spread(cpu_ratios)}")


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"min {ordered[0]:.1f}x, median {statistics.median(ordered):.1f}x, max {ordered[-1]:.1f}x"
    )


if __name__ == "__main__":
    main()
