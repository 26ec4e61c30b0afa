"""Glue between the configuration file and the outbox, for the CLI and the server.

``queue_message`` is what ``smsgate send --queue`` calls; ``build_worker`` turns a
:class:`~smsgate.config.Config` into a ready :class:`~smsgate.outbox.worker.Worker` (providers
from their URLs, the routes, and rate limits shared through the store).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from smsgate.clock import Clock
from smsgate.errors import ConfigError

if TYPE_CHECKING:
    from smsgate.config import Config
    from smsgate.message import Message
    from smsgate.outbox.outbox import Outbox
    from smsgate.outbox.worker import Worker


def resolve_config(config: str | os.PathLike[str] | Config | None) -> Config:
    """A loaded config: the object itself, a path, or None (``SMSGATE_CONFIG``, else defaults)."""
    from smsgate.config import Config, load_config

    return config if isinstance(config, Config) else load_config(config)


def open_outbox(
    config: str | os.PathLike[str] | Config | None,
    *,
    store: str | None = None,
    clock: Clock | None = None,
    migrate: bool | None = None,
) -> Outbox:
    """The outbox of ``config``'s store (or of ``store``, which overrides it)."""
    from smsgate.clock import SYSTEM_CLOCK
    from smsgate.outbox.outbox import Outbox

    url = store or resolve_config(config).store
    return Outbox(url, clock=clock or SYSTEM_CLOCK, migrate=migrate)


def queue_message(config: str | os.PathLike[str] | Config | None, message: Message) -> str:
    """Submit ``message`` to the configured outbox; returns its id (``smsgate send --queue``)."""
    with open_outbox(config) as outbox:
        return outbox.submit(message)


def build_worker(
    outbox: Outbox,
    config: Config,
    *,
    concurrency: int | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> Worker:
    """A worker for ``outbox`` with ``config``'s providers, routes, retry policy, circuit
    breakers, worker settings and rate limits (the buckets shared through the store)."""
    from smsgate.outbox.buckets import StoreBucketBackend
    from smsgate.outbox.worker import Worker
    from smsgate.providers import create_provider

    if not config.providers:
        raise ConfigError(
            "no providers are configured; add a [providers.NAME] table with a url to the config "
            "file (see smsgate config check)",
            field="providers",
        )
    chosen = clock or outbox.clock
    providers = {name: create_provider(p.url, name=name) for name, p in config.providers.items()}
    limiter = None
    if any(p.limit is not None or p.senders for p in config.providers.values()):
        limiter = config.rate_limiter(backend=StoreBucketBackend(outbox.store), clock=chosen)
    settings: dict[str, Any] = {
        "concurrency": concurrency or config.worker.concurrency,
        "batch_size": config.worker.batch_size,
        "lease": config.worker.lease_seconds,
        "close_providers": True,
    }
    settings.update(options)
    return Worker(
        outbox, providers, router=config.router(chosen), limiter=limiter, clock=chosen, **settings
    )
