"""Helpers every command module shares: error exits, JSON output, provider-error formatting."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

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


class CliError(Exception):
    """Raised by a command to exit with one line on stderr and no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: library wording that names a Python argument, and the command-line flag that does the same
_CLI_WORDS = (("pass strict=False", "pass --lenient"), ("region='US'", "--region US"))


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """Exit with ``message`` on stderr: 2 for bad input, 1 for a failed operation."""
    for python_words, cli_words in _CLI_WORDS:
        message = message.replace(python_words, cli_words)
    print(f"smsgate: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
