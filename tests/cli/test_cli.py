"""The ``smsgate`` console script, run as a real subprocess (no CliRunner, no mocks)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator


def _command() -> list[str]:
    beside = Path(sys.executable).with_name("smsgate")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("smsgate")
    assert found, "the smsgate console script is not installed (pip install -e .)"
    return [found]


SMSGATE = _command()


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SMSGATE_PROVIDER"}
    environment.update(env or {})
    return subprocess.run(
        [*SMSGATE, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    if "--json" in result.args:
        # under --json the error is one JSON object, with the same message and exit code
        error = json.loads(lines[0])["error"]
        assert error["exit_code"] == code
        return f"smsgate: {error['message']}"
    assert lines[0].startswith("smsgate: ")
    return lines[0]


# -- version, numbers -------------------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"smsgate {smsgate.__version__}"


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("normalize", "lookup", "send", "emulate"):
        assert command in result.stdout


def test_normalize_prints_e164() -> None:
    result = run("normalize", "(415) 555-2671", "--region", "US")
    assert (result.returncode, result.stdout, result.stderr) == (0, "+14155552671\n", "")


def test_normalize_json_has_exactly_the_documented_keys() -> None:
    result = run("normalize", "0151 23456789", "--region", "DE", "--json")
    assert result.returncode == 0
    assert one_json_object(result.stdout) == {
        "e164": "+4915123456789",
        "region": "DE",
        "type": "mobile",
        "valid": True,
    }


def test_normalize_lenient_admits_test_ranges() -> None:
    strict = run("normalize", "+1 555 555 0100", "--strict")
    line = assert_one_line_error(strict, 2)
    assert "not a valid number" in line and "drop --strict" in line  # CLI advice, not Python
    lenient = run("normalize", "+1 555 555 0100", "--lenient", "--json")
    assert lenient.returncode == 0
    assert one_json_object(lenient.stdout) == {
        "e164": "+15555550100",
        "region": "US",
        "type": "unknown",
        "valid": False,
    }


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("normalize", "call me"), "letters"),
        (("normalize", "+999 1234567"), "unknown country code"),
        (("normalize", "+1 415 555"), "too short"),
        (("normalize", "4155552671"), "--region"),
        (("normalize", "415 555 2671", "--region", "XX"), "'XX'"),
        (("normalize", "call me", "--json"), "letters"),
        (("lookup", "+999 1234567"), "unknown country code"),
        (("lookup", "nope", "--json"), "letters"),
    ],
)
def test_bad_numbers_exit_2_with_one_line(args: tuple[str, ...], words: str) -> None:
    line = assert_one_line_error(run(*args), 2)
    assert words in line


def test_lookup_readable_table() -> None:
    result = run("lookup", "+49 151 23456789")
    assert result.returncode == 0, result.stderr
    rows = {row.split()[0]: row.split()[1:] for row in result.stdout.splitlines() if row.strip()}
    assert rows["e164"] == ["+4915123456789"]
    assert rows["type"] == ["mobile"]
    assert rows["region"] == ["DE"]
    assert rows["carrier"] == ["T-Mobile"]
    assert rows["time_zones"] == ["Europe/Berlin"]


def test_lookup_json() -> None:
    result = run("lookup", "020 7946 0958", "--region", "GB", "--json")
    assert result.returncode == 0
    data = one_json_object(result.stdout)
    assert data["e164"] == "+442079460958"
    assert data["type"] == "fixed_line"
    assert data["time_zones"] == ["Europe/London"]
    assert data == smsgate.lookup("+442079460958").to_dict()


def test_usage_errors_exit_2_without_traceback() -> None:
    for args in (("normalize",), ("normalize", "1", "--bogus"), ("no-such-command",)):
        result = run(*args)
        assert result.returncode == 2
        line = assert_one_line_error(result, 2)
        assert line.endswith("--help)"), line  # says where to read how to call it


# -- send against a Twilio emulator on a thread -----------------------------------------------


@pytest.fixture
def twilio() -> Iterator[EmulatorThread]:
    running = TwilioEmulator().run_in_thread()
    yield running
    running.stop()


def accepted(emulator: EmulatorThread) -> list[dict[str, Any]]:
    summary = emulator.call(emulator.emulator.summary)
    messages: list[dict[str, Any]] = summary["messages"]
    return messages


def test_send_prints_ids_status_segments_and_encoding(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url()
    result = run("send", "+1 555 555 0100", "Your code is 481902", "--provider", url)
    assert result.returncode == 0, result.stderr
    [stored] = accepted(twilio)
    assert stored["to"] == "+15555550100" and stored["body"] == "Your code is 481902"
    out = result.stdout
    assert "msg_" in out  # our id
    assert stored["id"] in out  # the provider's id
    assert "queued" in out and "1 segment" in out and "GSM-7" in out
    assert twilio.emulator.credentials.partition(":")[2] not in out + result.stderr


def test_send_json(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url()
    body = "Привет " * 12  # 84 UCS-2 units: two parts
    result = run("send", "+447700900123", body, "--provider", url, "--json")
    assert result.returncode == 0, result.stderr
    data = one_json_object(result.stdout)
    [stored] = accepted(twilio)
    assert data["id"].startswith("msg_")
    assert data["provider"] == "twilio"
    assert data["provider_message_id"] == stored["id"]
    assert data["status"] == "queued"
    assert (data["segments"], data["encoding"]) == (2, "UCS-2")
    assert data["to"] == "+447700900123"
    assert data["error"] is None


def test_send_mms_with_sender(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url()
    result = run(
        "send",
        "+15555550100",
        "look",
        "--provider",
        url,
        "--sender",
        "+15017122661",
        "--media",
        "https://example.com/a.jpg",
        "--media",
        "https://example.com/b.jpg",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    [stored] = accepted(twilio)
    assert stored["media"] == ["https://example.com/a.jpg", "https://example.com/b.jpg"]
    assert stored["sender"] == "+15017122661"
    assert one_json_object(result.stdout)["provider_message_id"].startswith("MM")


def test_send_reads_smsgate_provider(twilio: EmulatorThread) -> None:
    env = {"SMSGATE_PROVIDER": twilio.emulator.provider_url()}
    result = run("send", "+15555550100", "from the environment", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert one_json_object(result.stdout)["status"] == "queued"
    assert [m["body"] for m in accepted(twilio)] == ["from the environment"]


@pytest.mark.parametrize(
    ("to", "code", "words"),
    [
        ("+15005550004", "21610", "opted out"),
        ("+15005550001", "21211", "not a valid phone number"),
        ("+15005550009", "21614", "not a mobile"),
    ],
)
def test_provider_error_exits_1_with_code_and_explanation(
    twilio: EmulatorThread, to: str, code: str, words: str
) -> None:
    result = run("send", to, "hello", "--provider", twilio.emulator.provider_url())
    line = assert_one_line_error(result, 1)
    assert words in line
    assert f"twilio {code}" in line
    assert accepted(twilio) == []


def test_wrong_credentials_exit_1_without_leaking_them(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url().replace("emulator-auth-token", "wrong-token-xyz")
    line = assert_one_line_error(run("send", "+15555550100", "hi", "--provider", url), 1)
    assert "20003" in line
    assert "wrong-token-xyz" not in line


def test_unreachable_provider_exits_1(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url().replace(twilio.url, f"http://127.0.0.1:{free_port()}")
    line = assert_one_line_error(run("send", "+15555550100", "hi", "--provider", url), 1)
    assert "connect" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("send", "nope", "hi"), "letters"),
        (("send", "+15555550100", ""), "body is empty"),
        (("send", "+15555550100", "x" * 1601), "1600"),
        (("send", "+15555550100", "hi", "--media", "ftp://example.com/a.jpg"), "http"),
        (("send", "+15555550100", "hi", "--purpose", "spam"), "purpose"),
        (("send", "+15555550100", "hi", "--sender", "Bad\nSender"), "control"),
        (("send", "+15555550100", "hi", "--provider", "bogus://x"), "unknown provider"),
        (("send", "+15555550100", "hi", "--provider", "twilio://@+15005550006"), "twilio://"),
    ],
)
def test_send_bad_input_exits_2(twilio: EmulatorThread, args: tuple[str, ...], words: str) -> None:
    env = {"SMSGATE_PROVIDER": twilio.emulator.provider_url()}
    line = assert_one_line_error(run(*args, env=env), 2)
    assert words in line
    assert accepted(twilio) == []


def test_send_without_a_provider_says_how_to_give_one() -> None:
    line = assert_one_line_error(run("send", "+15555550100", "hi"), 2)
    assert "--provider" in line and "SMSGATE_PROVIDER" in line


# -- smsgate emulate as its own process -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def read_lines(proc: subprocess.Popen[str], count: int, timeout: float = 15.0) -> list[str]:
    """Read ``count`` lines of the process's stdout, failing after ``timeout`` seconds."""
    stream = proc.stdout
    assert stream is not None
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for _ in range(count):
            line = stream.readline()
            found.put(line.rstrip("\n") if line else None)
            if not line:
                return

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count:
        try:
            line = found.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"waited {timeout} s for output; got {lines}") from None
        if line is None:
            raise AssertionError(f"process ended early; got {lines}")
        lines.append(line)
    return lines


