"""The web console: ``smsgate serve`` mounts it at ``/console`` (``[console]`` in the config).

Operators sign in (console users from ``smsgate users create``, or an API key granted the
console scope) and see the queue, per-provider outcomes and delivery charts, the message log
with each message's whole timeline, and the operations pages: inbound, suppressions, API keys,
webhooks and providers (pause and resume). Pages are server-rendered (Jinja2) and work without
JavaScript; the console's own small script adds live updates over server-sent events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smsgate.errors import ConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from smsgate.config import Config
    from smsgate.console.settings import ConsoleSettings
    from smsgate.outbox.worker import Worker
    from smsgate.server.services import Services
    from smsgate.verify import Verify


def console_app(
    services: Services,
    config: Config,
    *,
    worker: Worker | None = None,
    settings: ConsoleSettings | None = None,
    verify: Verify | None = None,
) -> Starlette:
    """The console's ASGI app for ``smsgate serve`` to mount; a clear error without jinja2."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise ConfigError(
            "console.enabled: the web console needs jinja2; install it with "
            "pip install 'smsgate[server]', or set enabled = false under [console]",
            field="console.enabled",
        ) from None
    from smsgate.console.web import create_console

    return create_console(services, config, worker=worker, settings=settings, verify=verify)
