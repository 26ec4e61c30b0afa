"""A million recipients from a CSV into the SQLite outbox: rows per second and peak memory.

    .venv/bin/python bench/submit_csv.py [--rows 1000000] [--no-parallel] [--keep]

Generates ``people.csv`` (phone, name, city; one row in a thousand has a number without a country
code, which must be refused into the rejects file), then runs the real command,

    smsgate bulk people.csv --body "Hi {name}, your order ships from {city}." --json

as a subprocess into a fresh SQLite store (WAL, synchronous=FULL, every row with its "submitted"
event and an idempotency key), sampling the resident memory of the command and of its reader
process from /proc every 20 ms. Reports rows/s (the command's own timing and the wall time of the
whole process, start-up included), the peak RSS of each process and of both together, and checks
the store: every valid row stored once, every invalid one refused.

Targets: at least 50,000 rows/s with peak RSS at most 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_RATE = 50_000
TARGET_RSS_MB = 200


def generate(path: Path, rows: int) -> int:
    """Write the CSV; returns how many rows are invalid."""
    rng = random.Random(1)
    invalid = 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write("phone,name,city\n")
        for n in range(rows):
            if n % 1000 == 999:
                handle.write(f"555-{n % 10000:04d},Person {n},Nowhere\n")
                invalid += 1
            else:
                handle.write(
                    f"+1{rng.randrange(201, 990)}555{rng.randrange(10**4):04d}"
                    f",Person {n},City {n % 97}\n"
                )
    return invalid


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-parallel", action="store_true", help="read and write in one process")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="smsgate-bulk-"))
    try:
        source = folder / "people.csv"
        started = time.perf_counter()
        invalid = generate(source, args.rows)
        size = source.stat().st_size
        print(
            f"generated {args.rows:,} rows ({size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        store = f"sqlite:///{folder / 'outbox.db'}"
        smsgate = str(Path(sys.executable).with_name("smsgate"))
        command = [
            smsgate,
            "bulk",
            str(source),
            "--body",
            "Hi {name}, your order ships from {city}.",
            "--store",
            store,
            "--json",
        ]
        if args.no_parallel:
            command.append("--no-parallel")
        peaks = {"main": 0, "reader": 0, "both": 0}
        wall = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                main_rss = rss_kb(proc.pid)
                reader = sum(rss_kb(child) for child in children(proc.pid))
                peaks["main"] = max(peaks["main"], main_rss)
                peaks["reader"] = max(peaks["reader"], reader)
                peaks["both"] = max(peaks["both"], main_rss + reader)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - wall
        done.set()
        sampler.join()
        if proc.returncode != 0:
            print(err, file=sys.stderr)
            return 1
        report = json.loads(out.strip().splitlines()[-1])
        with sqlite3.connect(folder / "outbox.db") as conn:
            stored = conn.execute("SELECT count(*) FROM smsgate_messages").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM smsgate_events").fetchone()[0]
        assert report["accepted"] == stored == events == args.rows - invalid, (
            report,
            stored,
            events,
        )
        assert report["rejected"] == invalid, report
        rate = args.rows / report["elapsed"]
        print(
            f"smsgate bulk: {report['accepted']:,} stored, {report['rejected']:,} refused "
            f"(into {Path(report['rejects_file']).name})"
        )
        print(
            f"  {report['elapsed']:.1f} s in the command: {rate:,.0f} rows/s "
            f"(whole process, start-up included: {args.rows / wall:,.0f} rows/s)"
        )
        print(
            f"  peak RSS: writer {peaks['main'] / 1024:.0f} MB, reader {peaks['reader'] / 1024:.0f} MB, "
            f"both together {peaks['both'] / 1024:.0f} MB"
        )
        print(
            f"  store: {(folder / 'outbox.db').stat().st_size / 1e6:.0f} MB for {stored:,} messages "
            f"and {events:,} events"
        )
        rate_ok = "met" if rate >= TARGET_RATE else "MISSED"
        rss_ok = "met" if peaks["both"] / 1024 <= TARGET_RSS_MB else "MISSED"
        print(
            f"targets: >= {TARGET_RATE:,} rows/s: {rate_ok}; peak RSS <= {TARGET_RSS_MB} MB "
            f"(both processes together): {rss_ok}"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
