"""Whole-process start-up time of the ``smsgate`` command (target: median <= 0.25 s).

    .venv/bin/python bench/cli_startup.py [--runs 15] [--importtime]

Runs each command as a fresh process ``--runs`` times (after one unmeasured warm-up run, so the
page cache is warm) and prints the median and the spread. Beside smsgate's own commands it times
the floors it cannot go below: the interpreter alone, ``python -c "import typer"``, and a
one-command Typer app run the same way (Typer 0.29 builds a pydantic TypeAdapter per parameter
when a command runs, which put the floor of any Typer command near 0.4 s on this machine; the
project pins typer<0.29).
``--importtime`` prints the slowest imports of each smsgate command (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.25

MINIMAL_TYPER_APP = """\
import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def segments(text: str, json: bool = False) -> None:
    print(text)


@app.command()
def other(number: str) -> None:
    print(number)


app()
"""


def smsgate_command() -> list[str]:
    script = Path(sys.executable).with_name("smsgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from smsgate.cli import main; main()"]


def typer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("typer")
    except PackageNotFoundError:
        return "not installed"


def time_runs(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds per run. On a shared, loaded machine the wall
    clock measures the queue for a core too; the CPU time is what the command itself costs."""
    import resource

    subprocess.run(argv, capture_output=True, check=True)  # warm-up, and must succeed
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def slowest_imports(argv_tail: list[str], top: int = 12) -> list[tuple[int, str]]:
    code = "import sys; from smsgate.cli import main; sys.argv = ['smsgate', *sys.argv[1:]]; main()"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *argv_tail],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((int(cumulative), name.rstrip()))
    # keep top-level entries (two spaces of indent at most) so parents and children don't repeat
    rows = [(us, name) for us, name in rows if len(name) - len(name.lstrip()) <= 2]
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args(argv)
    smsgate = smsgate_command()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_typer_app.py"
        minimal.write_text(MINIMAL_TYPER_APP)
        cases = [
            ('smsgate segments "hello"', [*smsgate, "segments", "hello"], True),
            ("smsgate --help", [*smsgate, "--help"], True),
            ("smsgate --version", [*smsgate, "--version"], False),
            ("python -c pass", [sys.executable, "-c", "pass"], False),
            ('python -c "import typer"', [sys.executable, "-c", "import typer"], False),
            ("one-command Typer app", [sys.executable, str(minimal), "segments", "hello"], False),
        ]
        cached = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
        print(
            f"typer {typer_version()}; bytecode caching {cached} "
            "(off: smsgate's own modules are compiled on every start)"
        )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"{'command':<28} {'median':>8} {'min':>7} {'max':>7} {'cpu':>7}"
            f"  ({args.runs} runs each; cpu: median user+system)"
        )
        missed = []
        for label, command, targeted in cases:
            times, cpu = time_runs(command, args.runs)
            median = statistics.median(times)
            mark = ""
            if targeted:
                mark = "  ok" if median <= TARGET else f"  over the {TARGET} s target"
                if median > TARGET:
                    missed.append(label)
            print(
                f"{label:<28} {median:>7.3f}s {min(times):>6.3f}s {max(times):>6.3f}s "
                f"{statistics.median(cpu):>6.3f}s{mark}"
            )
    if args.importtime:
        for tail in (["segments", "hello"], ["--help"]):
            print(f"\nslowest imports of smsgate {' '.join(tail)} (cumulative ms):")
            for us, name in slowest_imports(tail):
                print(f"  {us / 1000:>7.1f}  {name.strip()}")
    if missed:
        print(f"\nover target: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
