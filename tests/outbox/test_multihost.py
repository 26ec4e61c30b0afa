"""A multi-host deployment on one PostgreSQL schema, as docs/multi-host.md describes it.

Real processes on loopback: four ``smsgate worker``, two ``smsgate serve --no-worker`` and the
Twilio emulator (``smsgate emulate twilio``), which records the arrival time of every message it
accepts. Messages are submitted through both servers' API; workers 0 and 2 ask for receipts at
the first server, 1 and 3 at the second, so receipts come back through both. Worker 0 is
SIGKILLed mid-run. Asserted:

- no message is sent twice: the emulator accepted exactly one request per message id (the id is
  in each request's status-callback URL), and one for every message the servers accepted;
- the aggregate rate (``rate = "20/s"`` for all workers together) holds within 10% over every
  10-second window of the arrival times (see :func:`window_counts` for what that means);
- the rows the killed worker held are taken over and finished by the others;
- every message ends delivered, its receipt recorded by one of the servers.
"""

from __future__ import annotations

import bisect
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from psycopg import sql

from smsgate.message import Status
from smsgate.outbox import Outbox
from tests.outbox.conftest import postgres_schema
from tests.outbox.test_crash import wait_for

SMSGATE = str(Path(sys.executable).with_name("smsgate"))
pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RATE = 20  # messages per second, for all workers together
WINDOW = 10.0  # seconds
TOLERANCE = 0.10
MESSAGES = 500  # 25 s of sending at RATE: 15 s of sliding windows inside the busy period
LEASE = 2  # seconds: the killed worker's rows are taken over this long after it died


@pytest.fixture
def store() -> Iterator[str]:
    with postgres_schema("multihost") as url:
        yield url


class Fleet:
    """The processes of one deployment: each one's output goes to a log file of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.closing: list[psycopg.Connection[tuple[Any, ...]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [SMSGATE, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def first_line(self, name: str, prefix: str, timeout: float = 45.0) -> str:
        """The first line of ``name``'s output that starts with ``prefix`` (or has it after
        the log record's time and level)."""
        deadline = time.monotonic() + timeout
        path = self.folder / f"{name}.log"
        while time.monotonic() < deadline:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix) or f": {prefix}" in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{name} printed no {prefix!r} line:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for conn in self.closing:
            conn.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def write_config(path: Path, store: str, provider_url: str, public_url: str | None) -> Path:
    path.write_text(
        f'store = "{store}"\n'
        + (f'public_url = "{public_url}"\n' if public_url else "")
        + f'\n[providers.twilio]\nurl = "{provider_url}&timeout=5"\nrate = "{RATE}/s"\n'
        # a receipt that never came is looked up rather than waited for
        'receipt_timeout = "5s"\n'
        # a claim no larger than what is in flight: under a rate limit, rows held ahead wait
        # in the worker that holds them (see docs/multi-host.md, Sizing)
        f"\n[worker]\nconcurrency = 8\nbatch_size = 8\nlease_seconds = {LEASE}\n"
        "\n[circuit_breaker]\nfailure_threshold = 1000\n",
        encoding="utf-8",
    )
    return path


def submit(url: str, key: str, first: int, count: int) -> list[str]:
    """``count`` messages in one batch request; the ids accepted."""
    items = [
        {"to": f"+1555580{n:04d}", "body": f"multihost {n}"} for n in range(first, first + count)
    ]
    answer = requests.post(
        f"{url}/v1/messages/batch",
        json={"messages": items},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == count, body
    return [item["id"] for item in body["results"]]


def window_counts(times: list[float], window: float, busy_until: float) -> tuple[int, int | None]:
    """The most arrivals in any ``window`` seconds, and the fewest in any window that lies
    wholly between the first arrival and ``busy_until`` (None when that is shorter than a
    window).

    Sliding windows: the maximum is reached by a window that opens at an arrival, the minimum
    by one that opens just after an arrival (or at the first), so those are all that are counted.
    """
    times = sorted(times)
    most = max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))
    starts = [t for t in times if t + window <= busy_until]
    if not starts:
        return most, None
    fewest = min(
        bisect.bisect_right(times, t + window) - bisect.bisect_right(times, t) for t in starts
    )
    return most, min(fewest, bisect.bisect_left(times, times[0] + window))


def per_second(times: list[float], mark: float) -> str:
    """Arrivals in each second of the run (for a failure message), ``*`` at ``mark``."""
    start = min(times)
    counts = Counter(int(t - start) for t in times)
    return " ".join(
        f"{counts[s]}{'*' if int(mark - start) == s else ''}" for s in range(max(counts) + 1)
    )


def test_window_counts_slides_over_every_arrival() -> None:
    times = [0.0, 0.5, 1.0, 9.9, 10.0, 10.2, 19.0, 25.0]
    most, fewest = window_counts(times, 10.0, 25.0)
    assert most == 5  # [0.5, 10.5) holds 0.5, 1.0, 9.9, 10.0, 10.2
    assert fewest == 1  # (10.2, 20.2] holds 19.0 only
    # with the busy period ending at 19.0, the last window counted is (1.0, 11.0]
    assert window_counts(times, 10.0, 19.0) == (5, 3)
    assert window_counts([0.0, 1.0], 10.0, 1.0) == (2, None)


