"""Every script in examples/ runs, as a user would run it, against the emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.smtp import SmtpEmulator
from smsgate.emulators.twilio import TwilioEmulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def twilio() -> Iterator[EmulatorThread]:
    with TwilioEmulator().run_in_thread() as thread:
        yield thread


@pytest.fixture(scope="module")
def smtp() -> Iterator[EmulatorThread]:
    thread = SmtpEmulator().run_in_thread()
    yield thread
    thread.stop()


def run_example(
    name: str, provider_url: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMSGATE_PROVIDER"}
    if provider_url is not None:
        env["SMSGATE_PROVIDER"] = provider_url
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_every_example_is_tested() -> None:
    tested = {"send_one.py", "send_many.py", "durable_outbox.py", "segments.py", "email_to_sms.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_send_one(twilio: EmulatorThread) -> None:
    result = run_example("send_one.py", twilio.emulator.provider_url(), "+15555550142")
    assert result.returncode == 0, result.stderr
    assert " queued via twilio as SM" in result.stdout
    bodies = twilio.call(lambda: [(m.to, m.body) for m in twilio.emulator.messages])
    assert ("+15555550142", "Your code is 481902") in bodies


def test_send_many_reports_each_recipient_and_never_raises(twilio: EmulatorThread) -> None:
    result = run_example("send_many.py", twilio.emulator.provider_url())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "(555) 555-0101 -> +15555550101" in lines[1] and "ok" in lines[1]
    assert "not-a-number" in lines[2] and "rejected" in lines[2]
    assert "21211" in lines[3]  # Twilio's own code for its invalid-number test recipient
    assert lines[-1] == "2 of 4 accepted"


def test_durable_outbox_sends_once_per_key(twilio: EmulatorThread) -> None:
    before = twilio.call(lambda: len(twilio.emulator.messages))
    result = run_example("durable_outbox.py", twilio.emulator.provider_url())
    assert result.returncode == 0, result.stderr
    assert "(same: True)" in result.stdout
    assert "worker sent 1;" in result.stdout and " is sent" in result.stdout
    assert twilio.call(lambda: len(twilio.emulator.messages)) == before + 1


def test_segments_needs_no_provider() -> None:
    result = run_example("segments.py", None)
    assert result.returncode == 0, result.stderr
    assert "UCS-2" in result.stdout and "smart: GSM-7" in result.stdout
    assert "161 units 2 segment(s)" in result.stdout


def test_email_to_sms(smtp: EmulatorThread) -> None:
    result = run_example("email_to_sms.py", smtp.emulator.provider_url())
    assert result.returncode == 0, result.stderr
    assert " sent via smtp" in result.stdout
    dead = run_example("email_to_sms.py", smtp.emulator.provider_url(), "+15555550100", "tmobile")
    assert dead.returncode == 1
    assert "reported dead" in dead.stderr and "Traceback" not in dead.stderr
