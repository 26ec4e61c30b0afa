"""The FastAPI integration with Starlette's TestClient; the app is docs/integrations/fastapi.md's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("httpx")

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.smspm import SmspmEmulator
from smsgate.integrations.fastapi import get_outbox
from smsgate.message import Status
from smsgate.outbox import Outbox
from smsgate.testing import post_receipt, post_stop
from tests.integrations.snippets import run

TWILIO = "twilio://AC00000000000000000000000000000000:fastapi-token@+15017122661"


@pytest.fixture
def smspm(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    with SmspmEmulator().run_in_thread() as thread:
        monkeypatch.setenv("SMSPM_URL", thread.emulator.provider_url())
        yield thread


def test_the_docs_app_sends_with_the_lifespan_gateway(smspm: EmulatorThread) -> None:
    app = run("fastapi.md", "app")["app"]
    with TestClient(app) as client:
        ok = client.post("/notify", params={"phone": "+37256789045", "message": "Hello"})
        bad = client.post("/notify", params={"phone": "12", "message": "Hello"})
    assert ok.status_code == 200
    (sent,) = smspm.emulator.messages
    assert ok.json() == {"messageId": sent.id}
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "to"


def test_the_documented_override_replaces_the_gateway(
    smspm: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the app's own provider points nowhere: only the override can send
    monkeypatch.setenv("SMSPM_URL", "smspm://h:t@SMSPM?base_url=http://127.0.0.1:9")
    scope = run("fastapi.md", "app")
    test = run("fastapi.md", "override", {"app": scope["app"]})
    test["test_notify"](smspm.emulator.provider_url())
    assert [m.body for m in smspm.emulator.messages] == ["hi"]
    assert scope["app"].dependency_overrides == {}


def test_webhook_router_records_receipts_in_the_outbox_once(tmp_path: Path) -> None:
    from smsgate.integrations.fastapi import SMSGate, webhook_router

    store = f"sqlite:///{tmp_path / 'api.db'}"
    sms = SMSGate({"store": store, "providers": {"twilio": {"url": TWILIO}}}, backend="outbox")
    heard: list[Any] = []
    sms.on_status(lambda provider, event: heard.append((provider, event.status)))
    sms.on_opt_out(lambda provider, **details: heard.append((provider, details["source"])))
    app = FastAPI(lifespan=sms.lifespan)
    app.include_router(webhook_router(), prefix="/sms/webhooks")

    @app.post("/queue")
    async def queue(phone: str, outbox: Annotated[Outbox, Depends(get_outbox)]) -> dict[str, str]:
        return {"id": await outbox.asubmit({"to": phone, "body": "queued"})}

    with TestClient(app) as client:
        queued = client.post("/queue", params={"phone": "+16502530000"})
        assert queued.status_code == 200, queued.text
        mid = queued.json()["id"]
        with Outbox(store) as box:
            from smsgate.message import DeliveryEvent

            # what the worker would record after sending: the provider's id for the message
            box.record_event(
                DeliveryEvent(
                    provider="twilio",
                    provider_message_id="SMabc",
                    status=Status.SENT,
                    event_id="sent-by-worker",
                    message_id=mid,
                )
            )
        first = post_receipt(
            client,
            "/sms/webhooks/twilio/status",
            provider_url=TWILIO,
            message_id="SMabc",
            to="+16502530000",
        )
        again = post_receipt(
            client,
            "/sms/webhooks/twilio/status",
            provider_url=TWILIO,
            message_id="SMabc",
            to="+16502530000",
        )
        stop = post_stop(
            client,
            "/sms/webhooks/twilio/inbound",
            provider_url=TWILIO,
            sender="+16502530000",
            to="+15017122661",
        )
        unknown = client.post("/sms/webhooks/nobody/status")
    assert [r.json()["stored"] for r in first] == [1, 1]
    assert [r.json()["stored"] for r in again] == [0, 0]
    assert stop.status_code == 200
    assert unknown.status_code == 404
    assert heard == [("twilio", Status.SENT), ("twilio", Status.DELIVERED), ("twilio", "keyword")]
    with Outbox(store) as box:
        assert box.status(mid).status is Status.DELIVERED


def test_a_direct_app_without_providers_fails_at_startup_naming_the_field() -> None:
    from smsgate.errors import ConfigError
    from smsgate.integrations.fastapi import SMSGate

    sms = SMSGate({})
    app = FastAPI(lifespan=sms.lifespan)
    with pytest.raises(ConfigError) as caught, TestClient(app):
        pass
    assert caught.value.field == "providers"
