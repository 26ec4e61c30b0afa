"""What every command shares: the common options, error exits, JSON output, the config.

One grammar for every command: ``-c/--config``, ``--store``, ``--json`` and ``-v/--verbose`` mean
the same everywhere they appear; errors are one line on stderr (one JSON object under
``--json``); the exit status is 0 (done), 1 (some work failed) or 2 (bad input or usage).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from smsgate.config import Config

#: command modules, registered in this order
AREAS = (
    "encoding",
    "numbers",
    "send",
    "emulate",
    "carriers",
    "config",
    "outbox",
    "serve",
    "keys",
    "users",
    "verify",
    "demo",
)

#: exit statuses, the same for every command
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EXIT_CODES_HELP = (
    "Exit status: 0 when everything was done, 1 when some work failed (a send refused by the "
    "provider, a message not found), 2 for bad input or usage (nothing was started)."
)

CONFIG_HELP = (
    "smsgate.toml (default: $SMSGATE_CONFIG, else ./smsgate.toml, else built-in defaults)."
)
STORE_HELP = "Store URL, overriding the config (sqlite:///path.db or postgresql://...)."

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", "-c", help=CONFIG_HELP, show_default=False, metavar="FILE"),
]
StoreOption = Annotated[str | None, typer.Option("--store", help=STORE_HELP, metavar="URL")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout; errors as JSON on stderr.")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Say more about each step.")]


class CliError(Exception):
    """Raised by a command to exit with one line on stderr and no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _State:
    #: errors as JSON on stderr; set by the entry point when --json is on the command line
    json_errors = False


STATE = _State()

#: library wording that names a Python argument, and the command-line flag that does the same
_CLI_WORDS = (
    ("pass strict=False", "drop --strict"),
    ("region='US'", "--region US"),
    (
        "pass an aware datetime such as datetime.now(timezone.utc)",
        "give a time with its zone, e.g. 2026-12-05T09:00:00+00:00",
    ),
)


def cli_words(message: str) -> str:
    """``message`` with advice for Python callers turned into advice for the command line."""
    for python_words, cli_advice in _CLI_WORDS:
        message = message.replace(python_words, cli_advice)
    return message


def report_error(message: str, exit_code: int, kind: str | None = None) -> None:
    """Write an error for a user: one line, or one JSON object under --json."""
    message = cli_words(message)
    if STATE.json_errors:
        error = {"message": message, "exit_code": exit_code, "kind": kind or _kind(exit_code)}
        sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"smsgate: {message}\n")
    sys.stderr.flush()


def _kind(exit_code: int) -> str:
    return "usage" if exit_code == EXIT_USAGE else "failed"


def fail(message: str, exit_code: int = EXIT_USAGE, kind: str | None = None) -> NoReturn:
    """Exit with ``message`` on stderr: 2 for bad input, 1 for a failed operation."""
    report_error(message, exit_code, kind)
    raise SystemExit(exit_code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def note(message: str) -> None:
    """A line for the user about what the command is doing, on stderr (never under --json)."""
    if not STATE.json_errors:
        sys.stderr.write(f"{message}\n")


def load_config(path: str | None, *, announce: bool = True) -> Config:
    """The config of ``--config``, ``SMSGATE_CONFIG`` or ``./smsgate.toml`` (else the defaults),
    saying on stderr which file was used (unless the command says so itself: ``announce``); a
    bad file exits 2 naming the file and the key."""
    from smsgate.config import Config, find_config
    from smsgate.errors import ConfigError

    try:
        config = Config.load(path)
    except ConfigError as exc:
        found = find_config(path)
        # Key errors name the key; say which file too, in case SMSGATE_CONFIG points elsewhere.
        prefix = f"{found[0]} (from {found[1]}): " if found and exc.field is not None else ""
        fail(prefix + str(exc))
    if announce and config.source is not None:
        note(f"config: {config.describe_source()}")
    return config


def require_providers(config: Config) -> None:
    """Refuse to queue what no provider will ever send."""
    if not config.providers:
        where = config.source or "./smsgate.toml (or pass --config FILE)"
        fail(
            f"no provider is configured, so nothing queued would ever be sent; add to {where}: "
            '[providers.NAME] with url = "twilio://SID:${TWILIO_TOKEN}@+15017122661" '
            "(see smsgate config schema)"
        )


def open_existing_store(url: str) -> None:
    """Refuse a SQLite store file that does not exist (commands that only read never create
    one: a typo would otherwise leave an empty database behind)."""
    from smsgate.errors import SmsgateError
    from smsgate.outbox.store import StoreURL

    try:
        missing = StoreURL.parse(url).missing_file()
    except SmsgateError as exc:
        fail(str(exc))
    if missing is not None:
        fail(
            f"store {missing} does not exist; check --store or the config's store, or "
            "create it with smsgate db upgrade"
        )


def read_stdin_text() -> str:
    """Standard input as text, without the final line break a file or ``echo`` adds."""
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError:
        fail("standard input is not UTF-8 text; check the file's encoding")
    return checked_text(text.removesuffix("\n").removesuffix("\r"), "standard input")


def checked_text(text: str, what: str = "the text") -> str:
    """``text`` unless it holds bytes the terminal could not decode (lone surrogates, PEP 383),
    which no provider can send: refused here rather than counted or sent as garbage."""
    if any("\ud800" <= char <= "\udfff" for char in text):
        fail(
            f"{what} is not valid UTF-8 (a lone surrogate: a byte sequence that could not be "
            "decoded); check its encoding"
        )
    return text


def require_extra(module: str, extra: str, what: str) -> None:
    """Exit 2 naming the pip extra when ``module`` (part of ``extra``) is not installed."""
    from importlib.util import find_spec

    if find_spec(module) is None:
        fail(f"{what} needs the [{extra}] extra: pip install 'smsgate[{extra}]'")