@pytest.fixture
def emulate_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *SMSGATE,
            "emulate",
            "twilio",
            "--port",
            str(port),
            "--credentials",
            "ACcli0000000000000000000000000000:cli-token",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_emulate_prints_credentials_serves_and_stops_on_sigterm(
    emulate_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = emulate_process
    lines = read_lines(proc, 3)
    text = "\n".join(lines)
    assert f"http://127.0.0.1:{port}" in lines[0]
    assert "credentials: ACcli0000000000000000000000000000:cli-token" in text
    [url_line] = [line for line in lines if line.startswith("provider URL: ")]
    provider_url = url_line.removeprefix("provider URL: ")
    assert provider_url.startswith("twilio://ACcli0000000000000000000000000000:cli-token@")
    assert f"base_url=http://127.0.0.1:{port}" in provider_url

    # It serves: the printed provider URL works as is, from this process.
    with smsgate.Gateway.from_url(provider_url) as gateway:
        result = gateway.send("+15555550100", "hello emulator")
    assert result.ok and result.provider_message_id
    import requests

    listed = requests.get(f"http://127.0.0.1:{port}/_emulator/messages", timeout=10).json()
    assert [m["id"] for m in listed["messages"]] == [result.provider_message_id]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_emulator/messages", timeout=2)


def test_emulate_on_a_busy_port_exits_1_with_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("emulate", "twilio", "--port", str(port), timeout=20)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("smsgate: ")
    ]
    assert str(port) in result.stderr


