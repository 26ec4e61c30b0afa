"""The Flask extension with Flask's test client; the app is docs/integrations/flask.md's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flask")

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.smspm import SmspmEmulator
from smsgate.testing import post_receipt, post_stop
from tests.integrations.snippets import run

TWILIO = "twilio://AC00000000000000000000000000000000:flask-token@+15017122661"


@pytest.fixture
def smspm(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    with SmspmEmulator().run_in_thread() as thread:
        monkeypatch.setenv("SMSPM_URL", thread.emulator.provider_url())
        yield thread


@pytest.fixture
def docs_app(smspm: EmulatorThread) -> dict[str, Any]:
    return run("flask.md", "app")


def test_the_docs_route_sends_through_the_provider(
    docs_app: dict[str, Any], smspm: EmulatorThread
) -> None:
    client = docs_app["app"].test_client()
    answer = client.post("/order/42/notify", json={"phone": "+37256789045"})
    assert answer.status_code == 200 and answer.json is not None and answer.json["sent"] is True
    (sent,) = smspm.emulator.messages
    assert (sent.to, sent.body) == ("+37256789045", "Order #42 confirmed. Delivery in 2-4 days.")


def test_a_bad_number_is_a_400_naming_the_field(docs_app: dict[str, Any]) -> None:
    client = docs_app["app"].test_client()
    answer = client.post("/order/42/notify", json={"phone": "12"})
    assert answer.status_code == 400 and answer.json is not None
    assert answer.json["field"] == "to" and answer.json["error"]


def test_testing_suppresses_sends_and_record_messages_sees_them(
    docs_app: dict[str, Any], smspm: EmulatorThread, sms_outbox: Any
) -> None:
    app, sms = docs_app["app"], docs_app["sms"]
    app.testing = True
    scope = run("flask.md", "record", {"sms": sms})
    scope["test_notify"](app.test_client())
    assert smspm.emulator.messages == []
    sms_outbox.assert_sent(to="+37256789045", body_contains="Order #42")


def test_init_app_in_a_factory_and_the_webhook_blueprint() -> None:
    from flask import Flask

    from smsgate.integrations import flask as sms_flask

    sms = sms_flask.SMSGate()

    def create_app() -> Flask:
        app = Flask("factory")
        app.config["SMSGATE_PROVIDERS"] = {"twilio": {"url": TWILIO}}
        app.config["SMSGATE_BACKEND"] = "console"
        sms.init_app(app)
        app.register_blueprint(sms.webhooks, url_prefix="/sms/webhooks")
        return app

    client = create_app().test_client()
    statuses: list[Any] = []
    stops: list[Any] = []

    def on_status(sender: str, event: Any) -> None:
        statuses.append(event)

    def on_stop(sender: str, **kwargs: Any) -> None:
        stops.append(kwargs)

    with (
        sms_flask.status_changed.connected_to(on_status),
        sms_flask.opted_out.connected_to(on_stop),
    ):
        answers = post_receipt(
            client,
            "/sms/webhooks/twilio/status",
            provider_url=TWILIO,
            message_id="SM9",
            to="+16502530000",
        )
        stop = post_stop(
            client,
            "/sms/webhooks/twilio/inbound",
            provider_url=TWILIO,
            sender="+16502530000",
            to="+15017122661",
        )
        forged = post_receipt(
            client,
            "/sms/webhooks/twilio/status",
            provider_url=TWILIO.replace("flask-token", "forged"),
            message_id="SM9",
            to="+16502530000",
        )
    assert [a.status_code for a in answers] == [200, 200]
    assert [e.status.value for e in statuses] == ["sent", "delivered"]
    assert stop.status_code == 200 and stops[0]["source"] == "keyword"
    assert [a.status_code for a in forged] == [403, 403]


def test_missing_init_app_is_explained() -> None:
    from flask import Flask

    from smsgate.integrations.flask import SMSGate

    app = Flask("bare")
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        SMSGate().send("+16502530000", "hi")


def test_outbox_backend_queues_and_a_stop_reply_refuses_later_sends(tmp_path: Any) -> None:
    from flask import Flask

    from smsgate.errors import OptedOut
    from smsgate.integrations.flask import SMSGate
    from smsgate.message import Status

    app = Flask("queued")
    app.config.update(
        SMSGATE_BACKEND="outbox",
        SMSGATE_STORE=f"sqlite:///{tmp_path / 'flask.db'}",
        SMSGATE_PROVIDERS={"twilio": {"url": TWILIO}},
    )
    sms = SMSGate(app)
    app.register_blueprint(sms.webhooks, url_prefix="/sms/webhooks")
    client = app.test_client()
    with app.app_context():
        queued = sms.send("+16502530000", "first", sender="+15017122661")
        assert queued.status is Status.QUEUED
        stop = post_stop(
            client,
            "/sms/webhooks/twilio/inbound",
            provider_url=TWILIO,
            sender="+16502530000",
            to="+15017122661",
        )
        assert stop.status_code == 200 and stop.json == {"received": 1, "stored": 1}
        with pytest.raises(OptedOut):
            sms.send("+16502530000", "second", sender="+15017122661")
        sms.close(app)
