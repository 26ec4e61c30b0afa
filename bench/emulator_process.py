"""Start ``smsgate emulate NAME`` in its own process (its own core) for the benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smsgate_command() -> list[str]:
    script = Path(sys.executable).with_name("smsgate")
    return [str(script)] if script.exists() else [shutil.which("smsgate") or "smsgate"]


def start_emulator(
    name: str, port: int, *args: str, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """The running emulator and the provider URL it printed; exits the bench if it never starts."""
    proc = subprocess.Popen(
        [*smsgate_command(), "emulate", name, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, read_provider_url(proc, name, timeout)


def read_provider_url(proc: subprocess.Popen[str], name: str, timeout: float = 30.0) -> str:
    """The provider URL an emulator process prints; exits the bench if it never does."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {name} emulator exited early (status {proc.poll()})")
        if line.startswith("provider URL: "):
            return line.removeprefix("provider URL: ").strip()
    proc.kill()
    raise SystemExit(f"the {name} emulator did not print its provider URL within {timeout:g} s")
