"""What every framework integration shares: settings, senders and provider webhooks.

- :func:`load_settings` reads an integration's settings: the keys of ``smsgate.toml`` (``store``,
  ``providers``, ``routes``, ...) or the path of such a file, plus the integration's own keys
  (``backend``, ``remote``, ``database``).
- A :class:`Sender` is where ``send_sms`` hands a message: :class:`DirectSender` (a
  :class:`~smsgate.Gateway`, sent now), :class:`OutboxSender` (stored durably, sent by a
  worker), :class:`RemoteSender` (a remote ``smsgate serve`` over its REST API),
  :class:`ConsoleSender` (printed) and :class:`MemorySender` (kept in a list, for tests). Every
  one answers with a :class:`~smsgate.SendResult`.
- :class:`WebhookHandler` answers a provider's delivery receipt or inbound message: the
  provider's own ``handle_status_webhook`` / ``handle_inbound_webhook`` verify and parse it; with
  an outbox, receipts move the stored message and inbound messages are stored and their STOP/START
  keywords applied exactly as ``smsgate serve`` does (:class:`~smsgate.server.inbound.InboundHandler`);
  listeners hear of each new event (the frameworks turn them into signals).

The remote sender uses :mod:`urllib.request` from the standard library: it makes one small JSON
request per message from synchronous view code, which needs no connection pool or event loop.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from smsgate.errors import (
    AuthError,
    ConfigError,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    RateLimited,
    SmsgateError,
    TransientError,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import DeliveryEvent, InboundMessage, Message, SendResult, Status

if TYPE_CHECKING:
    from smsgate.config import Config
    from smsgate.gateway import Gateway
    from smsgate.outbox import Outbox
    from smsgate.providers.base import Provider, WebhookRequest

BACKENDS = ("direct", "outbox", "http", "console", "locmem")
#: the integration's own keys; every other key is a ``smsgate.toml`` key
INTEGRATION_KEYS = ("backend", "config", "remote", "database")
MAX_WEBHOOK_BODY = 1024 * 1024


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrationSettings:
    """An integration's resolved settings."""

    backend: str
    config: Config
    #: the remote ``smsgate serve`` (``http`` backend): its base URL and API key
    remote_url: str | None = None
    remote_api_key: str | None = None
    remote_timeout: float = 10.0
    #: the Django database whose transactions the outbox backend waits for
    database: str = "default"
    extra: Mapping[str, Any] = field(default_factory=dict)


def load_settings(
    value: Mapping[str, Any] | str | os.PathLike[str] | None,
    *,
    setting: str = "SMSGATE",
    env: Mapping[str, str] | None = None,
    default_backend: str = "direct",
) -> IntegrationSettings:
    """Resolve ``value``: a path to a ``smsgate.toml``, or a mapping of its keys plus
    ``backend`` (one of :data:`BACKENDS` or a dotted path), ``config`` (a path to a
    ``smsgate.toml`` instead of inline keys), ``remote`` (``{"url": ..., "api_key": ...}`` for
    the http backend) and ``database`` (Django's database alias). ``None``: the file the ``smsgate``
    command would read (``SMSGATE_CONFIG``, else ``./smsgate.toml``), else the embedded defaults.
    Errors name ``setting`` and the key at fault."""
    from smsgate.config import Config

    if value is None or isinstance(value, str | os.PathLike):
        return IntegrationSettings(
            backend=default_backend, config=Config.load(value, env=env), extra={}
        )
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{setting} must be a dict of smsgate.toml keys or the path of a smsgate.toml, "
            f"not {type(value).__name__}",
            field=setting,
        )
    own = {k: value[k] for k in INTEGRATION_KEYS if k in value}
    toml_keys = {k: v for k, v in value.items() if k not in INTEGRATION_KEYS}
    if "config" in own:
        if toml_keys:
            raise ConfigError(
                f"{setting} has both 'config' (a file) and smsgate.toml keys "
                f"({', '.join(sorted(toml_keys))}); put them in the file or drop 'config'",
                field=f"{setting}['config']",
            )
        config = Config.load(own["config"], env=env)
    else:
        config = Config.from_dict(toml_keys, env=env, source=setting)
    backend = str(own.get("backend", default_backend))
    if backend not in BACKENDS and "." not in backend:
        raise ConfigError(
            f"{setting}['backend'] = {backend!r} is not a backend; use one of "
            f"{', '.join(BACKENDS)} or the dotted path of a Sender class",
            field=f"{setting}['backend']",
        )
    remote = own.get("remote") or {}
    if not isinstance(remote, Mapping):
        raise ConfigError(
            f"{setting}['remote'] must be a dict with 'url' and 'api_key'",
            field=f"{setting}['remote']",
        )
    unknown = set(remote) - {"url", "api_key", "timeout"}
    if unknown:
        raise ConfigError(
            f"{setting}['remote'] has unknown keys {sorted(unknown)}; known: url, api_key, timeout",
            field=f"{setting}['remote']",
        )
    if backend == "http" and not remote.get("url"):
        raise ConfigError(
            f"the http backend needs {setting}['remote']['url'], the base URL of a running "
            "smsgate serve (e.g. http://127.0.0.1:8080)",
            field=f"{setting}['remote']['url']",
        )
    return IntegrationSettings(
        backend=backend,
        config=config,
        remote_url=str(remote["url"]).rstrip("/") if remote.get("url") else None,
        remote_api_key=str(remote["api_key"]) if remote.get("api_key") else None,
        remote_timeout=float(remote.get("timeout", 10.0)),
        database=str(own.get("database", "default")),
        extra=dict(own),
    )


