"""``smsgate verify``: the console script as a real subprocess on a SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

from smsgate.clock import FakeClock
from smsgate.errors import SmsgateError
from smsgate.outbox import Outbox
from smsgate.verify import Verify, VerifySettings
from tests.cli.test_cli import assert_one_line_error, run
from tests.verify.conftest import last_code

SECRET = "cli-secret-" + "c" * 40


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "smsgate.toml"
    path.write_text(
        f'store = "sqlite:///{tmp_path / "s.db"}"\n\n[verify]\nsecret = "${{VERIFY_SECRET}}"\n'
        '\n[verify.pumping]\nmin_volume = 3\ngrace = "1m"\nwindow = "10m"\n'
    )
    return path


def test_start_check_blocks_unblock(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = {"VERIFY_SECRET": SECRET, "SMSGATE_CONFIG": str(config)}
    started = run("verify", "start", "+14155552671", "--json", env=env)
    assert started.returncode == 0, started.stderr
    answer = json.loads(started.stdout)
    assert answer["status"] == "pending" and answer["to"] == "+14155552671"

    with Outbox(f"sqlite:///{tmp_path / 's.db'}") as outbox:
        settings = VerifySettings.from_mapping(
            {"secret": SECRET, "pumping": {"min_volume": 3, "grace": "1m", "window": "10m"}}
        )
        code = last_code(Verify(outbox, settings), answer["id"])
        assert code not in started.stdout + started.stderr

        wrong = run("verify", "check", answer["id"], "000000" if code != "000000" else "1", env=env)
        assert wrong.returncode == 1 and "pending" in wrong.stdout
        right = run("verify", "check", answer["id"], f"{code[:3]} {code[3:]}", env=env)
        assert right.returncode == 0 and "approved" in right.stdout and "valid" in right.stdout
        status = run("verify", "status", answer["id"], "--json", env=env)
        assert json.loads(status.stdout)["status"] == "approved"

        # a bot on one prefix, on a fake clock at today's time, gets the prefix blocked
        clock = FakeClock(time.time())
        bot = Verify(outbox, settings, clock=clock)
        for n in range(20):
            try:
                bot.start(f"+234803{n:07d}")
            except SmsgateError:
                break
            clock.advance(30)
    listed = run("verify", "blocks", env=env)
    assert listed.returncode == 0 and listed.stdout.startswith("+234803  until ")
    as_json = json.loads(run("verify", "blocks", "--json", env=env).stdout)
    assert [b["prefix"] for b in as_json] == ["+234803"]
    refused = run("verify", "start", "+2348031234567", env=env)
    assert "prefix +234803 is blocked until" in assert_one_line_error(refused, 1)
    lifted = run("verify", "unblock", "+234803", env=env)
    assert lifted.returncode == 0 and lifted.stdout.strip() == "unblocked +234803"
    assert "no prefix is blocked" in run("verify", "blocks", env=env).stderr
    assert "not blocked" in assert_one_line_error(run("verify", "unblock", "+234803", env=env), 1)
    assert run("verify", "blocks", "--all", "--json", env=env).stdout.count("+234803") == 1


def test_errors_are_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = {"VERIFY_SECRET": SECRET, "SMSGATE_CONFIG": str(config)}
    assert "to" in assert_one_line_error(run("verify", "start", "12", env=env), 2)
    missing = run("verify", "check", "ver_01NOPE", "123456", env=env)
    assert "no verification" in assert_one_line_error(missing, 1)
    bare = tmp_path / "bare.toml"
    bare.write_text(f'store = "sqlite:///{tmp_path / "b.db"}"\n')
    unconfigured = run("verify", "start", "+14155552671", env={"SMSGATE_CONFIG": str(bare)})
    assert "verify.secret" in assert_one_line_error(unconfigured, 2)
