"""CPU the group-commit writer itself costs per message, with a store write that does nothing.

    .venv/bin/python bench/group_commit.py [--messages 100000] [--runs 3]

The worker's committer (on the one group-commit writer, ``smsgate.outbox.groupcommit``) takes a
start and then an outcome for every message, 100 messages in flight as the outbox bench's worker
has, and writes them to a store whose ``write`` returns at once. What is left is the writer's own
bookkeeping (queueing, grouping, futures, results), in CPU time of this process
(``time.process_time``), which a busy machine distorts far less than wall time. The best of
``--runs`` is printed. Compare two checkouts by running this file with ``PYTHONPATH`` set to
each one's ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from smsgate.clock import FakeClock
from smsgate.outbox.store import NewEvent, StartSend, State, Transition
from smsgate.outbox.worker.committer import Committer
from smsgate.outbox.worker.outcomes import WorkerStats

IN_FLIGHT = 100


class NoStore:
    """A store whose write takes every start and every outcome at once."""

    async def write(
        self,
        owner: str,
        starts: list[StartSend],
        transitions: list[Transition],
        releases: list[str],
        now: float,
        lease_until: float,
    ) -> tuple[set[str], set[str]]:
        return {s.id for s in starts}, {t.id for t in transitions}


async def one_run(count: int) -> float:
    committer = Committer(NoStore(), "w1", FakeClock(), WorkerStats(), lease=30, parallel=4)
    runner = asyncio.create_task(committer.run())
    starts = [
        StartSend(f"m{i}", "twilio", 1, "default", NewEvent(f"m{i}", 0, "queued", "sending", "w"))
        for i in range(count)
    ]
    outcomes = [
        Transition(f"m{i}", State.SENT, NewEvent(f"m{i}", 0, "sending", "sent", "w"))
        for i in range(count)
    ]
    began = time.process_time()
    for first in range(0, count, IN_FLIGHT):
        window = slice(first, first + IN_FLIGHT)
        started = await asyncio.gather(*(committer.start(s) for s in starts[window]))
        if not all(started):
            raise SystemExit("a start was refused by a store that refuses nothing")
        for outcome in outcomes[window]:
            committer.finish(outcome)
    committer.close()
    await runner
    return time.process_time() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    best = min(asyncio.run(one_run(args.messages)) for _ in range(max(1, args.runs)))
    per_message = best / args.messages * 1e6
    print(
        f"group commit: {per_message:.2f} µs CPU per message (a start and an outcome), "
        f"{args.messages:,} messages, best of {args.runs}; load average {load:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
