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

from smsgate.config import Config, ServerSection, validate_section

DEFAULT_HELP_TEXT: str = ServerSection.model_fields["help_text"].default
MAX_BATCH: int = ServerSection.model_fields["max_batch"].default


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
        """Settings from a ``[server]`` table, validated by the config's ``ServerSection``
        model (the one definition of its keys, types and ranges)."""
        section = validate_section(ServerSection, table, "server")
        return cls(
            host=section.host,
            port=section.port,
            worker=section.worker,
            public_url=public_url.rstrip("/") if public_url else None,
            help_text=section.help_text,
            stop_reply=section.stop_reply,
            start_reply=section.start_reply,
            webhook_retry_horizon=section.webhook_retry_horizon,
            webhook_timeout=section.webhook_timeout,
            max_batch=section.max_batch,
            fast_submit=section.fast_submit,
            request_receipts=section.request_receipts,
        )

    def with_overrides(self, **changes: Any) -> ServerSettings:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update({key: value for key, value in changes.items() if value is not None})
        return ServerSettings(**values)