def build_providers(config: Config) -> dict[str, Provider]:
    """The configured providers, asking for receipts at ``public_url`` like ``smsgate worker``."""
    from smsgate.clock import SYSTEM_CLOCK
    from smsgate.outbox.cli_support import build_providers as from_config

    return from_config(config, clock=SYSTEM_CLOCK)


def open_outbox(config: Config) -> Outbox:
    from smsgate.outbox.cli_support import open_outbox as from_config

    return from_config(config)


# -- messages ---------------------------------------------------------------------------------


def e164(value: Any) -> str:
    """A recipient as a string: ``phonenumbers.PhoneNumber`` values (django-phonenumber-field's
    ``PhoneNumber`` is one) are formatted as E.164; strings are passed on for validation."""
    if isinstance(value, str):
        return value
    try:
        import phonenumbers
    except ImportError:  # pragma: no cover - phonenumbers is a core dependency
        return str(value)
    if isinstance(value, phonenumbers.PhoneNumber):
        return phonenumbers.format_number(value, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidRecipient(
        f"to: {value!r} is a {type(value).__name__}, not a phone number; pass an E.164 string",
        field="to",
    )


def build_message(to: Any, body: str = "", **options: Any) -> Message:
    """A :class:`~smsgate.Message` from ``send_sms``'s arguments (refused here, naming the field,
    when it can never be sent)."""
    if isinstance(to, Message):
        return to.replace(**({"body": body} if body else {}), **options) if body or options else to
    return Message(to=e164(to), body=body, **options)


# -- observers (the pytest plugin listens here) -----------------------------------------------

Observer = Callable[[str, Message, SendResult], None]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


def add_observer(observer: Observer) -> None:
    with _observers_lock:
        _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    with _observers_lock:
        if observer in _observers:
            _observers.remove(observer)


def notify(kind: str, message: Message, result: SendResult) -> None:
    """Tell observers (:mod:`smsgate.testing`) that a sender took ``message``."""
    for observer in list(_observers):
        observer(kind, message, result)


# -- senders ----------------------------------------------------------------------------------


class Sender(Protocol):
    """Where a framework's ``send_sms`` hands messages."""

    def send(self, message: Message) -> SendResult: ...

    def close(self) -> None: ...


class DirectSender:
    """Send now through a :class:`~smsgate.Gateway`; raise the provider's error."""

    kind = "direct"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def send(self, message: Message) -> SendResult:
        return self.gateway.send(message)

    def close(self) -> None:
        self.gateway.close()


class OutboxSender:
    """Store in the durable outbox; a worker sends it. The result's status is ``queued`` and
    its id the stored message's (an earlier one's when the idempotency key was used before)."""

    kind = "outbox"

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def send(self, message: Message) -> SendResult:
        mid = self.outbox.submit(message)
        result = SendResult(id=mid, to=message.to, status=Status.QUEUED)
        notify("outbox", message, result)
        return result

    def close(self) -> None:
        self.outbox.close()


class RemoteSender:
    """Submit to a remote ``smsgate serve`` (``POST /v1/messages``). The message's id goes as
    the ``Idempotency-Key`` unless it has its own key, so a retried request stores one message."""

    kind = "http"

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RemoteSender({self.url!r})"

    def send(self, message: Message) -> SendResult:
        payload = message_json(message)
        key = message.idempotency_key or message.id
        payload["idempotency_key"] = key
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(  # noqa: S310 - the configured http(s) server
            f"{self.url}/v1/messages", data=json.dumps(payload).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _remote_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(
                f"smsgate server {self.url} could not be reached: {exc}; the message was not "
                "stored, send it again",
                provider="http",
            ) from None
        result = SendResult(
            id=str(answer.get("id", message.id)),
            to=str(answer.get("to", message.to)),
            status=Status(answer.get("status", Status.QUEUED.value)),
            provider=None,
            raw=answer,
        )
        notify("http", message, result)
        return result

    def close(self) -> None:
        pass


def message_json(message: Message) -> dict[str, Any]:
    """The REST API's ``MessageIn`` for ``message``."""
    payload: dict[str, Any] = {"to": message.to, "body": message.body}
    if message.sender:
        payload["sender"] = message.sender
    if message.media:
        payload["media"] = list(message.media)
    payload["purpose"] = message.purpose.value
    if message.send_at is not None:
        payload["send_at"] = message.send_at.isoformat()
    if message.validity is not None:
        payload["validity"] = message.validity
    if message.metadata:
        payload["metadata"] = dict(message.metadata)
    return payload


def _remote_error(exc: urllib.error.HTTPError) -> SmsgateError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    # the server's errors are flat: {"error": KIND, "message": ..., "field": ..., "fix": ...}
    error = body if isinstance(body, dict) else {}
    text = str(error.get("message") or exc.reason)
    fieldname = error.get("field")
    if exc.code in (401, 403):
        return AuthError(
            f"smsgate server refused the API key ({exc.code}): {text}; check remote.api_key"
        )
    if exc.code == 429:
        after = exc.headers.get("Retry-After")
        return RateLimited(text, retry_after=float(after) if after else None)
    if exc.code >= 500:
        return TransientError(f"smsgate server answered {exc.code}: {text}", provider="http")
    if error.get("error") == "opted_out":
        return OptedOut(text, field=fieldname or "to")
    if fieldname == "to":
        return InvalidRecipient(text, field="to")
    return InvalidMessage(text, field=fieldname, raw=body)


class ConsoleSender:
    """Print each message (development); nothing is sent."""

    kind = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: Message) -> SendResult:
        out = self.stream or sys.stdout
        lines = [
            "-" * 60,
            f"SMS to {message.to}" + (f" from {message.sender}" if message.sender else ""),
            f"purpose: {message.purpose.value}  id: {message.id}",
        ]
        lines.extend(f"media: {url}" for url in message.media)
        lines += ["", message.body, "-" * 60]
        out.write("\n".join(lines) + "\n")
        out.flush()
        result = SendResult(id=message.id, to=message.to, status=Status.SENT, provider="console")
        notify("console", message, result)
        return result

    def close(self) -> None:
        pass


class MemorySender:
    """Keep each message in ``messages`` (tests); nothing is sent."""

    kind = "locmem"

    def __init__(self, messages: list[Message] | None = None) -> None:
        self.messages: list[Message] = [] if messages is None else messages

    def send(self, message: Message) -> SendResult:
        self.messages.append(message)
        result = SendResult(id=message.id, to=message.to, status=Status.SENT, provider="locmem")
        notify("locmem", message, result)
        return result

    def close(self) -> None:
        pass


def create_sender(
    settings: IntegrationSettings,
    backend: str | None = None,
    *,
    providers: Mapping[str, Provider] | None = None,
    memory: list[Message] | None = None,
) -> Sender:
    """The sender for ``backend`` (default: the settings')."""
    name = backend or settings.backend
    if name == "direct":
        from smsgate.gateway import Gateway

        chain = dict(providers) if providers is not None else build_providers(settings.config)
        if not chain:
            raise ConfigError(
                "the direct backend needs providers: add a providers table with a url "
                '(e.g. {"twilio": {"url": "twilio://SID:TOKEN@+15017122661"}})',
                field="providers",
            )
        return DirectSender(Gateway(list(chain.values())))
    if name == "outbox":
        return OutboxSender(open_outbox(settings.config))
    if name == "http":
        if not settings.remote_url:
            raise ConfigError("the http backend needs remote.url", field="remote")
        return RemoteSender(
            settings.remote_url, settings.remote_api_key, timeout=settings.remote_timeout
        )
    if name == "console":
        return ConsoleSender()
    if name == "locmem":
        return MemorySender(memory)
    from importlib import import_module

    module, _, attr = name.rpartition(".")
    try:
        factory = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"backend {name!r} cannot be imported ({exc}); use one of {', '.join(BACKENDS)}",
            field="backend",
        ) from None
    sender: Sender = factory(settings)
    return sender


