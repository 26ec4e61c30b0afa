"""What storing a long message's part ids costs, and what folding its receipts from them costs.

    .venv/bin/python bench/smpp_parts.py [--messages 2000] [--parts 3] [--rounds 2]

On SQLite in a temporary directory (docs/smpp.md, "What survives a reconnect and a restart"):
the worker's result write for one-part messages (no part ids) and for ``--parts``-part
messages (their ids written in the same transaction), 100 results a transaction; then the fold
after a restart, one ``MessagePartTable.fold`` per part receipt, each looked up by the two forms
an SMPP id takes (decimal and hex). Prints CPU per message or receipt (``time.process_time``,
which the machine's load does not distort) and the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from smsgate.clock import FakeClock
from smsgate.message import Message, Status
from smsgate.outbox import Outbox, State
from smsgate.outbox.store import NewEvent, StartSend, Transition
from smsgate.outbox.tables.message_parts import MessagePartTable


def sent(outbox: Outbox, count: int, parts: int) -> list[Transition]:
    """``count`` messages claimed and started, and the transitions recording their sends."""
    ids = [outbox.submit(Message(to=f"+1555555{i:04d}", body="x")) for i in range(count)]
    now = outbox.clock.time()
    outbox.store.claim("w", count, now, now + 30)
    starts = [
        StartSend(i, "smpp", 1, "default", NewEvent(i, now, "queued", "sending", "w", "go"))
        for i in ids
    ]
    outbox.store.start("w", starts, now, now + 30)
    return [
        Transition(
            i,
            State.SENT,
            NewEvent(i, now, "sending", "sent", "w", "accepted"),
            provider="smpp",
            provider_message_id=f"{k * parts:X}",
            part_ids=tuple(f"{k * parts + j:X}" for j in range(parts)) if parts > 1 else (),
        )
        for k, i in enumerate(ids)
    ]


def one_round(directory: Path, count: int, parts: int) -> tuple[float, float | None]:
    """CPU µs per result written, and per part receipt folded (None for one-part messages)."""
    with Outbox(f"sqlite:///{directory / f'{parts}.db'}", clock=FakeClock(), migrate=True) as box:
        transitions = sent(box, count, parts)
        now = box.clock.time()
        started = time.process_time()
        for first in range(0, count, 100):
            box.store.finish("w", transitions[first : first + 100], now)
        write = (time.process_time() - started) / count * 1e6
        if parts == 1:
            return write, None
        table = MessagePartTable.of(box.store)
        started = time.process_time()
        for n in range(count * parts):
            assert table.fold("smpp", [str(n), f"{n:x}"], Status.DELIVERED, None) is not None
        return write, (time.process_time() - started) / (count * parts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.messages <= 100_000 or not 2 <= args.parts <= 255:
        parser.error("--messages must be 1-100000 and --parts 2-255")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for round_ in range(1, min(args.rounds, 10) + 1):
        with tempfile.TemporaryDirectory() as directory:
            single, _ = one_round(Path(directory), args.messages, 1)
            write, fold = one_round(Path(directory), args.messages, args.parts)
        print(
            f"round {round_}: result write {single:.1f} µs CPU/message (1 part), "
            f"{write:.1f} µs ({args.parts} parts, ids stored); "
            f"fold after a restart {fold:.1f} µs CPU/part receipt"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
