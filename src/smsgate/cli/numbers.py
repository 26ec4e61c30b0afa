"""``smsgate normalize`` and ``smsgate lookup``."""

from __future__ import annotations

import typer

from smsgate.cli import common
from smsgate.cli.common import fail, print_json


def register(app: typer.Typer) -> None:
    app.command("normalize")(normalize_command)
    app.command("lookup")(lookup_command)


def normalize_command(
    number: str = typer.Argument(..., help="A phone number as people type it."),
    region: str = typer.Option(None, "--region", help="ISO region for national numbers, e.g. US."),
    strict: bool = typer.Option(
        False,
        "--strict/--lenient",
        help="--strict refuses numbers outside assigned ranges; the default accepts what "
        "smsgate send accepts (any possible number, test ranges too).",
    ),
    json: common.JsonOption = False,
) -> None:
    """Print NUMBER in E.164 as smsgate send would address it, or say which rule it breaks."""
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import lookup, normalize

    try:
        e164 = normalize(number, region, strict=strict)
        info = lookup(e164)
    except InvalidRecipient as exc:
        fail(str(exc))
    if json:
        print_json({"e164": e164, "region": info.region, "type": info.type, "valid": info.valid})
    else:
        print(e164)


def lookup_command(
    number: str = typer.Argument(..., help="A phone number (E.164, or national with --region)."),
    region: str = typer.Option(None, "--region", help="ISO region for national numbers."),
    json: common.JsonOption = False,
) -> None:
    """What libphonenumber knows offline: type, region, carrier, time zones."""
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import lookup

    try:
        info = lookup(number, region)
    except InvalidRecipient as exc:
        fail(str(exc))
    if json:
        print_json(info.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in info.to_dict().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        table.add_row(key, "-" if shown in (None, "") else str(shown))
    Console().print(table)
