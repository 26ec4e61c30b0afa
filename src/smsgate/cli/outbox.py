"""The outbox commands: ``db upgrade``, ``worker``, ``status``, ``messages``, ``cancel``, ``bulk``.

The store is the one of ``--store URL``, else of the config file (``--config``, else
``SMSGATE_CONFIG``, else ``./smsgate.toml``), else ``sqlite:///smsgate.db``. Commands that only read
(``status``, ``messages``, ``cancel``, ``db version``) never create a store. Heavy imports happen
inside the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import typer

from smsgate.cli import common
from smsgate.cli.common import (
    ConfigOption,
    JsonOption,
    StoreOption,
    VerboseOption,
    fail,
    print_json,
)

if TYPE_CHECKING:
    from smsgate.config import Config
    from smsgate.outbox import Outbox
    from smsgate.outbox.store import Store


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="The outbox store's schema.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    db.command("version")(db_version)
    db.command("prune")(db_prune)
    app.add_typer(db, name="db")
    app.command("worker")(worker_command)
    app.command("status")(status_command)
    app.command("messages")(messages_command)
    app.command("cancel")(cancel_command)
    app.command("bulk")(bulk_command)


def _config(path: str | Config | None) -> Config:
    """The config at ``path`` (None: discovered, else defaults; a Config: itself)."""
    from smsgate.config import Config

    return path if isinstance(path, Config) else common.load_config(path)


def _open(config: str | Config | None, store: str | None, *, existing: bool = False) -> Outbox:
    """The outbox of --store, else of the config (a path, or one already loaded); opt-outs as
    the config says either way. ``existing``: refuse a store that is not there yet."""
    from smsgate.errors import SmsgateError
    from smsgate.outbox.cli_support import open_outbox

    resolved = _config(config)
    if existing:
        common.open_existing_store(store or resolved.store)
    try:
        return open_outbox(resolved, store=store)
    except SmsgateError as exc:
        fail(str(exc))


def _fail_with(exc: Exception) -> NoReturn:
    fail(str(exc), 1)


# -- db -----------------------------------------------------------------------------------------


def _open_store(config: str | None, store: str | None, *, existing: bool = False) -> Store:
    """The store named by --store, else by the config file; a bad URL exits 2 with one line."""
    from smsgate.errors import SmsgateError
    from smsgate.outbox.store import open_store

    url = store or _config(config).store
    if existing:
        common.open_existing_store(url)
    try:
        return open_store(url)
    except SmsgateError as exc:
        fail(str(exc))


def db_upgrade(
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Create or upgrade the store's schema to this smsgate's version (safe to run again)."""
    from smsgate.outbox.migrate import LATEST

    target = _open_store(config, store)
    try:
        before = target.schema_version()
        if before > LATEST:
            fail(
                f"the store {target.url} is at schema version {before}, newer than this smsgate "
                f"({LATEST}); upgrade smsgate instead",
                1,
            )
        applied = target.migrate()
        after = target.schema_version()
    finally:
        target.close()
    if json:
        print_json({"store": target.url, "from": before, "to": after, "applied": list(applied)})
    elif applied:
        done = ", ".join(str(v) for v in applied)
        print(f"upgraded {target.url} from version {before} to {after} (applied {done})")
    else:
        print(f"{target.url} is at version {after}: nothing to do")


