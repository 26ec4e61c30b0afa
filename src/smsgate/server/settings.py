"""The ``[server]`` table of ``smsgate.toml``: what the HTTP service needs beyond the outbox.

Every key is optional::

    public_url = "https://sms.example.com"   # top level: callbacks and signature checks

    [server]
    host = "127.0.0.1"
    port = 8080
    worker = true                 # run a worker in the server process
    help_text = "Example Co: reply STOP to opt out. Help: example.com/sms"
    stop_reply = ""               # confirmation sent after STOP ("" sends none)
    start_reply = ""              # confirmation sent after START
    webhook_retry_horizon = "24h" # retry user webhooks this long, then dead-letter them
    webhook_timeout = "10s"
    max_batch = 10000
    fast_submit = true            # serve POST /v1/messages and status webhooks outside FastAPI
    request_receipts = true       # ask providers for receipts at {public_url}/webhooks/NAME/status

Whether otp messages to opted-out recipients are refused is the outbox's setting, for every
submit path: ``[otp] honor_opt_outs``. A wrong value raises
:class:`~smsgate.errors.ConfigError` naming ``server.KEY`` and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smsgate.config import Config, parse_duration, parse_flag, receipts_requested
from smsgate.errors import ConfigError

DEFAULT_HELP_TEXT = "Reply STOP to unsubscribe, START to subscribe again."
MAX_BATCH = 10_000

_KEYS = (
    "host",
    "port",
    "worker",
    "help_text",
    "stop_reply",
    "start_reply",
    "webhook_retry_horizon",
    "webhook_timeout",
    "max_batch",
    "fast_submit",
    "request_receipts",
)

#: keys that left the [server] table, and where they are now
_MOVED = {"suppress_otp": "honor_opt_outs under [otp] (it applies to every submit path)"}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: run the outbox worker inside the server process
    worker: bool = True
    #: the URL the world reaches this server at (from the top-level ``public_url``)
    public_url: str | None = None
    #: the answer to HELP; empty sends none
    help_text: str = DEFAULT_HELP_TEXT
    stop_reply: str = ""
    start_reply: str = ""
    webhook_retry_horizon: float = 24 * 3600.0
    webhook_timeout: float = 10.0
    max_batch: int = MAX_BATCH
    fast_submit: bool = True
    #: give providers {public_url}/webhooks/NAME/status as their status callback (read by
    #: :func:`smsgate.config.receipts_requested`, which ``smsgate worker`` uses too)
    request_receipts: bool = True

    @classmethod
    def from_config(cls, config: Config) -> ServerSettings:
        return cls.from_mapping(config.server, public_url=config.public_url)

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], *, public_url: str | None = None
    ) -> ServerSettings:
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            key = unknown[0]
            fix = (
                f"it moved: write {_MOVED[key]}"
                if key in _MOVED
                else f"the [server] table takes {', '.join(_KEYS)}"
            )
            raise ConfigError(f"server.{key}: unknown key; {fix}", field=f"server.{key}")
        defaults = cls()
        return cls(
            host=_text(table, "host", defaults.host, allow_empty=False),
            port=_port(table.get("port", defaults.port)),
            worker=parse_flag(table.get("worker", defaults.worker), "server.worker"),
            public_url=public_url.rstrip("/") if public_url else None,
            help_text=_text(table, "help_text", defaults.help_text),
            stop_reply=_text(table, "stop_reply", defaults.stop_reply),
            start_reply=_text(table, "start_reply", defaults.start_reply),
            webhook_retry_horizon=parse_duration(
                table.get("webhook_retry_horizon", defaults.webhook_retry_horizon),
                "server.webhook_retry_horizon",
            ),
            webhook_timeout=parse_duration(
                table.get("webhook_timeout", defaults.webhook_timeout), "server.webhook_timeout"
            ),
            max_batch=_whole(table, "max_batch", defaults.max_batch, 1, MAX_BATCH),
            fast_submit=parse_flag(
                table.get("fast_submit", defaults.fast_submit), "server.fast_submit"
            ),
            request_receipts=receipts_requested(table),
        )

    def with_overrides(self, **changes: Any) -> ServerSettings:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update({key: value for key, value in changes.items() if value is not None})
        return ServerSettings(**values)


def _text(table: Mapping[str, Any], key: str, default: str, *, allow_empty: bool = True) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ConfigError(
            f"server.{key}: expected text, got {value!r}; write e.g. {key} = {default!r}",
            field=f"server.{key}",
        )
    return value.strip()


def _whole(table: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"server.{key}: {value!r} must be a whole number between {low} and {high}",
            field=f"server.{key}",
        )
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(
            f"server.port: {value!r} is not a TCP port; use a number between 1 and 65535 "
            "(0 picks a free one)",
            field="server.port",
        )
    return value
