"""``smsgate verify``: one-time codes and the fraud guard, on the configured store.

``start`` stores the verification and its text in the outbox (a running ``smsgate serve`` or
``smsgate worker`` sends it); ``check`` checks a code; ``blocks`` and ``unblock`` show and lift
the prefixes the SMS-pumping detector blocked. They need the config's ``[verify]`` table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smsgate.cli import common

if TYPE_CHECKING:
    from smsgate.verify import Verify

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="smsgate.toml (default: $SMSGATE_CONFIG).", dir_okay=False),
]
StoreOption = Annotated[
    str | None, typer.Option("--store", help="Store URL (instead of the config's store).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="verify",
        help="One-time codes: start, check, and the SMS-pumping blocks.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    group.command("start")(start)
    group.command("check")(check)
    group.command("status")(status)
    group.command("cancel")(cancel)
    group.command("blocks")(blocks)
    group.command("unblock")(unblock)
    app.add_typer(group, name="verify")


@contextmanager
def _verify(config: Path | None, store: str | None) -> Iterator[Verify]:
    from smsgate.errors import ConfigError
    from smsgate.outbox.cli_support import open_outbox, resolve_config
    from smsgate.verify import Verify, VerifySettings

    try:
        resolved = resolve_config(config)
        settings = VerifySettings.from_config(resolved)
        outbox = open_outbox(resolved, store=store)
    except ConfigError as exc:
        common.fail(str(exc))
    try:
        yield Verify(outbox, settings)
    finally:
        outbox.close()


def _show(answer: dict[str, object], as_json: bool) -> None:
    if as_json:
        common.print_json(answer)
        return
    line = f"{answer['id']}  {answer['status']}  {answer['to']}"
    if answer.get("valid"):
        line += "  valid"
    if answer.get("status") == "pending":
        line += f"  attempts left {answer['attempts_left']}"
    if answer.get("reason"):
        line += f"  ({answer['reason']})"
    print(line)


def _run(fn: object) -> object:
    """Call ``fn``; an error of the taxonomy exits 1 (2 for bad input) with its message."""
    from smsgate.errors import InvalidMessage, InvalidRecipient, SmsgateError

    try:
        return fn()  # type: ignore[operator]
    except (InvalidRecipient, InvalidMessage) as exc:
        common.fail(str(exc), 2)
    except SmsgateError as exc:
        common.fail(str(exc), 1)


def start(
    to: Annotated[str, typer.Argument(help="The number to verify, E.164 (+14155552671).")],
    locale: Annotated[str | None, typer.Option("--locale", help="Language: en, de, fr ...")] = None,
    code_length: Annotated[int | None, typer.Option("--code-length", min=4, max=10)] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help='How long the code is valid ("10m").')
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a code to TO (queued in the outbox; a running serve or worker sends it)."""
    from smsgate.verify import Verification, VerificationBlocked

    with _verify(config, store) as verify:
        try:
            made = _run(lambda: verify.start(to, locale=locale, code_length=code_length, ttl=ttl))
        except VerificationBlocked as exc:  # pragma: no cover - _run handles it
            common.fail(str(exc), 1)
    assert isinstance(made, Verification)
    _show(made.to_dict(), as_json)


def check(
    target: Annotated[str, typer.Argument(help="The verification id (ver_...) or the number.")],
    code: Annotated[str, typer.Argument(help="The code as the user typed it.")],
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check CODE. Exits 0 only when this check approved the verification."""
    from smsgate.verify import Verification

    with _verify(config, store) as verify:
        done = _run(lambda: verify.check(target, code))
    assert isinstance(done, Verification)
    _show(done.to_dict(), as_json)
    if not done.valid:
        raise typer.Exit(1)


def status(
    verification_id: Annotated[str, typer.Argument(help="The verification id (ver_...).")],
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a verification's state."""
    from smsgate.verify import Verification

    with _verify(config, store) as verify:
        found = _run(lambda: verify.get(verification_id))
    assert isinstance(found, Verification)
    _show(found.to_dict(), as_json)


def cancel(
    verification_id: Annotated[str, typer.Argument(help="The verification id (ver_...).")],
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a pending verification: its code stops working, unsent texts are not sent."""
    from smsgate.verify import Verification

    with _verify(config, store) as verify:
        done = _run(lambda: verify.cancel(verification_id))
    assert isinstance(done, Verification)
    _show(done.to_dict(), as_json)


def blocks(
    all_blocks: Annotated[
        bool, typer.Option("--all", help="Lifted and expired blocks too.")
    ] = False,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the prefixes the SMS-pumping detector blocked."""
    with _verify(config, store) as verify:
        found = verify.blocks(active=not all_blocks, limit=1000)
    if as_json:
        common.print_json([b.to_dict() for b in found])
        return
    if not found:
        print("no prefix is blocked", file=sys.stderr)
    for b in found:
        state = "lifted" if b.lifted_at is not None else f"until {_iso(b.blocked_until)}"
        print(f"{b.prefix}  {state}  level {b.level}  {b.reason}")


def unblock(
    prefix: Annotated[str, typer.Argument(help="The prefix as blocks lists it (+88213...).")],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Lift a prefix's block now (its traffic window starts afresh)."""
    with _verify(config, store) as verify:
        lifted = _run(lambda: verify.unblock(prefix, by="cli"))
    if not lifted:
        common.fail(f"prefix {prefix} is not blocked; see smsgate verify blocks", 1)
    print(f"unblocked {prefix}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
