"""The light core install: smsgate without extras, in a fresh virtual environment, sends a text
through an emulator from Python and from the CLI, and ``smsgate serve`` names the extra to add.

The package goes in with ``pip install --no-deps`` and then exactly the core dependencies that
pyproject.toml lists, from the local pip cache or registry; the emulator runs in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator

ROOT = Path(__file__).resolve().parent.parent
#: what only the extras install; none of it may be importable in the core install
EXTRA_MODULES = ("fastapi", "uvicorn", "aiohttp", "aiosmtpd", "aiosmtplib", "prometheus_client")

pytestmark = pytest.mark.slow


def _pip(venv: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # This environment's pip installs into the new one (--python): the new one needs no pip of
    # its own, which saves bootstrapping one (ensurepip) on every run.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--python",
            str(venv / "bin" / "python"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    built = _pip(venv, "install", "-q", "--no-deps", str(ROOT), timeout=300)
    assert built.returncode == 0, built.stderr
    core = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    installed = _pip(venv, "install", "-q", *core, timeout=600)
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"the core dependencies cannot be installed here: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    return venv


@pytest.fixture
def twilio() -> Iterator[EmulatorThread]:
    with TwilioEmulator().run_in_thread() as thread:
        yield thread


def test_the_core_install_has_no_extra(core_venv: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {EXTRA_MODULES!r} if u.find_spec(m)])"
    result = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_library_sends_through_an_emulator(core_venv: Path, twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url()
    script = (
        "import sys, smsgate\n"
        "gw = smsgate.Gateway.from_url(sys.argv[1])\n"
        "res = gw.send('+15555550100', 'from the core install')\n"
        "bad = gw.send_many(['+15555550101', 'not-a-number'], body='many')\n"
        "gw.close()\n"
        "print(res.status.value, [r.status.value for r in bad])\n"
    )
    result = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "queued ['queued', 'rejected']"
    bodies = twilio.call(lambda: [m.body for m in twilio.emulator.messages])
    assert bodies == ["from the core install", "many"]


def test_the_cli_sends_and_serve_names_the_extra(core_venv: Path, twilio: EmulatorThread) -> None:
    smsgate = str(core_venv / "bin" / "smsgate")
    url = twilio.emulator.provider_url()
    sent = subprocess.run(
        [smsgate, "send", "+15555550100", "from the CLI", "--provider", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent msg_")
    for command in (["serve"], ["demo"], ["emulate", "twilio"]):
        refused = subprocess.run([smsgate, *command], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, (command, refused.stderr)
        assert "Traceback" not in refused.stderr
        assert "pip install 'smsgate[" in refused.stderr, refused.stderr
    serve = subprocess.run([smsgate, "serve"], capture_output=True, text=True, timeout=60)
    assert "smsgate[server]" in serve.stderr


def test_the_server_extra_is_all_the_demo_needs(core_venv: Path) -> None:
    """README set-up command 1 installs ``.[server]`` and runs the demo: nothing else needed.

    Runs last in this module: it adds the [server] extra to the core environment.
    """
    server = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]["server"]
    installed = _pip(core_venv, "install", "-q", *server, timeout=600)
    assert installed.returncode == 0, installed.stderr
    demo = subprocess.run(
        [str(core_venv / "bin" / "smsgate"), "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    assert summary["ok"] is True and summary["counts"] == {"delivered": 6, "failed": 2}
