"""Run the ``smsgate`` command with tracemalloc on, recording what grew between snapshots.

    python bench/soak_trace.py REPORT EVERY smsgate-arguments...

``bench/serve_soak.py --trace REPORT`` starts the gateway through this. Tracing starts after ``EVERY``
seconds (start-up runs at full speed); from ``2 x EVERY`` on, every ``EVERY`` seconds a daemon
thread appends to ``REPORT``: the traced memory, the object counts by type that changed most since the
previous snapshot (``gc.get_objects``), the memory SQLite and glibc's allocator hold
(which tracemalloc does not see), and the source lines whose allocations grew most (a
tracemalloc snapshot diff, 6 frames deep, grouped by the innermost frame with the frames that
led there). A structure that keeps growing shows up in every interval; a cache that fills and
stops shows up only early on. ``tuple(int, int, tuple)`` objects are mostly tracemalloc's own
traces of the snapshot this watcher keeps, not the gateway's.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, __file__),
]


class _MallInfo(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            [
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            ]
        )
    ]


def _native() -> str:
    """Memory outside Python's reach: SQLite's own allocations (its page caches) and glibc's
    heap, in use and free (free but kept: fragmentation), with the thread count."""
    parts = []
    try:
        import _sqlite3

        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        used.restype = ctypes.c_int64
        parts.append(f"sqlite {used() / 1e6:.1f} MB")
    except (ImportError, OSError, AttributeError):
        parts.append("sqlite ?")
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
        mallinfo2.restype = _MallInfo
        info = mallinfo2()
        parts.append(
            f"malloc in use {(info.uordblks + info.hblkhd) / 1e6:.1f} MB, "
            f"free {info.fordblks / 1e6:.1f} MB"
        )
    except (OSError, AttributeError):
        parts.append("malloc ?")
    parts.append(f"{threading.active_count()} threads")
    return ", ".join(parts)


def _types() -> Counter[str]:
    """Objects the collector tracks, by type; tuples also by the types of their first items
    (a tuple's type alone does not say whose it is)."""
    counts: Counter[str] = Counter()
    for o in gc.get_objects():
        if type(o) is tuple:
            counts["tuple(" + ", ".join(type(i).__qualname__ for i in o[:3]) + ")"] += 1
        else:
            counts[type(o).__qualname__] += 1
    return counts


def _watch(report: Path, every: float) -> None:
    # traced from the first interval on: start-up runs at full speed, and what it allocates
    # (imports, warm caches) is not what grows later
    time.sleep(every)
    tracemalloc.start(6)
    time.sleep(every)
    previous = tracemalloc.take_snapshot().filter_traces(_FILTERS)
    counts = _types()
    started = time.monotonic()
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        now = _types()
        current, peak = tracemalloc.get_traced_memory()
        lines = [
            f"=== {(time.monotonic() - started) / 60:.1f} min after the first snapshot: "
            f"traced {current / 1e6:.2f} MB (peak {peak / 1e6:.2f} MB), "
            f"{sum(now.values()):,} gc objects; {_native()}"
        ]
        grown = sorted(((now[k] - counts[k], k) for k in now | counts), reverse=True)
        lines.append("objects by type, change: " + ", ".join(f"{k} {d:+,}" for d, k in grown[:12]))
        for stat in snapshot.compare_to(previous, "traceback")[:12]:
            if stat.size_diff <= 0:
                break
            frames = " <- ".join(
                f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:5]
            )
            lines.append(
                f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7,d} blocks  {frames}"
            )
        with report.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        previous, counts = snapshot, now


def main() -> None:
    report, every, *arguments = sys.argv[1:]
    threading.Thread(target=_watch, args=(Path(report), float(every)), daemon=True).start()
    from smsgate.cli import main as smsgate

    sys.argv = ["smsgate", *arguments]
    smsgate()


if __name__ == "__main__":
    main()
