"""``smsgate carriers``: the email-to-SMS gateway registry and what became of each gateway."""

from __future__ import annotations

import typer

from smsgate.cli.common import fail, print_json


def register(app: typer.Typer) -> None:
    app.command("carriers")(carriers_command)


def carriers_command(
    country: str = typer.Option(None, "--country", help="Only this ISO region, e.g. US or CA."),
    status: str = typer.Option(None, "--status", help="Only active, deprecated, dead or unknown."),
    json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List carrier gateways for smtp:// (email-to-SMS) with their status, domains and source."""
    from datetime import UTC, datetime

    from smsgate.carriers import CarrierStatus, registry

    if status is not None and status not in {s.value for s in CarrierStatus}:
        fail(f"--status {status!r}: use one of {', '.join(s.value for s in CarrierStatus)}")
    today = datetime.now(UTC).date()
    carriers = [
        c
        for c in registry()
        if (country is None or c.country == country.upper())
        and (status is None or c.status_on(today).value == status)
    ]
    if json:
        print_json(
            {
                "count": len(carriers),
                "carriers": [{**c.to_dict(), "status": c.status_on(today).value} for c in carriers],
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    styles = {"active": "green", "deprecated": "yellow", "dead": "red", "unknown": "dim"}
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("key", "carrier", "country", "status", "SMS domain", "MMS domain", "verified"):
        table.add_column(column, no_wrap=column != "carrier")
    table.add_column("what happened", overflow="fold")
    for c in carriers:
        state = c.status_on(today).value
        table.add_row(
            c.key,
            c.name,
            c.country,
            f"[{styles[state]}]{state}[/]",
            c.sms_domain,
            c.mms_domain or "-",
            c.last_verified or "-",
            c.note,
        )
    console = Console()
    console.print(table)
    console.print(
        f"{len(carriers)} gateway(s). Dead ones are refused unless forced (force=true); "
        "sources: smsgate carriers --json"
    )
