"""Store size and send throughput before and after pruning a large SQLite outbox.

    .venv/bin/python bench/retention.py [--messages 1000000] [--send 5000] [--batch 1000]

Fills a fresh SQLite store through the store's bulk insert path with ``--messages`` delivered
messages 100 days old (one event each: the insert path writes one per row), then measures:

- the store's size on disk (database and WAL, after a checkpoint);
- send throughput: ``--send`` new messages submitted and sent by one in-process worker to
  smsgate's Twilio emulator (its own process, on loopback), from first submit to the worker
  idle; the best of ``--rounds`` rounds;
- ``smsgate db prune --older-than 90d`` (the same batches the worker's pruner runs), timed;
- size and send throughput again; the size once more after ``VACUUM`` (SQLite reuses freed
  pages for new rows but gives them back to the file system only when vacuumed).

Bounded: the fill, each send round and the prune stop at ``--max-seconds`` each.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from emulator_process import free_port, start_emulator

from smsgate.eventloop import run
from smsgate.ids import new_id
from smsgate.message import Status
from smsgate.outbox import Outbox
from smsgate.outbox.retention import PruneResult, Retention
from smsgate.outbox.store import NewEvent, NewMessageRow
from smsgate.providers import create_provider

DAY = 86_400.0
FILL_BATCH = 5_000


def size_mb(path: Path, *, vacuum: bool = False) -> float:
    """The database and its WAL, after a checkpoint (and, with ``vacuum``, a VACUUM)."""
    with sqlite3.connect(str(path)) as conn:
        if vacuum:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))
    return total / 1e6


def fill(outbox: Outbox, n: int, deadline: float) -> int:
    created = time.time() - 100 * DAY
    payload = '{"body":"Your order has shipped and will arrive on Tuesday."}'
    done = 0
    with outbox.store.inserter(atomic=False) as inserter:
        while done < n and time.monotonic() < deadline:
            size = min(FILL_BATCH, n - done)
            # a millisecond apart: the million span 17 minutes, all past the 90 days
            at = [created + (done + i) / 1000 for i in range(size)]
            ids = [new_id(now_ms=int(t * 1000)) for t in at]
            rows = [
                NewMessageRow(
                    ids[i],
                    "delivered",
                    "transactional",
                    f"+1{201 + (done + i) % 700}555{(done + i) % 10_000:04d}",
                    None,
                    None,
                    payload,
                    None,
                    None,
                    cast(float, None),  # final: not waiting for a worker
                    at[i],
                )
                for i in range(size)
            ]
            events = [
                NewEvent(ids[i], at[i], None, "delivered", "bench", "delivered")
                for i in range(size)
            ]
            inserter.insert(rows, events, fresh_ids=True)
            done += size
    return done


def send_rate(outbox: Outbox, provider_url: str, n: int, tag: str, rounds: int) -> float:
    """The best of ``rounds`` send rounds (a busy neighbour slows a round, never speeds one)."""
    return max(send_round(outbox, provider_url, n, f"{tag}{r}") for r in range(rounds))


def send_round(outbox: Outbox, provider_url: str, n: int, tag: str) -> float:
    numbers = [f"+1{201 + i // 100}555{100 + i % 100:04d}" for i in range(1000)]
    started = time.perf_counter()
    report = outbox.submit_many(
        {"to": numbers[i % 1000], "body": f"Order {tag}-{i:06d} has shipped."} for i in range(n)
    )
    provider = create_provider(f"{provider_url}&max_connections=100")

    async def send() -> None:
        try:
            await outbox.arun_worker(
                [provider], concurrency=100, batch_size=200, until_idle=True, poll_interval=0.01
            )
        finally:
            await provider.aclose()

    run(send())
    seconds = time.perf_counter() - started
    sent = outbox.counts().get(Status.SENT, 0)
    if report.accepted != n or sent < n:  # earlier rounds' messages are sent too
        raise SystemExit(f"send round {tag}: submitted {report.accepted}, sent {sent}")
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--send", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2, help="send rounds; the best counts")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    proc, provider_url = start_emulator("twilio", free_port())
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="smsgate-retention-") as tmp:
            path = Path(tmp) / "outbox.db"
            with Outbox(f"sqlite:///{path}", migrate=True) as outbox:
                wall = time.perf_counter()
                n = fill(outbox, args.messages, time.monotonic() + args.max_seconds)
                fill_s = time.perf_counter() - wall
                print(f"filled {n:,} delivered messages in {fill_s:.1f} s ({n / fill_s:,.0f}/s)")
                figures["size before"] = size_mb(path)
                print(f"store size: {figures['size before']:.1f} MB")
                figures["send before"] = send_rate(
                    outbox, provider_url, args.send, "a", args.rounds
                )
                print(f"send throughput, {args.send:,} messages: {figures['send before']:,.0f}/s")
                retention = Retention.older_than(90 * DAY, batch_size=args.batch)
                wall = time.perf_counter()
                deadline = time.monotonic() + args.max_seconds
                pruned = PruneResult()
                cutoffs = retention.cutoffs(time.time())
                while time.monotonic() < deadline:
                    done = PruneResult(*outbox.store.prune(cutoffs, None, args.batch))
                    pruned += done
                    if not any(done):
                        break
                prune_s = time.perf_counter() - wall
                print(
                    f"pruned {pruned.messages:,} messages and {pruned.events:,} events in "
                    f"{prune_s:.1f} s ({pruned.messages / prune_s:,.0f} messages/s, "
                    f"batches of {args.batch})"
                )
                figures["size after"] = size_mb(path)
                print(f"store size after pruning: {figures['size after']:.1f} MB (pages reused)")
                figures["send after"] = send_rate(outbox, provider_url, args.send, "b", args.rounds)
                print(f"send throughput after pruning: {figures['send after']:,.0f}/s")
            print(f"store size after VACUUM: {size_mb(path, vacuum=True):.1f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