def db_version(
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Print the store's schema version and the one this smsgate needs (exit 1 if they differ)."""
    from smsgate.outbox.migrate import LATEST

    target = _open_store(config, store, existing=True)
    try:
        found = target.schema_version()
    finally:
        target.close()
    if json:
        print_json({"store": target.url, "version": found, "needed": LATEST})
    else:
        print(f"{target.url}: schema version {found}; this smsgate needs {LATEST}")
    if found != LATEST:
        raise typer.Exit(1)


def db_prune(
    older_than: str = typer.Option(
        None,
        "--older-than",
        help='Delete final messages older than this ("90d", "12h"), whatever the config says.',
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Delete finished messages (and their events) past the config's [retention] ages, or
    --older-than; only final states go, opt-outs never. Safe while workers run."""
    from smsgate.config import parse_duration
    from smsgate.errors import SmsgateError
    from smsgate.outbox.retention import Retention, prune

    cfg = _config(config)
    try:
        if older_than is not None:
            retention: Retention | None = Retention.older_than(
                parse_duration(older_than, "--older-than"), batch_size=cfg.retention.batch_size
            )
        else:
            retention = cfg.retention.build()
    except SmsgateError as exc:
        fail(str(exc))
    if retention is None:
        fail(
            "nothing to prune: pass --older-than 90d, or set ages in the config's [retention] "
            'table (messages = "90d")'
        )
    with _open(cfg, store, existing=True) as outbox:
        try:
            done = prune(outbox.store, retention, outbox.clock.time(), dry_run=dry_run)
        except SmsgateError as exc:
            _fail_with(exc)
        url = outbox.store.url
    if json:
        print_json({"store": url, "dry_run": dry_run, **done.to_dict()})
        return
    verb = "would delete" if dry_run else "deleted"
    print(f"{url}: {verb} {done.messages} messages and {done.events} events")


# -- worker -------------------------------------------------------------------------------------


def worker_command(
    config: ConfigOption = None,
    store: StoreOption = None,
    concurrency: int = typer.Option(
        None, "--concurrency", min=1, max=10_000, help="Sends in flight at once."
    ),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Exit when no message is waiting or being sent."
    ),
    verbose: VerboseOption = False,
) -> None:
    """Send the outbox's messages until SIGTERM/SIGINT (finishing or releasing what it holds)."""
    import logging

    from smsgate.config import receipts_requested
    from smsgate.errors import SmsgateError
    from smsgate.eventloop import run
    from smsgate.outbox.cli_support import build_worker

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = _config(config)
    outbox = _open(cfg, store)
    try:
        # receipts go to the server at public_url, as [server] request_receipts says
        receipts = receipts_requested(cfg.server)
        worker = build_worker(outbox, cfg, concurrency=concurrency, receipts=receipts)
    except SmsgateError as exc:
        outbox.close()
        fail(str(exc))

    async def main() -> None:
        worker.install_signal_handlers()
        await worker.run(until_idle=until_idle)

    try:
        run(main())
    finally:
        outbox.close()


# -- status, messages, cancel -------------------------------------------------------------------


def status_command(
    message_id: str = typer.Argument(..., help="The message id (msg_...)."),
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Show a message's status and its whole history."""
    from smsgate.outbox import MessageNotFound

    with _open(config, store, existing=True) as outbox:
        try:
            record = outbox.status(message_id)
        except MessageNotFound as exc:
            fail(str(exc), 1)
    if json:
        print_json(record.to_dict())
        return
    from rich.table import Table

    console = _console()
    console.print(
        f"[bold]{record.id}[/] to {record.to}: [bold]{record.status.value}[/]"
        f" ({record.attempts} attempt(s)"
        + (
            f", {record.provider} {record.provider_message_id}"
            if record.provider_message_id
            else ""
        )
        + ")",
        highlight=False,
    )
    if record.last_error:
        console.print(f"last error: {record.last_error.get('message')}", highlight=False)
    table = Table("time", "from", "to", "source", "reason")
    table.columns[0].no_wrap = True
    for event in record.events:
        table.add_row(
            event.at.strftime("%H:%M:%S.%f")[:-3],
            event.from_status.value if event.from_status else "",
            event.to_status.value,
            event.source,
            event.reason or "",
        )
    console.print(table)


def messages_command(
    status: list[str] = typer.Option([], "--status", help="Only these statuses (repeatable)."),
    to: str = typer.Option(None, "--to", help="Only messages to this number."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="How many (newest first)."),
    cursor: str = typer.Option(None, "--cursor", help="Continue after this id (from a page)."),
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """List messages, newest first."""
    from smsgate.errors import SmsgateError

    with _open(config, store, existing=True) as outbox:
        try:
            page = outbox.list(status=status or None, to=to, cursor=cursor, limit=limit)
        except SmsgateError as exc:
            fail(str(exc))
        counts = outbox.counts()
    if json:
        print_json({**page.to_dict(), "counts": {k.value: v for k, v in counts.items()}})
        return
    from rich.table import Table

    table = Table()
    for column in ("id", "status", "to", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("provider", no_wrap=True)
    table.add_column("last error", overflow="ellipsis", no_wrap=True)
    for record in page.items:
        table.add_row(
            record.id,
            record.status.value,
            record.to,
            record.created_at.strftime("%m-%d %H:%M:%S"),
            str(record.attempts),
            record.provider or "",
            (record.last_error or {}).get("message", "") or "",
        )
    console = _console()
    console.print(table)
    summary = ", ".join(f"{k.value} {v}" for k, v in sorted(counts.items()))
    console.print(f"in the outbox: {summary or 'nothing'}", highlight=False)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}", highlight=False)


def cancel_command(
    message_id: str = typer.Argument(..., help="The message id (msg_...)."),
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Stop a scheduled or queued message (exit 1 once it was handed to a provider)."""
    from smsgate.outbox import MessageNotFound, NotCancelable

    with _open(config, store, existing=True) as outbox:
        try:
            record = outbox.cancel(message_id)
        except (MessageNotFound, NotCancelable) as exc:
            fail(str(exc), 1)
    if json:
        print_json(record.to_dict(events=False))
    else:
        print(f"canceled {record.id}")


def _console() -> Any:
    """A rich console; piped output gets a wide one so ids and reasons are not cut."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


# -- bulk ---------------------------------------------------------------------------------------


def bulk_command(
    file: str = typer.Argument(..., help="CSV file with a header row."),
    body: str = typer.Option(..., "--body", help='Template with {column} fields: "Hi {name}".'),
    to_column: str = typer.Option("phone", "--to-column", help="The column with the numbers."),
    sender: str = typer.Option(None, "--sender", help="Sender number or alphanumeric id."),
    purpose: str = typer.Option(
        "transactional", "--purpose", help="transactional, otp, marketing."
    ),
    region: str = typer.Option(None, "--region", help="Default region for national numbers."),
    send_at: str = typer.Option(None, "--send-at", help="ISO time with zone to schedule for."),
    rejects: str = typer.Option(
        None, "--rejects", help="Where refused rows go (FILE.rejects.csv)."
    ),
    key_prefix: str = typer.Option(
        None, "--key-prefix", help="Idempotency keys PREFIX:LINE (default: from the file's hash)."
    ),
    no_keys: bool = typer.Option(False, "--no-keys", help="No idempotency keys (re-runs resend)."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Rows per transaction."),
    parallel: bool = typer.Option(
        True, "--parallel/--no-parallel", help="Read and validate in a second process."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Store nothing: count messages, encodings and segments, by country, with the cost "
        "from the config's [pricing] table.",
    ),
    config: ConfigOption = None,
    store: StoreOption = None,
    json: JsonOption = False,
) -> None:
    """Stream a CSV into the outbox: one message per row, refused rows into a rejects CSV.

    Each row's idempotency key is PREFIX:LINE, so running the same file again (after a crash,
    say) stores nothing twice. A line that is not CSV or not UTF-8 is one refused row.

    Exit status: 0 every row stored (or already stored), 1 some rows refused (see the rejects
    file), 2 nothing could run (no file, bad template or options, store unreachable).
    """
    import os
    import sys

    from smsgate.errors import SmsgateError
    from smsgate.outbox.bulk import BulkOptions, submit_csv

    if not os.path.isfile(file):
        fail(f"{file}: no such file")
    common.checked_text(body, "--body")
    try:
        options = BulkOptions.build(
            file,
            body=body,
            to_column=to_column,
            sender=sender,
            purpose=purpose,
            region=region,
            send_at=send_at,
            key_prefix=None if no_keys else (key_prefix or "auto"),
            rejects=rejects,
        )
    except SmsgateError as exc:
        fail(str(exc))
    resolved = _config(config)
    if dry_run:
        _dry_run(options, resolved, json)
        return
    common.require_providers(resolved)
    with _open(resolved, store) as outbox:
        progress: Any = None
        try:
            if json or not sys.stderr.isatty():
                report = submit_csv(outbox, options, batch_size=batch_size, parallel=parallel)
            else:
                progress = _Progress(os.path.getsize(file))
                with progress:
                    report = submit_csv(
                        outbox,
                        options,
                        batch_size=batch_size,
                        parallel=parallel,
                        on_progress=progress.update,
                    )
        except SmsgateError as exc:
            fail(str(exc))
    data = report.to_dict()
    if json:
        print_json(data)
    else:
        print(
            f"{report.total} rows in {report.elapsed:.1f} s ({report.rate:,.0f}/s): "
            f"{report.accepted} accepted, {report.duplicates} already in the outbox, "
            f"{report.rejected} refused"
        )
        if report.rejected:
            print(f"refused rows and reasons: {options.rejects}")
            for reason, count in report.reasons.most_common(5):
                print(f"  {count} x {reason}")
    if report.rejected:
        raise typer.Exit(1)


def _dry_run(options: Any, config: Config, json: bool) -> None:
    from smsgate.errors import SmsgateError
    from smsgate.outbox.dryrun import estimate_csv

    try:
        report = estimate_csv(options, config)
    except SmsgateError as exc:
        fail(str(exc))
    if json:
        print_json(report.to_dict())
    else:
        for line in _dry_run_lines(report):
            print(line)
    if report.refused and not report.accepted:
        raise typer.Exit(1)


def _dry_run_lines(report: Any) -> list[str]:
    money = report.currency
    lines = [
        f"dry run, nothing stored: {report.total:,} rows; {report.accepted:,} would be queued, "
        f"{report.refused:,} refused",
        f"segments: {report.segments:,} in total",
    ]
    for name, count in sorted(report.encodings.items()):
        lines.append(
            f"  {name}: {count:,} message(s), {report.encoding_segments[name]:,} segment(s)"
        )
    spread = ", ".join(f"{n} part(s): {c:,}" for n, c in sorted(report.per_message.items()))
    if spread:
        lines.append(f"  per message: {spread}")
    if report.countries:
        lines.append("by country:")
        for region, totals in sorted(report.countries.items(), key=lambda item: -item[1].messages):
            cost = (
                f"{totals.cost:,.4f} {money}" if totals.messages > totals.unpriced else "no price"
            )
            if 0 < totals.unpriced < totals.messages:
                cost += f" ({totals.unpriced:,} unpriced)"
            lines.append(
                f"  {region:<8} {totals.messages:>9,} message(s) {totals.segments:>9,} segment(s)"
                f"  {cost}"
            )
    if report.accepted and report.unpriced == report.accepted:
        lines.append(
            "estimated cost: unknown; add prices per segment to the config, e.g. "
            '[pricing.per_segment.twilio] "+1" = 0.0079'
        )
    else:
        unpriced = f" ({report.unpriced:,} message(s) without a price)" if report.unpriced else ""
        lines.append(f"estimated cost: {report.cost:,.4f} {money}{unpriced}")
    for reason, count in report.reasons.most_common(5):
        lines.append(f"refused: {count:,} x {reason}")
    return lines


class _Progress:
    """A rich progress bar over the bytes of the CSV read so far."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]submitting"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[rows]:,} rows, {task.fields[refused]:,} refused"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._bar.add_task("bulk", total=max(total, 1), rows=0, refused=0)

    def __enter__(self) -> _Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def update(self, done_bytes: int, rows: int, refused: int) -> None:
        self._bar.update(self._task, completed=done_bytes, rows=rows, refused=refused)
