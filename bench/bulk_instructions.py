"""Instructions per message of bench/bulk_direct.py's clients, counted by callgrind.

    .venv/bin/python bench/bulk_instructions.py [--messages 4000] [--scheme https] [--only SDK]

bulk_direct.py's rates and CPU times move with the other tenants of a shared machine (CPU per
message by up to 50% between runs, for every client at once), so its ratios hold for one run.
Callgrind counts the instructions a client executes (its own code, Python, the libraries,
OpenSSL; not the kernel's share of a system call): the same count for the same binaries and
inputs, whatever else the machine is doing, and a ratio of counts that a neighbour cannot move.

Each client runs in a process of its own under valgrind's callgrind, against one loopback server
outside valgrind (bulk_direct's lean Twilio fake, HTTP and TLS with a CA of the bench's own). It
sends a warm-up, then ``--messages`` messages through a client made for them, as one of
bulk_direct's slices: the client's connections, and over TLS their handshakes, are counted with
the messages. Counting starts before the client is made and stops once it has closed; the
server must have recorded every message. The clients are bulk_direct's, with its limits
(``--in-flight`` 100). The seeds' pattern is left out unless ``--only`` names it: under valgrind,
about fifty times slower, its 4,000 messages take longer than the rest together. For the same
reason smsgate's connect, read and total timeouts are raised for the count (they are settings,
and the SDK's and aiohttp's defaults already wait minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from pathlib import Path
from typing import cast

from bulk_direct import CLIENTS, TARGETS, Server, own_ca, start_server, stop_server, workload

#: what the count raises smsgate's timeouts to (seconds), valgrind being about fifty times slower
SLOW_TIMEOUTS = "&connect_timeout=600&timeout=600&write_timeout=600&total_timeout=0"
WARMUP = 300


def count_client(
    server: Server, scheme: str, name: str, messages: int, in_flight: int, directory: Path
) -> int:
    """Instructions the client ``name`` executed to send ``messages`` messages (callgrind)."""
    out = directory / f"callgrind.{scheme}.{name.replace(' ', '_')}"
    fields = {f.name: getattr(server, f.name) for f in dataclass_fields(server) if f.name != "proc"}
    child = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            json.dumps({"server": fields, "scheme": scheme, "client": name}),
            str(messages),
            str(in_flight),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if child.returncode != 0:
        raise SystemExit(f"{name} over {scheme} failed under callgrind:\n{child.stdout[-2000:]}")
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def run_child(spec: str, messages: int, in_flight: int) -> None:
    """Under callgrind: warm up, then send ``messages`` with instrumentation on."""
    parsed = json.loads(spec)
    server = _PatientServer(proc=cast(subprocess.Popen[str], None), **parsed["server"])
    scheme, name = parsed["scheme"], parsed["client"]
    server = replace(server, base=server.url if scheme == "http" else server.tls_url)
    client = dict(CLIENTS)[name]
    os.environ["SSL_CERT_FILE"] = server.ca_file
    client(server, workload(WARMUP), in_flight)
    server.reset()
    work = workload(messages)
    _instrument("on")
    ok = client(server, work, in_flight)
    _instrument("off")
    stored = server.count()
    if ok != messages or stored != messages:
        raise SystemExit(f"{name}: {ok} of {messages} accepted, the server recorded {stored}")


class _PatientServer(Server):
    """The server as the child's clients see it: smsgate's URL waits as long as valgrind needs."""

    def gateway_url(self, in_flight: int) -> str:
        return super().gateway_url(in_flight) + SLOW_TIMEOUTS


def _instrument(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=" + state, str(os.getpid())],
        check=True,
        capture_output=True,
        timeout=60,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=4000, help="per client and scheme")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument(
        "--scheme", choices=["http", "https"], action="append", default=[], help="repeatable"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="clients whose name contains this"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec, messages, in_flight = args.child
        run_child(spec, int(messages), int(in_flight))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    names = [
        name
        for name, _ in CLIENTS
        if any(p.lower() in name.lower() for p in args.only)
        or (not args.only and name != "seeds' pattern")
    ]
    with tempfile.TemporaryDirectory() as directory:
        ca, cert, key = own_ca(Path(directory))
        server = start_server("fake", ca, cert, key)
        print(
            f"server (lean fake): {server.url} and {server.tls_url}; {args.messages:,} messages "
            f"per client and scheme, {args.in_flight} in flight, instructions by callgrind"
        )
        try:
            for scheme in args.scheme or ["http", "https"]:
                counts = {}
                for name in names:
                    total = count_client(
                        server, scheme, name, args.messages, args.in_flight, Path(directory)
                    )
                    counts[name] = total / args.messages
                    print(f"  {scheme:<5} {name:<20} {counts[name]:>12,.0f} instructions/msg")
                report(scheme, counts)
        finally:
            stop_server(server)
    return 0


def report(scheme: str, counts: dict[str, float]) -> None:
    ours = counts.get("Gateway.send_many")
    if ours is None:
        return
    for name, target in TARGETS.items():
        if name in counts:
            ratio = counts[name] / ours
            verdict = "met" if ratio >= target else "MISSED"
            print(
                f"  {scheme.upper()}: {name} / Gateway.send_many = {ratio:.2f}x "
                f"(target >= {target:g}x: {verdict})"
            )


if __name__ == "__main__":
    raise SystemExit(main())
