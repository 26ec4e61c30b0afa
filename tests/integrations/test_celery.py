"""The Celery task in real worker processes on Redis (``SMSGATE_TEST_REDIS_URL``), against the
Twilio emulator: sends, ``send_at`` as ``eta``, and a worker SIGKILLed mid-send whose task is
delivered again and does not send twice."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery")
pytest.importorskip("redis")

from smsgate.emulators.base import Callbacks, EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator

REDIS_ENV = "SMSGATE_TEST_REDIS_URL"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV, "").strip()
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set (e.g. redis://127.0.0.1:6379/0); .ci/run sets it")
    return url


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Workers:
    """Celery worker processes on this session's own queue and key prefix.

    One Celery app per session: Celery binds a shared task to the first app that finalizes, so
    a second app in the same process would publish to the first one's queue.
    """

    def __init__(self, url: str, provider_url: str) -> None:
        self.prefix = f"smsgate-test-{secrets.token_hex(6)}:"
        names = (REDIS_ENV, "SMSGATE_TEST_CELERY_PREFIX", "SMSGATE_TEST_PROVIDER_URL")
        self.saved_env = {name: os.environ.get(name) for name in names}
        os.environ.update(
            {
                REDIS_ENV: url,
                "SMSGATE_TEST_CELERY_PREFIX": self.prefix,
                "SMSGATE_TEST_PROVIDER_URL": provider_url,
            }
        )
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs: list[subprocess.Popen[bytes]] = []
        import smsgate.integrations.celery  # noqa: F401 - registers the shared task
        from tests.integrations import celeryproject

        self.app = celeryproject.app
        self.redis_url = url
        self.send_sms = self.app.tasks["smsgate.send_sms"]

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.integrations.celeryproject",
                "worker",
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self.procs.clear()

    def close(self) -> None:
        self.stop_all()
        import redis

        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(f"{self.prefix}*"):
            client.delete(key)
        client.close()
        self.app.close()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with TwilioEmulator(callbacks=Callbacks(delay=3600)).run_in_thread() as thread:
        yield thread


@pytest.fixture(scope="module")
def session_workers(emulator: EmulatorThread) -> Iterator[Workers]:
    made = Workers(redis_url(), emulator.emulator.provider_url())
    yield made
    made.close()


@pytest.fixture
def workers(session_workers: Workers, emulator: EmulatorThread) -> Iterator[Workers]:
    emulator.call(emulator.emulator.reset)
    emulator.call(lambda: emulator.emulator.faults.update({"hang_rate": 0.0}))
    yield session_workers
    session_workers.stop_all()


def result_of(workers: Workers, task_id: str, timeout: float = 20) -> dict[str, Any]:
    from celery.result import AsyncResult

    value: dict[str, Any] = AsyncResult(task_id, app=workers.app).get(timeout=timeout)
    return value


def test_the_task_sends_once_and_send_at_becomes_eta(
    workers: Workers, emulator: EmulatorThread
) -> None:
    send_sms = workers.send_sms
    workers.start()
    now = send_sms.apply_async(args=["+15555550100", "Your appointment tomorrow at 10 AM."])
    later = send_sms.apply_async(
        args=["+15555550100", "Reminder: appointment in 1 hour"],
        kwargs={"send_at": datetime.now(UTC) + timedelta(seconds=2)},
    )
    assert later.id is not None
    first = result_of(workers, now.id)
    assert first["provider_message_id"] == emulator.emulator.messages[0].id
    assert len(emulator.emulator.messages) == 1, "the eta message went out early"
    second = result_of(workers, later.id)
    assert [m.body for m in emulator.emulator.messages] == [
        "Your appointment tomorrow at 10 AM.",
        "Reminder: appointment in 1 hour",
    ]
    assert second["provider_message_id"] == emulator.emulator.messages[1].id


def test_a_naive_send_at_is_refused_before_queueing(workers: Workers) -> None:
    from smsgate.errors import InvalidMessage

    send_sms = workers.send_sms
    with pytest.raises(InvalidMessage) as caught:
        send_sms.apply_async(args=["+15555550100", "x"], kwargs={"send_at": datetime.now()})
    assert caught.value.field == "send_at"


def test_a_worker_killed_mid_send_does_not_send_twice_on_redelivery(
    workers: Workers, emulator: EmulatorThread
) -> None:
    send_sms = workers.send_sms
    # The emulator accepts the message, then never answers: the worker is mid-send.
    emulator.call(lambda: emulator.emulator.faults.update({"hang_rate": 1.0, "hang_seconds": 4}))
    first = workers.start()
    task = send_sms.apply_async(args=["+15555550100", "Your code is 481902"])
    wait_until(lambda: len(emulator.emulator.messages) == 1, 20, "the first send to arrive")
    workers.kill(first)
    emulator.call(lambda: emulator.emulator.faults.update({"hang_rate": 0.0}))

    workers.start()  # takes the task again once its visibility timeout (2 s) passed
    outcome = result_of(workers, task.id, timeout=30)
    assert len(emulator.emulator.messages) == 1, "the redelivered task sent the text again"
    # the second run asked Twilio, found the message and recorded it
    assert outcome["provider_message_id"] == emulator.emulator.messages[0].id


def test_the_docs_celery_snippets_run_on_a_real_worker(tmp_path: Path) -> None:
    """docs/integrations/celery.md's app and usage blocks, run as written (plus a key prefix of
    this test's own, as the shared Redis needs) by a worker and a client process."""
    import redis

    from smsgate.emulators.smspm import SmspmEmulator
    from tests.integrations.snippets import snippet

    url = redis_url()
    prefix = f"smsgate-docs-{secrets.token_hex(6)}:"
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    isolation = (
        f"\ncelery_app.conf.broker_transport_options = {{'global_keyprefix': {prefix!r}}}\n"
        f"celery_app.conf.result_backend_transport_options = {{'global_keyprefix': {prefix!r}}}\n"
        f"celery_app.conf.task_default_queue = {prefix + 'sms'!r}\n"
    )
    (package / "celery_app.py").write_text(snippet("celery.md", "app") + isolation)
    usage = "import app.celery_app\n" + snippet("celery.md", "usage")
    with SmspmEmulator().run_in_thread() as smspm:
        env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
            "SMSPM_URL": smspm.emulator.provider_url(),
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app.celery_app",
                "worker",
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        try:
            subprocess.run(
                [sys.executable, "-c", usage], env=env, cwd=tmp_path, check=True, timeout=60
            )
            wait_until(lambda: len(smspm.emulator.messages) >= 1, 30, "the queued text")
            time.sleep(0.5)  # long enough for a wrongly early eta message to arrive too
            assert [m.body for m in smspm.emulator.messages] == [
                "Your appointment tomorrow at 10 AM."
            ]
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
            client.close()