def schema_connection(store: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to the test's schema, to read the table the workers share."""
    base, _, query = store.partition("?")
    conn = psycopg.connect(base, autocommit=True)
    conn.execute(
        sql.SQL("SET search_path TO {}").format(sql.Identifier(parse_qs(query)["schema"][0]))
    )
    return conn


def message_id(request: dict[str, Any]) -> str:
    """Our id of a message the emulator accepted (in the status-callback URL it was given)."""
    return str(parse_qs(urlsplit(request["fields"]["StatusCallback"]).query)["smsgate_id"][0])


def webhooks_stored(url: str) -> float:
    """How many status callbacks the server at ``url`` stored, from its /metrics."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    prefix = "smsgate_provider_webhooks_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and 'kind="status"' in line and 'outcome="stored"' in line
    )


def test_four_workers_and_two_servers_on_one_postgresql(store: str, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    try:
        # Every request waits 0.2 s at the emulator, so the worker to be killed is caught with
        # a request in flight (a row in "sending") as well as rows it has only claimed.
        fleet.start("emulator", "emulate", "twilio", "--latency", "0.2", "--seed", "13")
        provider_url = fleet.first_line("emulator", "provider URL: ").split(": ", 1)[1]
        emulator_url = urlsplit(provider_url.split("base_url=", 1)[1]).geturl()
        serve_config = write_config(tmp_path / "serve.toml", store, provider_url, None)
        for command in (["db", "upgrade"], ["keys", "create", "multihost"]):
            done = subprocess.run(
                [SMSGATE, *command, "--config", str(serve_config)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        key = done.stdout.strip()
        for n in range(2):
            fleet.start(
                f"serve{n}", "serve", "--config", str(serve_config), "--port", "0", "--no-worker"
            )
        servers = [fleet.first_line(f"serve{n}", "smsgate serving ").split()[2] for n in range(2)]
        workers = [
            fleet.start(
                f"worker{n}",
                "worker",
                "--config",
                str(write_config(tmp_path / f"w{n}.toml", store, provider_url, servers[n % 2])),
            )
            for n in range(4)
        ]
        for n in range(4):  # the rate is measured from when the whole deployment runs
            fleet.first_line(f"worker{n}", "worker ")
        victim = workers[0]
        db = schema_connection(store)
        fleet.closing.append(db)
        accepted: list[str] = []
        for n in range(0, MESSAGES, 50):
            accepted += submit(servers[(n // 50) % 2], key, n, 50)

        def victim_sending() -> bool:
            (row,) = db.execute(
                "SELECT count(*) FILTER (WHERE state = 'sending' AND lease_owner LIKE %s), "
                "count(*) FILTER (WHERE state <> 'queued' AND state <> 'sending') "
                "FROM smsgate_messages",
                (f"%:{victim.pid}:%",),
            ).fetchall()
            return int(row[0]) > 0 and int(row[1]) >= 60  # 3 s into the run at 20/s

        wait_for(victim_sending, 45, "the first worker to have a request in flight")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        killed_at = time.time()
        held = dict(
            db.execute(
                "SELECT id, state FROM smsgate_messages WHERE lease_owner LIKE %s",
                (f"%:{victim.pid}:%",),
            ).fetchall()
        )
        assert "sending" in held.values(), held

        def taken_over() -> bool:
            leased = "SELECT count(*) FROM smsgate_messages WHERE lease_owner LIKE %s"
            (row,) = db.execute(leased, (f"%:{victim.pid}:%",)).fetchall()
            return int(row[0]) == 0

        # once their lease runs out, by the others' next claims that look for expired leases
        wait_for(taken_over, LEASE + 5, "the killed worker's rows to be taken over")

        with Outbox(store) as outbox:

            def all_final() -> bool:
                counts = outbox.counts()
                return sum(n for s, n in counts.items() if s.is_final) == MESSAGES

            wait_for(all_final, 90, "every message to reach a final status")
            records = {m: outbox.status(m) for m in accepted}
        arrivals = requests.get(f"{emulator_url}/_emulator/messages", timeout=30).json()
        stored = [webhooks_stored(url) for url in servers]
    finally:
        fleet.stop()
    for n in range(1, 4):
        assert workers[n].returncode == 0, fleet.log(f"worker{n}")

    # no message sent twice, none missing
    sent_ids = Counter(message_id(m) for m in arrivals["messages"])
    assert sorted(sent_ids) == sorted(accepted)
    assert sent_ids.most_common(1)[0][1] == 1, sent_ids.most_common(3)
    # The aggregate rate. The shared bucket grants at most RATE * WINDOW + its burst (2) in any
    # window; the 10% above RATE * WINDOW leaves 18 for the spread between taking a token and
    # the request reaching the emulator. Below, windows are counted while the backlog lasted:
    # up to the last first attempt (a message the killed worker may have sent is looked up,
    # then re-sent if it was not, after the messages that were due before it).
    arrived = {message_id(m): m["created_at"] for m in arrivals["messages"]}
    busy_until = max(t for m, t in arrived.items() if records[m].attempts == 1)
    most, fewest = window_counts(list(arrived.values()), WINDOW, busy_until)
    timeline = per_second(list(arrived.values()), killed_at)
    print(f"sends per second (* the kill): {timeline}; in 10 s windows: {fewest} to {most}")
    assert most <= RATE * WINDOW * (1 + TOLERANCE), (most, timeline)
    assert fewest is not None and fewest >= RATE * WINDOW * (1 - TOLERANCE), (fewest, timeline)
    # the killed worker's rows were finished by the others
    for held_id in held:
        events = records[held_id].events
        after = [e for e in events if e.at.timestamp() >= killed_at]
        assert after, [(e.to_status, e.source, e.reason) for e in events]
        assert all(f":{victim.pid}:" not in e.source for e in after)
        assert any(e.to_status is Status.SENT for e in after)
    # every message delivered, its receipt stored through one of the two servers
    assert {r.status for r in records.values()} == {Status.DELIVERED}
    assert all(count > 0 for count in stored), stored
    assert sum(stored) >= MESSAGES, stored
    callbacks = {urlsplit(m["fields"]["StatusCallback"]).netloc for m in arrivals["messages"]}
    assert callbacks == {urlsplit(url).netloc for url in servers}
