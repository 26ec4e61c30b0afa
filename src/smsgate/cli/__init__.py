"""The ``smsgate`` command.

Each area registers its commands from its own module (``cli/<area>.py`` exposes
``register(app)``); heavy imports happen inside the command functions so ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from smsgate import __version__
from smsgate.cli import common

app = typer.Typer(
    name="smsgate",
    help="Send SMS and MMS reliably through many providers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"smsgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Send SMS and MMS reliably through many providers."""


def _register_all() -> None:
    from importlib import import_module

    for area in common.AREAS:
        try:
            module = import_module(f"smsgate.cli.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"smsgate.cli.{area}":
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    try:
        app()
    except common.CliError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
