"""smsgate for Flask, in Flask-Mail's shape.

>>> sms = SMSGate(app)                 # or sms = SMSGate(); sms.init_app(app) in a factory
>>> sms.send("+15555550100", "Your order shipped")
>>> app.register_blueprint(sms.webhooks, url_prefix="/sms/webhooks")

Configuration is ``SMSGATE_*`` keys: ``SMSGATE_CONFIG`` (a ``smsgate.toml`` path) or the file's
keys in upper case (``SMSGATE_STORE``, ``SMSGATE_PROVIDERS``, ``SMSGATE_ROUTES``,
``SMSGATE_PUBLIC_URL``, ``SMSGATE_RETRY``, ``SMSGATE_WORKER``, ``SMSGATE_SERVER``, ...), plus
``SMSGATE_BACKEND`` (``direct``, ``outbox``, ``http``, ``console``, ``locmem``),
``SMSGATE_REMOTE`` (``{"url": ..., "api_key": ...}``) and ``SMSGATE_SUPPRESS`` (default: the app's
``TESTING``): suppressed sends are only recorded, for :meth:`SMSGate.record_messages`.

Signals (blinker, as Flask's own): ``message_sent(app, message, result)``,
``status_changed(provider, event)``, ``inbound_received(provider, message)``,
``opted_out(provider, recipient, our_number, source, text)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from blinker import Namespace
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from smsgate.integrations import core
from smsgate.message import DeliveryEvent, InboundMessage, Message, SendResult, Status

_signals = Namespace()
message_sent = _signals.signal("smsgate.message-sent")
status_changed = _signals.signal("smsgate.status-changed")
inbound_received = _signals.signal("smsgate.inbound-received")
opted_out = _signals.signal("smsgate.opted-out")

#: Flask config keys that are the integration's own (the rest map to smsgate.toml keys)
_OWN = {"SMSGATE_BACKEND": "backend", "SMSGATE_REMOTE": "remote", "SMSGATE_CONFIG": "config"}
_IGNORED = {"SMSGATE_SUPPRESS"}


@dataclass
class _State:
    settings: core.IntegrationSettings
    sender: core.Sender
    webhooks: core.WebhookHandler


class _SignalListener:
    def status_changed(self, provider: str, event: DeliveryEvent) -> None:
        status_changed.send(provider, event=event)

    def inbound_received(self, provider: str, message: InboundMessage) -> None:
        inbound_received.send(provider, message=message)

    def opted_out(
        self, provider: str, recipient: str, our_number: str | None, source: str, text: str | None
    ) -> None:
        opted_out.send(
            provider, recipient=recipient, our_number=our_number, source=source, text=text
        )


def settings_from(config: Any) -> dict[str, Any]:
    """``SMSGATE_*`` keys of a Flask config as :func:`~smsgate.integrations.core.load_settings`
    takes them (``SMSGATE_PUBLIC_URL`` -> ``public_url``)."""
    values: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith("SMSGATE_") or key in _IGNORED:
            continue
        values[_OWN.get(key, key.removeprefix("SMSGATE_").lower())] = value
    return values


class SMSGate:
    """The extension; one instance may serve several apps (``init_app``)."""

    def __init__(self, app: Flask | None = None) -> None:
        self.webhooks = self._blueprint()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = core.load_settings(settings_from(app.config), setting="SMSGATE_*")
        providers = core.build_providers(settings.config)
        sender = core.create_sender(
            settings, providers=providers if settings.backend == "direct" else None
        )
        outbox = sender.outbox if isinstance(sender, core.OutboxSender) else None
        webhooks = core.WebhookHandler(
            providers, outbox=outbox, config=settings.config, listener=_SignalListener()
        )
        app.extensions["smsgate"] = _State(settings, sender, webhooks)

    @staticmethod
    def _state(app: Flask | None = None) -> _State:
        target = app or current_app
        state = target.extensions.get("smsgate")
        if state is None:
            raise RuntimeError(
                "smsgate is not set up on this app: call SMSGate(app) or sms.init_app(app)"
            )
        found: _State = state
        return found

    def send(self, to: Any, body: str = "", **options: Any) -> SendResult:
        """Send one text through the configured backend (recorded only when suppressed)."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        message = core.build_message(to, body, **options)
        if app.config.get("SMSGATE_SUPPRESS", app.testing):
            result = SendResult(id=message.id, to=message.to, status=Status.SENT, provider=None)
            core.notify("locmem", message, result)
        else:
            result = state.sender.send(message)
        message_sent.send(app, message=message, result=result)
        return result

    @contextmanager
    def record_messages(self) -> Iterator[list[Message]]:
        """The messages sent (or suppressed) inside the block, in order."""
        recorded: list[Message] = []

        def record(app: Flask, message: Message, **_: Any) -> None:
            recorded.append(message)

        message_sent.connect(record)
        try:
            yield recorded
        finally:
            message_sent.disconnect(record)

    def close(self, app: Flask) -> None:
        self._state(app).sender.close()

    def _blueprint(self) -> Blueprint:
        blueprint = Blueprint("smsgate_webhooks", __name__)

        def answer(provider: str, kind: str) -> ResponseReturnValue:
            state = self._state()
            if (request.content_length or 0) > core.MAX_WEBHOOK_BODY:
                return jsonify(error="too_large", message="the webhook body is over 1 MiB"), 413
            webhook = core.webhook_request(
                core.public_url_of(request.url, state.settings.config.public_url),
                request.method,
                request.headers.items(),
                request.get_data(cache=False),
            )
            result = state.webhooks.handle(provider, kind, webhook)
            return jsonify(result.body), result.status

        @blueprint.route("/<provider>/status", methods=["GET", "POST"])
        def status(provider: str) -> ResponseReturnValue:
            return answer(provider, "status")

        @blueprint.route("/<provider>/inbound", methods=["GET", "POST"])
        def inbound(provider: str) -> ResponseReturnValue:
            return answer(provider, "inbound")

        return blueprint
