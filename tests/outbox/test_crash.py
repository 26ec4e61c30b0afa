"""Crash safety: worker processes (``smsgate worker``), one killed with SIGKILL mid-send.

The killed worker's messages must all be sent by the others, none lost, and none sent twice
without the history saying why: rows it had only claimed are sent normally once its lease
expires; rows it had started are reconciled against the provider (the Twilio emulator can be
looked up), so a message that did arrive is not sent again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message, Status
from smsgate.outbox import Outbox
from tests.outbox.conftest import emulated, sqlite_url

SMSGATE = str(Path(sys.executable).parent / "smsgate")
pytestmark = pytest.mark.slow


def write_config(path: Path, store: str, provider_url: str) -> Path:
    path.write_text(
        f"""
store = "{store}"

[providers.twilio]
url = "{provider_url}&timeout=3"

[retry]
max_attempts = 10
base_delay = "20ms"
max_delay = "200ms"

[worker]
concurrency = 6
lease_seconds = 2
batch_size = 6

[circuit_breaker]
failure_threshold = 100
cooldown = "1s"
""",
        encoding="utf-8",
    )
    return path


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [SMSGATE, "worker", "--config", str(config)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def sending_rows_of(outbox: Outbox, pid: int) -> int:
    with outbox.store._read() as tx:  # type: ignore[attr-defined]
        rows = tx.execute(
            "SELECT count(*) FROM smsgate_messages WHERE state = 'sending' AND lease_owner LIKE ?",
            (f"%:{pid}:%",),
        )
    return int(rows[0][0])


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def crash_run(store: str, tmp_path: Path, twilio: EmulatorThread, workers: int) -> None:
    emulator = emulated(twilio)
    twilio.call(lambda: emulator.faults.update({"latency": 0.08}))
    config = write_config(tmp_path / "smsgate.toml", store, emulator.provider_url())
    count = 600
    with Outbox(store, migrate=True) as outbox:
        ids = [
            outbox.submit(Message(to=f"+1555570{n:04d}", body=f"crash test {n}"))
            for n in range(count)
        ]
        log = tmp_path / "workers.log"
        procs = [start_worker(config, log) for _ in range(workers)]
        victim = procs[0]
        try:
            wait_for(lambda: sending_rows_of(outbox, victim.pid) > 0, 30, "the victim to send")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed_while_sending = _held_by(outbox, victim.pid)
            assert killed_while_sending, "the victim held no started message when killed"
            procs.append(start_worker(config, log))
            wait_for(lambda: outbox.counts().get(Status.SENT, 0) == count, 90, "every message sent")
        finally:
            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(30) for proc in procs[1:]]
        assert codes == [0] * len(codes), log.read_text()
        received = twilio.call(lambda: [(m.body, m.duplicate) for m in emulator.messages])
        bodies = sorted(body for body, _ in received)
        assert bodies == sorted(f"crash test {n}" for n in range(count))
        assert not any(duplicate for _, duplicate in received)
        for message_id in killed_while_sending:
            reasons = [e.reason or "" for e in outbox.status(message_id).events]
            assert any("its lease expired" in r and str(victim.pid) in r for r in reasons), reasons
            assert any("is not sent again" in r or "has no record of it" in r for r in reasons), (
                reasons
            )
        assert {outbox.status(i).status for i in ids} == {Status.SENT}
        assert outbox.store.work_left() == (None, None)


def _held_by(outbox: Outbox, pid: int) -> list[str]:
    with outbox.store._read() as tx:  # type: ignore[attr-defined]
        rows = tx.execute(
            "SELECT id FROM smsgate_messages WHERE state = 'sending' AND lease_owner LIKE ?",
            (f"%:{pid}:%",),
        )
    return [row[0] for row in rows]


def test_three_workers_on_postgresql_survive_a_sigkill(
    postgres_url: str, tmp_path: Path, twilio: EmulatorThread
) -> None:
    crash_run(postgres_url, tmp_path, twilio, workers=3)


def test_two_workers_on_sqlite_survive_a_sigkill(tmp_path: Path, twilio: EmulatorThread) -> None:
    crash_run(sqlite_url(tmp_path), tmp_path, twilio, workers=2)


def test_sigterm_gives_back_what_a_worker_holds(tmp_path: Path, twilio: EmulatorThread) -> None:
    emulator = emulated(twilio)
    twilio.call(lambda: emulator.faults.update({"latency": 0.3}))
    store = sqlite_url(tmp_path)
    config = write_config(tmp_path / "smsgate.toml", store, emulator.provider_url())
    with Outbox(store, migrate=True) as outbox:
        ids = [outbox.submit(Message(to=f"+1555571{n:04d}", body=f"term {n}")) for n in range(40)]
        proc = start_worker(config, tmp_path / "worker.log")
        wait_for(lambda: sending_rows_of(outbox, proc.pid) > 0, 30, "the worker to send")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        statuses = [outbox.status(i).status for i in ids]
        assert set(statuses) <= {Status.SENT, Status.QUEUED}
        assert Status.SENT in statuses and Status.QUEUED in statuses
        assert outbox.store.work_left()[1] is None  # every lease given back
        log = (tmp_path / "worker.log").read_text()
        assert "stopped:" in log