def test_delay_on_commit_queues_only_after_the_django_transaction_commits(
    workers: Workers, emulator: EmulatorThread, django_project: None
) -> None:
    from django.db import transaction

    workers.start()

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        workers.send_sms.delay_on_commit("+15555550100", "rolled back")
        raise Rollback
    with transaction.atomic():
        workers.send_sms.delay_on_commit("+15555550100", "committed")
    wait_until(lambda: len(emulator.emulator.messages) >= 1, 20, "the committed text")
    time.sleep(0.5)
    assert [m.body for m in emulator.emulator.messages] == ["committed"]


def test_rate_limited_sends_are_retried_no_sooner_than_retry_after(
    workers: Workers, emulator: EmulatorThread
) -> None:
    from celery.result import AsyncResult

    emulator.call(
        lambda: emulator.emulator.faults.update({"rate_limit_rate": 1.0, "retry_after": 1.5})
    )
    workers.start()
    try:
        task = workers.send_sms.apply_async(args=["+15555550100", "after the throttle"])
        state = AsyncResult(task.id, app=workers.app)
        wait_until(lambda: state.state == "RETRY", 20, "the task to be retried after a 429")
        throttled_at = time.time()
        emulator.call(lambda: emulator.emulator.faults.update({"rate_limit_rate": 0.0}))
        outcome = result_of(workers, task.id)
    finally:
        emulator.call(lambda: emulator.emulator.faults.update({"rate_limit_rate": 0.0}))
    (sent,) = emulator.emulator.messages
    assert outcome["provider_message_id"] == sent.id
    # Twilio said Retry-After: 1.5; the retry came no sooner (less the polling above)
    assert sent.created_at - throttled_at >= 1.2


def test_a_transient_failure_is_retried_and_sent_once(
    workers: Workers, emulator: EmulatorThread
) -> None:
    from celery.result import AsyncResult

    emulator.call(lambda: emulator.emulator.faults.update({"error_rate": 1.0}))
    workers.start()
    try:
        task = workers.send_sms.apply_async(args=["+15555550100", "after the outage"])
        state = AsyncResult(task.id, app=workers.app)
        wait_until(lambda: state.state == "RETRY", 20, "the task to be retried after a 503")
        emulator.call(lambda: emulator.emulator.faults.update({"error_rate": 0.0}))
        outcome = result_of(workers, task.id)
    finally:
        emulator.call(lambda: emulator.emulator.faults.update({"error_rate": 0.0}))
    (sent,) = emulator.emulator.messages
    assert outcome["provider_message_id"] == sent.id


def test_an_interrupted_send_is_resolved_by_what_the_provider_can_do(
    emulator: EmulatorThread,
) -> None:
    """After a worker died between claiming and recording: resend where the provider drops
    repeats, ask where it can be asked, and otherwise stop at unknown."""
    from smsgate.gateway import Gateway
    from smsgate.integrations.celery import _resolve_interrupted
    from smsgate.message import Message

    message = Message(to="+15555550100", body="Your code is 1234", idempotency_key="celery:t1")
    claimed = time.time()

    dedupes = Gateway.from_url("smsroute://KEY@MyApp?base_url=http://127.0.0.1:9")
    assert _resolve_interrupted(dedupes, message, claimed) is None  # same key again: safe

    twilio = Gateway.from_url(emulator.emulator.provider_url())
    assert _resolve_interrupted(twilio, message, claimed) is None  # Twilio has no such message
    sent = twilio.send(message)
    found = _resolve_interrupted(twilio, message, claimed)
    assert found is not None and found["provider_message_id"] == sent.provider_message_id

    blind = Gateway.from_url("vonage://key:secret@MyApp?base_url=http://127.0.0.1:9")
    unknown = _resolve_interrupted(blind, message, claimed)
    assert unknown is not None and unknown["status"] == "unknown"
    assert "not sent again" in unknown["error"]
    for gateway in (dedupes, twilio, blind):
        gateway.close()
