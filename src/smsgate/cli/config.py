"""``smsgate config check``: validate the configuration and show what it resolves to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from smsgate.cli import common


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="config",
        help="Check the configuration file (smsgate.toml).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    group.command("check")(check)
    app.add_typer(group, name="config")


def check(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The config file (default: $SMSGATE_CONFIG, else the embedded defaults).",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the resolved config as JSON.")
    ] = False,
) -> None:
    """Validate the config and print the resolved providers and routes, secrets masked."""
    from smsgate.config import CONFIG_ENV_VAR, Config
    from smsgate.errors import ConfigError

    try:
        resolved = Config.load(config)
    except ConfigError as exc:
        source = config or os.environ.get(CONFIG_ENV_VAR, "").strip()
        # Key errors name the key; say which file too, in case SMSGATE_CONFIG points elsewhere.
        prefix = f"{source}: " if source and exc.field is not None else ""
        common.fail(prefix + str(exc))
    summary = resolved.masked()
    if as_json:
        common.print_json(summary)
        return
    for line in render(summary):
        print(line)


def render(summary: dict[str, Any]) -> list[str]:
    """The masked summary as aligned text lines."""
    source = summary["source"] or "embedded defaults (no --config, SMSGATE_CONFIG unset)"
    lines = [f"config: {source}", f"store: {summary['store']}"]
    if summary["public_url"]:
        lines.append(f"public_url: {summary['public_url']}")

    providers: dict[str, Any] = summary["providers"]
    lines.append("providers:" if providers else "providers: none")
    width = max((len(name) for name in providers), default=0)
    for name, provider in providers.items():
        limit = f"  rate {provider['rate']} burst {provider['burst']}" if provider["rate"] else ""
        lines.append(f"  {name:<{width}}  {provider['url']}{limit}")
        for sender, sender_limit in provider["senders"].items():
            pad = " " * width
            lines.append(
                f"  {pad}  sender {sender}: {sender_limit['rate']} burst {sender_limit['burst']}"
            )
        if provider["options"]:
            options = ", ".join(f"{key}={value}" for key, value in provider["options"].items())
            lines.append(f"  {' ' * width}  options: {options}")

    routes: list[dict[str, Any]] = summary["routes"]
    lines.append("routes:" if routes else "routes: none")
    width = max((len(route["name"]) for route in routes), default=0)
    for route in routes:
        purposes = ", ".join(route["purposes"]) or "any purpose"
        countries = ", ".join(route["countries"]) or "any country"
        implicit = "  (made up: the file has no [[routes]])" if route["implicit"] else ""
        chain = " -> ".join(route["providers"])
        lines.append(
            f"  {route['name']:<{width}}  {purposes}; {countries} -> {chain}"
            f"; {route['max_attempts']} attempts, backoff {route['base_delay']:g}s.."
            f"{route['max_delay']:g}s ({route['jitter']} jitter); ambiguous {route['ambiguous']}"
            f"{implicit}"
        )

    worker = summary["worker"]
    lines.append(
        f"worker: concurrency {worker['concurrency']}, lease {worker['lease_seconds']:g}s, "
        f"batch {worker['batch_size']}"
    )
    breaker = summary["circuit_breaker"]
    lines.append(
        f"circuit breaker: opens after {breaker['failure_threshold']} failures, "
        f"half-opens after {breaker['cooldown']:g}s"
    )
    for warning in summary["warnings"]:
        lines.append(f"warning: {warning}")
    lines.append("config OK")
    return lines
