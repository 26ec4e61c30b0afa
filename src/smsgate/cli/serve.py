"""``smsgate serve``: the HTTP API, provider webhooks and (by default) a worker, in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from smsgate.cli import common


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}"
        )
    return value.lower()


def serve(
    config: common.ConfigOption = None,
    store: common.StoreOption = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port to listen on, 0 for any [default: 8080]."
        ),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: leave sending to other workers.")
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level", callback=_log_level, help="critical, error, warning, info or debug."
        ),
    ] = "info",
    verbose: common.VerboseOption = False,
) -> None:
    """Serve API v1, /webhooks/PROVIDER/... and /metrics until SIGINT or SIGTERM."""
    import dataclasses

    from smsgate.errors import ConfigError

    common.require_extra("fastapi", "server", "smsgate serve")
    common.require_extra("uvicorn", "server", "smsgate serve")
    from smsgate.server.runner import serve as run
    from smsgate.server.settings import ServerSettings

    resolved = common.load_config(config, announce=False)
    if store is not None:
        resolved = dataclasses.replace(resolved, store=store)
    if verbose and log_level == "info":
        log_level = "debug"
    try:
        settings = ServerSettings.from_config(resolved).with_overrides(
            host=host, port=port, worker=False if no_worker else None
        )
    except ConfigError as exc:
        common.fail(str(exc))

    def ready(url: str) -> None:
        worker = "with a worker" if settings.worker and resolved.providers else "API only"
        print(
            f"smsgate serving {url} ({worker}); store {resolved.masked()['store']}; "
            f"config {resolved.describe_source()}",
            flush=True,
        )
        print(
            f"API docs: {url}/docs  OpenAPI: {url}/openapi.json  metrics: {url}/metrics", flush=True
        )

    try:
        run(resolved, settings, log_level=log_level.lower(), on_ready=ready)
    except ConfigError as exc:
        common.fail(str(exc))
    except OSError as exc:
        common.fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", 1)
