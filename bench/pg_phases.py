"""Where the durable PostgreSQL path spends its CPU: each of a message's writes on its own.

    .venv/bin/python bench/pg_phases.py [--messages 20000] [--batch 200]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]   (or SMSGATE_TEST_POSTGRES_URL)

The worker's four writes of every message run one phase at a time, in batches of ``--batch``,
through the store's own calls and statements (no provider, no worker): submit (``submit_many``:
the row and its "submitted" event), claim (the lease), start (the "sending" mark and its event)
and finish (the result and its event, the lease freed). For each phase: the CPU time per message
of this process and of the PostgreSQL server processes serving it (read from /proc, so only for
a server on this host), and the wall time. CPU time is what a busy machine does not change;
``outbox_throughput.py`` shows the same path under load, with sends. The last line counts the
updates PostgreSQL could make in place (HOT: no index touched); see docs/postgresql.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from smsgate.outbox import Outbox
from smsgate.outbox.store import Claimed, NewEvent, StartSend, State, Transition

OWNER = "bench-phases"


def server_seconds(monitor: psycopg.Connection[tuple[object, ...]], application: str) -> float:
    """CPU seconds used so far by the server processes of ``application``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    rows = monitor.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
    ).fetchall()
    for (pid,) in rows:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone, or not on this host
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def start_of(claimed: Claimed, now: float) -> StartSend:
    row_id = claimed.row.id
    event = NewEvent(row_id, now, "queued", "sending", f"worker:{OWNER}", "attempt 1", "twilio", 1)
    return StartSend(row_id, "twilio", 1, "default", event)


def finish_of(claimed: Claimed, now: float) -> Transition:
    row_id = claimed.row.id
    pmid = f"SM{row_id[-30:]}"
    event = NewEvent(
        row_id, now, "sending", "sent", f"worker:{OWNER}", f"accepted by twilio as {pmid}",
        "twilio", 1,
    )  # fmt: skip
    return Transition(row_id, State.SENT, event, now + 3600, "twilio", 1, "default", pmid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("SMSGATE_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    if not args.postgres:
        raise SystemExit("pass --postgres URL or set SMSGATE_TEST_POSTGRES_URL")
    n: int = args.messages
    schema = f"bench_{secrets.token_hex(4)}"
    joiner = "&" if "?" in args.postgres else "?"
    url = f"{args.postgres}{joiner}schema={schema}&application_name={schema}"
    print(f"{n:,} messages, {args.batch} per statement; load average {os.getloadavg()[0]:.2f}")
    with psycopg.connect(args.postgres, autocommit=True) as monitor:
        try:
            with Outbox(url, migrate=True) as outbox:
                store = outbox.store
                claimed: list[list[Claimed]] = []

                def phase(name: str, run: Callable[[], None]) -> None:
                    server = server_seconds(monitor, schema)
                    cpu, wall = time.process_time(), time.perf_counter()
                    run()
                    wall = time.perf_counter() - wall
                    cpu = time.process_time() - cpu
                    server = server_seconds(monitor, schema) - server
                    print(
                        f"  {name:<7} server {server / n * 1e6:5.1f} µs/msg  "
                        f"client {cpu / n * 1e6:5.1f} µs/msg  wall {wall / n * 1e6:5.1f} µs/msg",
                        flush=True,
                    )

                def submit() -> None:
                    report = outbox.submit_many(
                        {"to": f"+1201555{i % 1000:04d}", "body": f"Order {i} has shipped."}
                        for i in range(n)
                    )
                    assert report.accepted == n

                def claim() -> None:
                    now = time.time()
                    while batch := store.claim(OWNER, args.batch, now, now + 60, take_over=False):
                        claimed.append(batch)

                def start() -> None:
                    now = time.time()
                    for batch in claimed:
                        starts = [start_of(c, now) for c in batch]
                        started, _ = store.write(OWNER, starts, [], [], now, now + 60)
                        assert len(started) == len(batch)

                def finish() -> None:
                    now = time.time()
                    for batch in claimed:
                        done = [finish_of(c, now) for c in batch]
                        _, finished = store.write(OWNER, [], done, [], now, now + 60)
                        assert len(finished) == len(batch)

                for name, run in (
                    ("submit", submit),
                    ("claim", claim),
                    ("start", start),
                    ("finish", finish),
                ):
                    phase(name, run)
            row = monitor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'smsgate_messages'",
                (schema,),
            ).fetchone()
            if row is not None:
                print(
                    f"updates of smsgate_messages: {row[0]:,}, of them in place (HOT): {row[1]:,}"
                )
        finally:
            monitor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
