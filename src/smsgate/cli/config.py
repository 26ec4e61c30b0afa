"""``smsgate config check`` validates the configuration and shows what it resolves to;
``smsgate config schema`` prints its JSON Schema (for editors' completion and checking)."""

from __future__ import annotations

from typing import Any

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
    group.command("schema")(schema)
    app.add_typer(group, name="config")


def check(config: common.ConfigOption = None, as_json: common.JsonOption = False) -> None:
    """Validate the config (every table and key, provider URLs through the provider registry)
    and print the resolved providers and routes, secrets masked."""
    # the summary's first line names the file (and "source" under --json)
    resolved = common.load_config(config, announce=False)
    summary = resolved.masked()
    if as_json:
        common.print_json(summary)
        return
    for line in render(summary, resolved.describe_source()):
        print(line)


def schema() -> None:
    """Print the JSON Schema of smsgate.toml.

    Editors complete and check the file with it, e.g. with the Even Better TOML extension:
    smsgate config schema > smsgate.schema.json, then add #:schema ./smsgate.schema.json as the
    file's first line.
    """
    import json

    from smsgate.config import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))


def render(summary: dict[str, Any], source: str | None = None) -> list[str]:
    """The masked summary as aligned text lines."""
    source = source or summary["source"] or "embedded defaults"
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
    pricing = summary.get("pricing")
    if pricing:
        for name, table in pricing["per_segment"].items():
            prices = ", ".join(f"{prefix} {price:g}" for prefix, price in table.items())
            lines.append(f"pricing: {name}: {prices} {pricing['currency']} per segment")
    for warning in summary["warnings"]:
        lines.append(f"warning: {warning}")
    lines.append("config OK")
    return lines
