"""``smsgate demo``: the whole pipeline on embedded defaults, in about ten seconds.

A SQLite outbox in a temporary folder, the Twilio emulator on a free loopback port (with signed
delivery callbacks), a webhook endpoint that verifies them, and an in-process worker. It submits
a handful of messages, including Twilio's magic numbers that fail and one scheduled a few seconds
ahead, shows their states live, and ends with a summary. Nothing leaves this machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from smsgate.outbox import Outbox

#: (recipient, body, purpose, seconds from now to send, what to expect)
DEMO_MESSAGES: tuple[tuple[str, str, str, float, str], ...] = (
    ("+15555550101", "Your order #1001 has shipped.", "transactional", 0, "delivered"),
    ("+15555550102", "Your order #1002 has shipped.", "transactional", 0, "delivered"),
    ("+447700900123", "Your table for 2 is booked for 7pm.", "transactional", 0, "delivered"),
    ("+15555550103", "Your sign-in code is 481902.", "otp", 0, "delivered"),
    (
        "+15555550104",
        "Spring sale: 20% off today. Reply STOP to opt out.",
        "marketing",
        0,
        "delivered",
    ),
    ("+15005550001", "This number is invalid (Twilio magic number).", "transactional", 0, "failed"),
    ("+15005550004", "This person replied STOP (Twilio magic number).", "marketing", 0, "failed"),
    ("+15555550105", "Reminder: your appointment is in 1 hour.", "transactional", 4, "delivered"),
)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    keep: bool = typer.Option(False, "--keep", help="Keep the demo's SQLite file afterwards."),
    timeout: float = typer.Option(30.0, "--timeout", help="Give up after this many seconds."),
    json: bool = typer.Option(False, "--json", help="No live table; print the summary as JSON."),
) -> None:
    """Run the pipeline end to end against the Twilio emulator and show what happens."""
    import shutil
    import tempfile

    from smsgate.cli.common import require_extra
    from smsgate.eventloop import run

    for module in ("fastapi", "uvicorn", "aiohttp"):
        require_extra(module, "server", "smsgate demo")

    folder = tempfile.mkdtemp(prefix="smsgate-demo-")
    try:
        summary = run(_demo(folder, timeout, live=not json, keep=keep))
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if json:
        from smsgate.cli.common import print_json

        print_json(summary)
    if not summary["ok"]:
        raise typer.Exit(1)


async def _demo(folder: str, timeout: float, *, live: bool, keep: bool = False) -> dict[str, Any]:
    import asyncio
    import time
    from datetime import UTC, datetime, timedelta

    from smsgate.config import Config
    from smsgate.emulators.base import Callbacks, Faults
    from smsgate.emulators.twilio import TwilioEmulator
    from smsgate.message import Message, Purpose, Status
    from smsgate.outbox.cli_support import open_outbox
    from smsgate.server.app import create_app
    from smsgate.server.runner import serving
    from smsgate.server.settings import ServerSettings

    if TYPE_CHECKING:
        from fastapi import FastAPI

    started = time.monotonic()
    store = f"sqlite:///{folder}/demo.db"
    emulator = TwilioEmulator(
        faults=Faults(latency=0.15, seed=2),
        callbacks=Callbacks(delay=0.8, outcomes={"delivered": 1.0}),
    )
    await emulator.start()
    # The real gateway service: its in-process worker sends, and the emulator's signed receipts
    # arrive at its /webhooks/twilio/status endpoint, exactly as in production.
    config = Config.from_dict(
        {
            "store": store,
            "providers": {"twilio": {"url": emulator.provider_url()}},
            "routes": [{"name": "default", "providers": ["twilio"], "base_delay": 0.2}],
            "worker": {"concurrency": 4},
        }
    )
    # opened as every command opens it: opt-outs as the config says (create_app checks)
    outbox = open_outbox(config, migrate=True)

    def make_app(url: str) -> FastAPI:
        settings = ServerSettings.from_config(config).with_overrides(public_url=url)
        return create_app(config, settings=settings, outbox=outbox)

    now = datetime.now(UTC)
    ids: list[tuple[str, str]] = []
    done_states = {Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.REJECTED}
    finished = False
    server_url = ""
    display: _Display | None = None
    try:
        async with serving(make_app) as served:
            server_url = served.url
            for to, body, purpose, delay, expect in DEMO_MESSAGES:
                send_at = now + timedelta(seconds=delay) if delay else None
                message = Message(to=to, body=body, purpose=Purpose(purpose), send_at=send_at)
                ids.append((outbox.submit(message), expect))
            display = _Display(outbox, [i for i, _ in ids], server_url) if live else None
            if display is not None:
                display.start()
            while time.monotonic() - started < timeout:
                records = [await outbox.astatus(message_id) for message_id, _ in ids]
                if display is not None:
                    display.update(records)
                if all(record.status in done_states for record in records):
                    finished = True
                    break
                await asyncio.sleep(0.25)
    finally:
        if display is not None:
            display.stop()
        await emulator.stop()
    receipts = sum(
        1
        for message_id, _ in ids
        for event in outbox.status(message_id).events
        if event.source.startswith("webhook")
    )
    records = [outbox.status(message_id) for message_id, _ in ids]
    outbox.close()
    elapsed = time.monotonic() - started
    as_expected = all(r.status.value == expect for r, (_, expect) in zip(records, ids, strict=True))
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    summary: dict[str, Any] = {
        "ok": finished and as_expected,
        "elapsed": round(elapsed, 2),
        "store": store,
        "counts": counts,
        "receipts": receipts,
        "server": server_url,
        "messages": [
            {
                "id": r.id,
                "to": r.to,
                "purpose": r.purpose,
                "status": r.status.value,
                "expected": expect,
                "events": len(r.events),
                "last": r.events[-1].reason if r.events else None,
            }
            for r, (_, expect) in zip(records, ids, strict=True)
        ],
    }
    if live:
        _print_summary(summary, records, finished, as_expected, keep)
    return summary


class _Display:
    """A live rich table of the demo's messages."""

    def __init__(self, outbox: Outbox, ids: list[str], server_url: str) -> None:
        from rich.live import Live

        console = _console()
        # The server lives only as long as the demo, so no URL to try later is offered here;
        # the summary ends with a command that works once the demo is over.
        console.print(
            f"gateway running at {server_url} for the demo; the emulator's signed receipts "
            f"arrive at {server_url}/webhooks/twilio/status",
            highlight=False,
        )
        self._ids = ids
        self._live = Live(self._table([]), console=console, refresh_per_second=8, transient=False)

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def update(self, records: list[Any]) -> None:
        self._live.update(self._table(records))

    @staticmethod
    def _table(records: list[Any]) -> Any:
        from rich.table import Table

        colours = {
            "scheduled": "cyan",
            "queued": "white",
            "sending": "yellow",
            "sent": "blue",
            "delivered": "green",
            "failed": "red",
            "undelivered": "red",
        }
        table = Table(title="smsgate demo: outbox -> worker -> Twilio emulator -> receipts")
        # whole ids, so that one can be pasted into smsgate status
        table.add_column("id", no_wrap=True, min_width=30)
        table.add_column("to", no_wrap=True, min_width=13)
        table.add_column("purpose", no_wrap=True, min_width=13)
        table.add_column("status", no_wrap=True, min_width=11)
        table.add_column("latest", overflow="ellipsis", no_wrap=True)
        for record in records:
            status = record.status.value
            latest = ""
            if record.last_error and status == "failed":
                latest = f"{record.last_error.get('error')} {record.last_error.get('code') or ''}"
            elif record.events:
                event = record.events[-1]
                who = (
                    "receipt" if event.source.startswith("webhook") else event.source.split(":")[0]
                )
                latest = f"{who}, {len(record.events)} events"
            table.add_row(
                record.id,
                record.to,
                record.purpose,
                f"[{colours.get(status, 'white')}]{status}[/]",
                latest,
            )
        return table


def _print_summary(
    summary: dict[str, Any], records: list[Any], finished: bool, as_expected: bool, keep: bool
) -> None:
    console = _console()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    console.print(
        f"\n{len(records)} messages in {summary['elapsed']:.1f} s: {counts}; "
        f"{summary['receipts']} signed delivery receipts recorded.",
        highlight=False,
    )
    failed = [r for r in records if r.status.value == "failed"]
    for record in failed:
        reason = (record.last_error or {}).get("message", "")
        console.print(f"  {record.to} failed as expected: {reason}", highlight=False)
    if not finished:
        console.print("[red]the demo timed out before every message finished[/]")
    elif not as_expected:
        console.print("[red]some messages did not end as expected[/]")
    else:
        console.print("Every message ended as expected.", highlight=False)
    if keep:
        import shlex

        hint = f"smsgate status {records[0].id} --store {shlex.quote(summary['store'])}"
        console.print(
            f"Each state change is an event in the outbox; see one: {hint}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            "Run smsgate demo --keep to keep the outbox and read each message's history.",
            highlight=False,
        )


def _console() -> Any:
    """A console as wide as the terminal; piped, as wide as $COLUMNS says, else unbounded
    enough that ids and hints are never cut."""
    import os
    import sys

    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=200)