def test_emulate_unknown_name_exits_2() -> None:
    line = assert_one_line_error(run("emulate", "nosuchprovider"), 2)
    assert "twilio" in line  # it lists the choices


def test_send_to_several_recipients_with_the_text_from_stdin(twilio: EmulatorThread) -> None:
    url = twilio.emulator.provider_url()
    result = subprocess.run(
        [*SMSGATE, "send", "+15555550100", "+1 555 555 0101", "-", "--provider", url, "--json"],
        input="Your order shipped\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    sent = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["to"] for item in sent] == ["+15555550100", "+15555550101"]
    stored = accepted(twilio)
    assert [(m["to"], m["body"]) for m in stored] == [
        ("+15555550100", "Your order shipped"),
        ("+15555550101", "Your order shipped"),
    ]


def test_send_reads_recipients_from_stdin_and_exits_1_when_one_fails(
    twilio: EmulatorThread,
) -> None:
    url = twilio.emulator.provider_url()
    result = subprocess.run(
        [*SMSGATE, "send", "-", "hello", "--provider", url],
        input="+15555550100\n+15005550001\n",  # the second is Twilio's invalid magic number
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("sent msg_") == 1
    assert "+15005550001" in result.stderr and "21211" in result.stderr


def test_send_verbose_shows_the_provider_exchange_with_secrets_masked(
    twilio: EmulatorThread,
) -> None:
    url = twilio.emulator.provider_url()
    token = twilio.emulator.credentials.partition(":")[2]
    result = run("send", "+15555550100", "hi there", "--provider", url, "-v")
    assert result.returncode == 0, result.stderr
    assert "> POST http://127.0.0.1:" in result.stderr
    assert '"Body": "hi there"' in result.stderr  # what was sent
    assert '< {"sid": "SM' in result.stderr  # what the provider answered
    assert "password ***" in result.stderr
    assert token not in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["smspm", "smsroute"])
def test_send_verbose_masks_credentials_wherever_they_travel(name: str) -> None:
    from smsgate.emulators import emulator_class

    with emulator_class(name)().run_in_thread() as running:
        url = running.emulator.provider_url()
        result = run("send", "+15555550100", "hi", "--provider", url, "-v")
    assert result.returncode == 0, result.stderr
    for secret in running.emulator.credentials.split(":"):
        assert secret not in result.stderr, secret  # SMSPM's hash travels as a field "hash"
    assert "***" in result.stderr
    if name == "smsroute":  # an idempotency key is not a secret: shown, to see what was sent
        assert re.search(r"> Idempotency-Key: msg_\w+", result.stderr), result.stderr
