"""``smsgate serve``: the HTTP API, provider webhooks and (by default) a worker, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smsgate.cli import common


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="smsgate.toml (default: $SMSGATE_CONFIG).", dir_okay=False
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on, 0 for any [default: 8080].")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: leave sending to other workers.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Serve API v1, /webhooks/PROVIDER/... and /metrics until SIGINT or SIGTERM."""
    from smsgate.config import Config
    from smsgate.errors import ConfigError
    from smsgate.server.runner import serve as run
    from smsgate.server.settings import ServerSettings

    try:
        resolved = Config.load(config)
        settings = ServerSettings.from_config(resolved).with_overrides(
            host=host, port=port, worker=False if no_worker else None
        )
    except ConfigError as exc:
        common.fail(str(exc))

    def ready(url: str) -> None:
        worker = "with a worker" if settings.worker and resolved.providers else "API only"
        print(f"smsgate serving {url} ({worker}); store {resolved.masked()['store']}", flush=True)
        print(
            f"API docs: {url}/docs  OpenAPI: {url}/openapi.json  metrics: {url}/metrics", flush=True
        )

    try:
        run(resolved, settings, log_level=log_level.lower(), on_ready=ready)
    except ConfigError as exc:
        common.fail(str(exc))
    except OSError as exc:
        common.fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", 1)