# -- provider webhooks ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookAnswer:
    """The HTTP answer to a provider's webhook: what a framework view returns."""

    status: int
    body: dict[str, Any]


class WebhookListener(Protocol):
    """What a framework hears from :class:`WebhookHandler` (Django turns these into signals)."""

    def status_changed(self, provider: str, event: DeliveryEvent) -> None: ...

    def inbound_received(self, provider: str, message: InboundMessage) -> None: ...

    def opted_out(
        self, provider: str, recipient: str, our_number: str | None, source: str, text: str | None
    ) -> None: ...


class NullListener:
    def status_changed(self, provider: str, event: DeliveryEvent) -> None:
        pass

    def inbound_received(self, provider: str, message: InboundMessage) -> None:
        pass

    def opted_out(
        self, provider: str, recipient: str, our_number: str | None, source: str, text: str | None
    ) -> None:
        pass


class WebhookHandler:
    """Answer ``/PROVIDER/status`` and ``/PROVIDER/inbound`` for a framework's view.

    ``providers`` verify and parse (their own code). With ``outbox``, a receipt is recorded once
    (a provider's retry of the same event is a duplicate: no second ``status_changed``), and an
    inbound message is stored with its keywords applied (STOP suppresses the sender for our
    number, START lifts it, HELP is answered as ``[server] help_text`` says), as ``smsgate
    serve`` does. Without an outbox every verified event reaches the listener.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        outbox: Outbox | None = None,
        config: Config | None = None,
        listener: WebhookListener | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.outbox = outbox
        self.listener: WebhookListener = listener or NullListener()
        self._inbound: Any = None
        if outbox is not None:
            from smsgate.outbox.tables.server import ServerStore
            from smsgate.server.inbound import InboundHandler
            from smsgate.server.settings import ServerSettings

            settings = (
                ServerSettings.from_config(config) if config is not None else ServerSettings()
            )
            self._inbound = InboundHandler(
                outbox, ServerStore.of(outbox.store), settings, clock=outbox.clock
            )

    def handle(self, provider: str, kind: str, request: WebhookRequest) -> WebhookAnswer:
        impl = self.providers.get(provider)
        if impl is None:
            return _refusal(
                404,
                "not_found",
                f"no provider named {provider!r} is configured",
                "use the name of a configured provider",
            )
        if len(request.body) > MAX_WEBHOOK_BODY:
            return _refusal(413, "too_large", "the webhook body is over 1 MiB", "check the caller")
        try:
            if kind == "status":
                parsed: Sequence[Any] = impl.handle_status_webhook(request)
            elif kind == "inbound":
                parsed = impl.handle_inbound_webhook(request)
            else:
                return _refusal(404, "not_found", f"no {kind!r} webhook", "use status or inbound")
        except WebhookVerificationError as exc:
            return _refusal(
                403,
                "webhook_verification",
                exc.message,
                "check the provider's credentials and the public_url setting",
            )
        except UnsupportedFeature:
            return _refusal(
                404, "not_found", f"{impl.display_name} sends no {kind} webhooks", "check the URL"
            )
        except (SmsgateError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return _refusal(
                400,
                "malformed_webhook",
                f"not a {impl.display_name} {kind} webhook: {type(exc).__name__}",
                "check the caller",
            )
        if kind == "status":
            stored = sum(self._status(impl, event) for event in parsed)
        else:
            stored = sum(self._inbound_one(impl, message) for message in parsed)
        return WebhookAnswer(200, {"received": len(parsed), "stored": stored})

    def _status(self, impl: Provider, event: DeliveryEvent) -> bool:
        from smsgate.outbox import ReceiptOutcome

        if self.outbox is not None:
            result = self.outbox.record_event(event)
            if result.outcome is ReceiptOutcome.DUPLICATE:
                return False
        self.listener.status_changed(impl.name, event)
        if event.opted_out and event.to:
            if self._inbound is not None:
                self._inbound.provider_opt_out(event.to, None, impl.name, event.reason)
            self.listener.opted_out(impl.name, event.to, None, "provider", event.reason)
        return True

    def _inbound_one(self, impl: Provider, message: InboundMessage) -> bool:
        from smsgate.server.optout import Action, classify

        if self._inbound is not None and not self._inbound.handle_sync([message]):
            return False  # a retry of a message stored before
        self.listener.inbound_received(impl.name, message)
        if classify(message.body) in (Action.OPT_OUT, Action.OPT_OUT_ALL):
            self.listener.opted_out(impl.name, message.sender, message.to, "keyword", message.body)
        return True


def _refusal(status: int, code: str, message: str, fix: str) -> WebhookAnswer:
    # the same shape as smsgate serve's errors
    return WebhookAnswer(status, {"error": code, "message": message, "fix": fix})


def webhook_request(
    url: str, method: str, headers: Iterable[tuple[str, str]] | Mapping[str, str], body: bytes
) -> WebhookRequest:
    """A framework-neutral :class:`~smsgate.providers.base.WebhookRequest`."""
    from smsgate.providers.base import WebhookRequest

    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return WebhookRequest(url=url, method=method, headers=dict(pairs), body=body)


def public_url_of(url: str, public_url: str | None) -> str:
    """The URL the provider called: behind a proxy, ``public_url`` with the request's path."""
    if not public_url:
        return url
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return public_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
