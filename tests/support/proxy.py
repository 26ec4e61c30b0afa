"""tinyproxy, a real forward proxy from Debian's packages, on a loopback port for one test.

``apt-get install tinyproxy-bin`` (``.ci/run`` does); the fixtures skip, saying so, without it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: the password of the proxy started with ``auth=True`` (user ``alice``)
SECRET = "pr0xy-s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proxy:
    port: int
    log: Path

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_tinyproxy(directory: Path, *, auth: bool) -> Iterator[Proxy]:
    binary = shutil.which("tinyproxy") or next(
        (p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy") if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy-bin; .ci/run does)")
    port = free_port()
    log = directory / "tinyproxy.log"
    config = directory / "tinyproxy.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "MaxClients 50",
        "Allow 127.0.0.1",
        "LogLevel Connect",
        f'LogFile "{log}"',
        # No ConnectPort line: CONNECT may reach any port (the test servers' are random).
    ]
    if auth:
        lines.append(f"BasicAuth alice {SECRET}")
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (
                f"tinyproxy exited ({proc.returncode}): {config.read_text()}"
            )
            assert time.monotonic() < deadline, "tinyproxy did not start listening"
            time.sleep(0.02)
        yield Proxy(port, log)
    finally:
        proc.terminate()
        proc.wait(10)
