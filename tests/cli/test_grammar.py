"""One grammar for every command: the bad inputs a newcomer typed, their exit codes and messages.

Each row runs the real console script in a fresh directory (so ``./smsgate.toml`` discovery and
"nothing was created" are checked for real) and asserts the exit status, one line on stderr
without a traceback, the words a user needs, and that no secret came back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import SMSGATE

TOKEN = "hunter2secret"


def run(
    cwd: Path, *args: str | bytes, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("SMSGATE_CONFIG", "SMSGATE_PROVIDER")
    }
    environment.update(env or {})
    return subprocess.run(
        [*SMSGATE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
        cwd=cwd,
        input=stdin,
        errors="replace",
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line (the "config: FILE" note aside)."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("config: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


#: (files to write, arguments, environment, exit status, words the message must hold)
BAD_INPUTS: list[tuple[dict[str, str], tuple[str | bytes, ...], dict[str, str], int, list[str]]] = [
    (
        {"smsgate.toml": '[providers.t]\nurl = "twillio://ACx:T@+15017122661"\n'},
        ("config", "check"),
        {},
        2,
        ["providers.t.url", "unknown provider scheme 'twillio'", 'did you mean "twilio://"'],
    ),
    (
        {"smsgate.toml": '[server]\nport = "eighty"\n'},
        ("config", "check"),
        {},
        2,
        ["server.port", "'eighty' is not a TCP port"],
    ),
    (
        {"smsgate.toml": "[server]\nprot = 8080\n"},
        ("config", "check"),
        {},
        2,
        ["server.prot: unknown key; did you mean 'port'?"],
    ),
    (
        {"smsgate.toml": '[providers.t]\nurl = "twilio://ACx:T@+15017122661?colour=red"\n'},
        ("config", "check"),
        {},
        2,
        ["providers.t.url", "colour"],
    ),
    ({}, ("serve", "--log-level", "bogus"), {}, 2, ["--log-level", "'bogus' is not a log level"]),
    ({}, ("serve", "--port", "99999"), {}, 2, ["--port", "99999"]),
    ({}, ("emulate", "twilio", "--port", "80000"), {}, 2, ["--port", "80000"]),
    ({}, ("emulate", "twilio", "--error-rate", "5"), {}, 2, ["--error-rate", "0.0<=x<=1.0"]),
    (
        {},
        ("emulate", "twilio", "--outcomes", "delivered=2,bogus=1"),
        {},
        2,
        ["--outcomes", "delivered=2 is not between 0 and 1"],
    ),
    (
        {},
        ("emulate", "twilio", "--outcomes", "bogus=1"),
        {},
        2,
        ["'bogus' is not an outcome", "delivered"],
    ),
    (
        {},
        ("emulate", "twilio", "--option", "foo=bar"),
        {},
        2,
        ["--option foo", "no such option"],
    ),
    (
        {},
        ("emulate", "smtp", "--option", "http_port=abc"),
        {},
        2,
        ["http_port", "expected a whole number"],
    ),
    (
        {},
        ("send", "+15555550100", "hi", "--provider", f"twilio:/ACx:{TOKEN}@+15017122661"),
        {},
        2,
        ["--provider is not a provider URL", "scheme://"],
    ),
    (
        {},
        ("send", "+15555550100", "hi", "--provider", f"twillio://ACx:{TOKEN}@+15017122661"),
        {},
        2,
        ["twillio"],
    ),
    ({}, ("send", "+15555550100", b"caf\xff"), {}, 2, ["not valid UTF-8"]),
    ({}, ("segments", b"caf\xed\xa0\x80"), {}, 2, ["not valid UTF-8"]),
    (
        {"people.csv": "phone\n+15555550100\n"},
        ("bulk", "people.csv", "--body", b"Hi \xff", "--dry-run"),
        {},
        2,
        ["--body is not valid UTF-8"],
    ),
    (
        {},
        ("config", "check"),
        {"SMSGATE_CONFIG": "nosuch.toml"},
        2,
        ["nosuch.toml (from SMSGATE_CONFIG) does not exist"],
    ),
    (
        {},
        ("messages",),
        {"SMSGATE_CONFIG": "nosuch.toml"},
        2,
        ["nosuch.toml (from SMSGATE_CONFIG) does not exist"],
    ),
    (
        {},
        ("send", "+15555550100", "hi", "--queue"),
        {"SMSGATE_CONFIG": "nosuch.toml"},
        2,
        ["(from SMSGATE_CONFIG)"],
    ),
    ({}, ("send", "+15555550100", "hi", "--queue"), {}, 2, ["no provider is configured"]),
    (
        {"people.csv": "phone\n+15555550100\n"},
        ("bulk", "people.csv", "--body", "Hi"),
        {},
        2,
        ["no provider is configured", "[providers.NAME]"],
    ),
    (
        {},
        ("messages", "--store", "sqlite:///typo.db"),
        {},
        2,
        ["store typo.db does not exist", "smsgate db upgrade"],
    ),
    ({}, ("status", "msg_x", "--store", "sqlite:///typo.db"), {}, 2, ["does not exist"]),
    ({}, ("db", "version", "--store", "sqlite:///typo.db"), {}, 2, ["does not exist"]),
    (
        {"people.csv": "phone\n+15555550100\n"},
        ("bulk", "people.csv", "--body", "Hi", "--send-at", "2030-01-01T09:00"),
        {},
        2,
        ["send_at"],
    ),
    ({}, ("segments",), {}, 2, ["Missing argument", "(see smsgate segments --help)"]),
    ({}, ("no-such-command",), {}, 2, ["No such command", "(see smsgate --help)"]),
]


@pytest.mark.parametrize(
    ("files", "args", "env", "code", "words"),
    BAD_INPUTS,
    ids=[" ".join(str(a) for a in row[1])[:60] for row in BAD_INPUTS],
)
def test_bad_input_exits_with_one_clear_line(
    tmp_path: Path,
    files: dict[str, str],
    args: tuple[str | bytes, ...],
    env: dict[str, str],
    code: int,
    words: list[str],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    before = set(os.listdir(tmp_path))
    result = run(tmp_path, *args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    line = error_line(result)
    assert line.startswith("smsgate: "), line
    for word in words:
        assert word in line, line
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    # nothing was created: no store for a command that failed or only reads
    assert set(os.listdir(tmp_path)) == before


def test_text_from_standard_input_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SMSGATE, "segments", "-"], input=b"caf\xed\xa0\x80", capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr and b"not valid UTF-8" in result.stderr


def test_python_advice_is_turned_into_cli_advice(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("phone\n+15555550100\n", encoding="utf-8")
    result = run(tmp_path, "bulk", "people.csv", "--body", "Hi", "--send-at", "2030-01-01T09:00")
    line = error_line(result)
    assert "datetime" not in line and "timezone.utc" not in line, line


def test_under_json_errors_are_one_json_object_on_stderr(tmp_path: Path) -> None:
    for args in (
        ("messages", "--store", "sqlite:///typo.db", "--json"),
        ("normalize", "call me", "--json"),
        ("config", "check", "--json", "--bogus"),
    ):
        result = run(tmp_path, *args)
        assert result.returncode == 2
        assert result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert error["exit_code"] == 2 and error["message"]


def test_help_documents_the_exit_codes_and_the_shared_options(tmp_path: Path) -> None:
    top = run(tmp_path, "--help")
    assert top.returncode == 0
    assert "Exit status: 0" in top.stdout and "1 when some work failed" in top.stdout
    assert "2 for bad input or usage" in top.stdout
    reads_config = [
        ("send",),
        ("bulk",),
        ("status",),
        ("messages",),
        ("cancel",),
        ("worker",),
        ("serve",),
        ("config", "check"),
        ("db", "upgrade"),
        ("db", "version"),
        ("keys", "create"),
        ("keys", "list"),
    ]
    for command in reads_config:
        text = run(tmp_path, *command, "--help").stdout
        assert "-c, --config" in text, command
        assert "--store" in text or command == ("config", "check"), command
    for command in [("send",), ("bulk",), ("status",), ("messages",), ("normalize",)]:
        assert "--json" in run(tmp_path, *command, "--help").stdout, command
    for command in [("send",), ("worker",), ("serve",)]:
        assert "-v, --verbose" in run(tmp_path, *command, "--help").stdout, command


def test_version_flags_and_python_m(tmp_path: Path) -> None:
    short = run(tmp_path, "-V")
    assert short.returncode == 0 and short.stdout.startswith("smsgate ")
    module = subprocess.run(
        [sys.executable, "-m", "smsgate", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert module.returncode == 0 and module.stdout == short.stdout


def test_shell_completion_can_be_shown(tmp_path: Path) -> None:
    # typer names the shell from the process tree, so the command runs with bash as its parent
    # (the trailing `exit` keeps bash from exec-ing it away) whatever started pytest
    result = subprocess.run(
        ["bash", "-c", '"$@"; exit $?', "bash", *SMSGATE, "--show-completion"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "_SMSGATE_COMPLETE" in result.stdout
    # and the script's callback completes commands
    words = run(
        tmp_path,
        env={
            "_SMSGATE_COMPLETE": "complete_bash",
            "COMP_WORDS": "smsgate config ",
            "COMP_CWORD": "2",
        },
    )
    assert words.returncode == 0, words.stderr
    assert words.stdout.split() == ["check", "schema"]


def test_normalize_accepts_what_send_accepts(tmp_path: Path) -> None:
    result = run(tmp_path, "normalize", "(555) 555-0100", "--region", "US")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "+15555550100"


def test_the_config_file_used_is_named(tmp_path: Path) -> None:
    (tmp_path / "smsgate.toml").write_text('store = "sqlite:///here.db"\n', encoding="utf-8")
    local = run(tmp_path, "config", "check")
    assert local.returncode == 0, local.stderr
    assert local.stdout.startswith("config: smsgate.toml (from ./smsgate.toml)\n")
    other = tmp_path / "other.toml"
    other.write_text('store = "sqlite:///other.db"\n', encoding="utf-8")
    by_env = run(tmp_path, "config", "check", env={"SMSGATE_CONFIG": str(other)})
    assert f"config: {other} (from SMSGATE_CONFIG)" in by_env.stdout
    assert "store: sqlite:///other.db" in by_env.stdout
    by_flag = run(tmp_path, "config", "check", "-c", str(other))
    assert f"config: {other} (from --config)" in by_flag.stdout
    # commands that read a config say which one on stderr
    upgrade = run(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "config: smsgate.toml (from ./smsgate.toml)" in upgrade.stderr
    assert (tmp_path / "here.db").exists()


def test_config_schema_is_json_schema_for_editors(tmp_path: Path) -> None:
    result = run(tmp_path, "config", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert {"store", "providers", "routes", "server", "worker"} <= set(schema["properties"])
    server = schema["$defs"]["ServerSection"]
    assert server["properties"]["port"]["maximum"] == 65535
    assert server["additionalProperties"] is False


@pytest.mark.slow
def test_the_demo_prints_whole_ids_and_a_hint_that_works_as_printed(tmp_path: Path) -> None:
    import re
    import shlex
    import shutil

    demo = run(tmp_path, "demo", "--keep", env={"COLUMNS": ""})
    assert demo.returncode == 0, demo.stderr
    # piped, not a terminal: nothing is cut at 80 columns
    ids = re.findall(r"\bmsg_[0-9A-Z]{26}\b", demo.stdout)
    assert len(set(ids)) == 8, demo.stdout
    assert "…" not in demo.stdout
    hint = demo.stdout.strip().splitlines()[-1]
    assert "smsgate status msg_" in hint, hint
    command = shlex.split(hint.split("see one: ", 1)[1])
    assert command[0] == "smsgate"
    try:
        status = run(tmp_path, *command[1:])
        assert status.returncode == 0, status.stderr
        assert command[2] in status.stdout and "delivered" in status.stdout
    finally:
        store = command[command.index("--store") + 1].removeprefix("sqlite:///")
        shutil.rmtree(Path(store).parent, ignore_errors=True)
