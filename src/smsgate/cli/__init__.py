"""The ``smsgate`` command.

Each area registers its commands from its own module (``cli/<area>.py`` exposes
``register(app)``); heavy imports happen inside the command functions so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from smsgate import __version__
from smsgate.cli import common

app = typer.Typer(
    name="smsgate",
    help="Send SMS and MMS reliably through many providers.",
    epilog=common.EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
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
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version."
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


def main(argv: list[str] | None = None) -> None:
    """The console script: exit 0, 1 or 2 with errors as one line (JSON under ``--json``)."""
    # typer may vendor click (typer._click): find its exception classes through a public name
    usage_error: Any = _click_class("UsageError")
    click_exception: Any = _click_class("ClickException")

    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    common.STATE.json_errors = "--json" in args
    try:
        code = app(args=args, prog_name="smsgate", standalone_mode=False)
    except common.CliError as exc:
        common.report_error(str(exc), exc.exit_code)
        code = exc.exit_code
    except usage_error as usage:
        # one line like every other error, and where to read more
        where = usage.ctx.command_path if usage.ctx is not None else "smsgate"
        message = usage.format_message().rstrip(".")
        common.report_error(f"{message} (see {where} --help)", common.EXIT_USAGE, "usage")
        code = common.EXIT_USAGE
    except click_exception as click_error:
        common.report_error(click_error.format_message(), click_error.exit_code)
        code = click_error.exit_code
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except typer.Exit as done:
        code = done.exit_code
    except Exception as exc:
        if verbose:
            raise
        # A bug of ours, not the user's input: no traceback (it may hold a secret), and a way
        # to see it.
        common.report_error(
            f"unexpected {type(exc).__name__}; run again with -v to see the traceback and "
            "report it",
            common.EXIT_FAILED,
            "internal",
        )
        code = common.EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)


def _click_class(name: str) -> type[Exception]:
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise LookupError(name)  # pragma: no cover - click and typer always have these
