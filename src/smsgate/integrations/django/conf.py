"""``settings.SMSGATE`` read once, and what is built from it (providers, senders, webhooks).

``SMSGATE`` holds the keys of ``smsgate.toml`` (``store``, ``providers``, ``routes``, ...) or is
the path of such a file (then ``backend`` and friends come from ``SMSGATE_BACKEND``), plus:

- ``backend``: ``direct`` (default), ``outbox``, ``http``, ``console``, ``locmem`` or the dotted
  path of a factory taking the settings and returning a sender;
- ``test_backend``: the backend used while Django's test runner runs (default ``locmem``; None
  keeps ``backend``);
- ``remote``: ``{"url": ..., "api_key": ...}`` of a ``smsgate serve`` for the http backend;
- ``database``: whose transactions the outbox backend waits for (default ``default``);
- ``config``: the path of a ``smsgate.toml`` instead of inline keys.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from smsgate.errors import ConfigError
from smsgate.integrations import core

if TYPE_CHECKING:
    from smsgate.integrations.core import IntegrationSettings, Sender, WebhookHandler
    from smsgate.message import Message
    from smsgate.providers.base import Provider

_lock = threading.RLock()
_state: dict[str, Any] = {}
#: the locmem backend's messages and the ``mail.outbox`` list they belong to
_test_outbox: list[Message] = []
_test_outbox_owner: list[Any] = [None]


def settings() -> IntegrationSettings:
    with _lock:
        if "settings" not in _state:
            value = getattr(django_settings, "SMSGATE", None)
            own: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
            if not isinstance(value, Mapping) and value is not None:
                own = {
                    "config": value,
                    "backend": getattr(django_settings, "SMSGATE_BACKEND", "direct"),
                }
            test_backend = own.get("test_backend", "locmem")
            plain = {k: v for k, v in own.items() if k != "test_backend"}
            try:
                _state["settings"] = core.load_settings(plain or None, setting="SMSGATE")
            except ConfigError as exc:
                raise ImproperlyConfigured(str(exc)) from None
            _state["test_backend"] = test_backend
        resolved: IntegrationSettings = _state["settings"]
        return resolved


def in_test_runner() -> bool:
    """Django's test runner is running (``setup_test_environment`` adds ``mail.outbox``)."""
    from django.core import mail

    return hasattr(mail, "outbox")


def backend_name(requested: str | None = None) -> str:
    if requested:
        return requested
    configured = settings().backend
    test_backend = _state.get("test_backend", "locmem")
    if test_backend and in_test_runner():
        return str(test_backend)
    return configured


def providers() -> dict[str, Provider]:
    with _lock:
        if "providers" not in _state:
            _state["providers"] = core.build_providers(settings().config)
        found: dict[str, Provider] = _state["providers"]
        return found


def sender(backend: str | None = None) -> Sender:
    name = backend_name(backend)
    with _lock:
        senders: dict[str, Sender] = _state.setdefault("senders", {})
        if name not in senders:
            try:
                senders[name] = (
                    _TestRunnerMemory(_test_outbox)
                    if name == "locmem"
                    else core.create_sender(
                        settings(),
                        name,
                        providers=providers() if name == "direct" else None,
                        memory=_test_outbox,
                    )
                )
            except ConfigError as exc:
                raise ImproperlyConfigured(str(exc)) from None
        return senders[name]


def webhook_handler() -> WebhookHandler:
    from smsgate.integrations.django.views import SignalListener

    with _lock:
        if "webhooks" not in _state:
            resolved = settings()
            outbox = None
            if resolved.backend == "outbox":
                outbox = core.open_outbox(resolved.config)
                _state["webhook_outbox"] = outbox
            _state["webhooks"] = core.WebhookHandler(
                providers(), outbox=outbox, config=resolved.config, listener=SignalListener()
            )
        handler: WebhookHandler = _state["webhooks"]
        return handler


def test_outbox() -> list[Message]:
    """The locmem backend's messages for the current test (emptied when Django's test case
    gives ``mail.outbox`` a new list, as it does before every test)."""
    from django.core import mail

    owner = getattr(mail, "outbox", None)
    with _lock:
        if owner is not _test_outbox_owner[0]:
            _test_outbox_owner[0] = owner
            _test_outbox.clear()
    return _test_outbox


class _TestRunnerMemory(core.MemorySender):
    def send(self, message: Message) -> Any:
        test_outbox()  # a new test: start its list before adding to it
        return super().send(message)


def reset() -> None:
    """Forget everything built from the settings (closing senders and the webhooks' outbox)."""
    with _lock:
        for built in _state.get("senders", {}).values():
            built.close()
        outbox = _state.get("webhook_outbox")
        if outbox is not None:
            outbox.close()
        _state.clear()


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("SMSGATE", "SMSGATE_BACKEND"):
        reset()
