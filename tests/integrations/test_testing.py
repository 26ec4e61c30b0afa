"""The pytest plugin: ``sms_outbox`` captures Gateway and outbox-worker sends, and is inert
until a test asks for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message, Status
from smsgate.outbox import Outbox
from tests.integrations.snippets import run

PLIVO = "plivo://MAAAAAAAAAAAAAAAAAAA:token@+14155550100?base_url=http://127.0.0.1:9"


def test_the_docs_example(sms_outbox: Any) -> None:
    run("testing.md", "fixture")["test_order_confirmation"](sms_outbox)


def test_gateway_sends_are_captured_not_sent(sms_outbox: Any, twilio: EmulatorThread) -> None:
    gateway = smsgate.Gateway.from_url(twilio.emulator.provider_url())
    result = gateway.send("+16502530000", "Your code is 123456", purpose="otp")
    bulk = gateway.send_many(
        Message(to=n, body="shipped") for n in ("+16502530000", "+16502530001")
    )
    gateway.close()
    assert twilio.emulator.messages == []
    assert result.status is Status.SENT and result.provider_message_id == "captured-1"
    assert [r.provider_message_id for r in bulk] == ["captured-2", "captured-3"]
    sms_outbox.assert_sent(to="+1 650 253 0000", body_contains="123456", purpose="otp")
    sms_outbox.assert_sent(body_contains="shipped", count=2)
    with pytest.raises(AssertionError, match="found 0; sent: to \\+16502530000"):
        sms_outbox.assert_sent(to="+16502530009")


def test_plivo_bulk_and_outbox_worker_sends_are_captured(sms_outbox: Any, store_url: str) -> None:
    gateway = smsgate.Gateway.from_url(PLIVO)  # its own asend_many (a "<"-joined bulk request)
    results = gateway.send_many(
        [Message(to="+16502530000", body="a"), Message(to="+16502530001", body="a")]
    )
    gateway.close()
    assert [r.status for r in results] == [Status.SENT, Status.SENT]

    from smsgate.providers import create_provider

    with Outbox(store_url) as outbox:
        mid = outbox.submit(Message(to="+16502530002", body="from the worker"))
        outbox.run_worker([create_provider(PLIVO)], until_idle=True, handle_signals=False)
        assert outbox.status(mid).status is Status.SENT
    sms_outbox.assert_sent(to="+16502530002", body_contains="from the worker")
    assert len(sms_outbox) == 3


def test_nothing_is_captured_or_patched_without_the_fixture(twilio: EmulatorThread) -> None:
    from smsgate.providers.base import Provider

    original = Provider.asend
    from smsgate.testing import SmsOutbox

    with SmsOutbox():
        assert Provider.asend is not original
    assert Provider.asend is original
    gateway = smsgate.Gateway.from_url(twilio.emulator.provider_url())
    gateway.send("+16502530000", "real")
    gateway.close()
    assert [m.body for m in twilio.emulator.messages] == ["real"]


@pytest.mark.slow
def test_the_plugin_is_registered_and_inert(tmp_path: Path) -> None:
    """The entry point registers the plugin; a run that never asks for sms_outbox imports none
    of smsgate's sending code."""
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_untouched(request):
                assert request.config.pluginmanager.has_plugin("smsgate")
                loaded = [m for m in sys.modules if m.startswith("smsgate.")]
                assert loaded == ["smsgate.testing", "smsgate.testing.plugin"], loaded
            """
        )
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
