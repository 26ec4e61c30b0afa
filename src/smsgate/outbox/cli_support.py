"""Glue between the configuration file and the outbox, for the CLI and the server.

``open_outbox`` opens the configured store with the configured opt-out policy;
``queue_message`` is what ``smsgate send --queue`` calls; ``build_worker`` turns a
:class:`~smsgate.config.Config` into a ready :class:`~smsgate.outbox.worker.Worker` (providers
from their URLs, receipts asked for at the server's public URL, the routes, and rate limits
shared through the store).
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
    from smsgate.pauses import PauseView
    from smsgate.providers.base import Provider


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
    """The outbox of ``config``'s store (or of ``store``, which overrides it), refusing
    opted-out recipients as the config says (``[otp] honor_opt_outs``)."""
    from smsgate.clock import SYSTEM_CLOCK
    from smsgate.outbox.outbox import Outbox

    resolved = resolve_config(config)
    return Outbox(
        store or resolved.store,
        clock=clock or SYSTEM_CLOCK,
        migrate=migrate,
        otp_honors_opt_outs=resolved.otp.honor_opt_outs,
    )


def queue_message(config: str | os.PathLike[str] | Config | None, message: Message) -> str:
    """Submit ``message`` to the configured outbox; returns its id (``smsgate send --queue``)."""
    with open_outbox(config) as outbox:
        return outbox.submit(message)


def callback_url(public_url: str, provider: str) -> str:
    """Where ``provider`` should send delivery receipts for the server at ``public_url``."""
    return f"{public_url.rstrip('/')}/webhooks/{provider}/status"


def build_providers(
    config: Config, *, clock: Clock, receipts: bool = True, public_url: str | None = None
) -> dict[str, Provider]:
    """One provider per ``[providers.NAME]``, checking webhook timestamps on ``clock``.

    With ``receipts``, when the server's URL is known (``public_url``, else the config's), a
    provider whose URL has no ``callback=`` asks for delivery receipts at
    ``{public_url}/webhooks/NAME/status``, whichever process sends (``smsgate serve`` or
    ``smsgate worker``).
    """
    from smsgate.providers import create_provider

    server = public_url or config.public_url
    providers = {name: create_provider(p.url, name=name) for name, p in config.providers.items()}
    for name, provider in providers.items():
        provider.clock = clock
        if receipts and server and provider.status_callback is None:
            provider.status_callback = callback_url(server, name)
    return providers


def build_worker(
    outbox: Outbox,
    config: Config,
    *,
    concurrency: int | None = None,
    clock: Clock | None = None,
    receipts: bool = True,
    public_url: str | None = None,
    **options: Any,
) -> Worker:
    """A worker for ``outbox`` with ``config``'s providers (see :func:`build_providers` for
    ``receipts`` and ``public_url``), routes, retry policy, circuit breakers, worker settings
    and rate limits (the buckets shared through the store)."""
    from smsgate.outbox.buckets import StoreBucketBackend
    from smsgate.outbox.worker import ReceiptTimeout, Worker

    if not config.providers:
        raise ConfigError(
            "no providers are configured; add a [providers.NAME] table with a url to the config "
            "file (see smsgate config check)",
            field="providers",
        )
    chosen = clock or outbox.clock
    providers = build_providers(config, clock=chosen, receipts=receipts, public_url=public_url)
    limiter = None
    if any(p.limit is not None or p.senders for p in config.providers.values()):
        limiter = config.rate_limiter(backend=StoreBucketBackend(outbox.store), clock=chosen)
    default = ReceiptTimeout()
    settings: dict[str, Any] = {
        "concurrency": concurrency or config.worker.concurrency,
        "batch_size": config.worker.batch_size,
        "lease": config.worker.lease_seconds,
        "close_providers": True,
        "retention": config.retention.build(),
        "receipt_timeouts": {
            name: ReceiptTimeout(
                after=p.receipt_timeout or default.after, validity=p.validity or default.validity
            )
            for name, p in config.providers.items()
            if p.receipt_timeout is not None or p.validity is not None
        },
    }
    settings.update(options)
    router = config.router(chosen)
    router.pauses = pause_view(outbox, chosen)
    return Worker(outbox, providers, router=router, limiter=limiter, clock=chosen, **settings)


def pause_view(outbox: Outbox, clock: Clock) -> PauseView | None:
    """The providers paused in ``outbox``'s store, as a router reads them (None for a store
    without SQL tables)."""
    from smsgate.outbox.tables.pauses import ProviderPauses
    from smsgate.pauses import PauseView

    pauses = ProviderPauses.maybe(outbox.store)
    return None if pauses is None else PauseView.of(pauses, clock=clock)
