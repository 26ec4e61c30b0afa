"""The outbox commands as a real ``smsgate`` subprocess (no CliRunner, no mocks)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message, Status
from smsgate.outbox import SCHEMA_VERSION, Outbox
from smsgate.outbox.store import open_store
from smsgate.outbox.tables.server import ServerStore, Suppression
from tests.outbox.conftest import emulated, sqlite_url

SMSGATE = str(Path(sys.executable).parent / "smsgate")


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SMSGATE_CONFIG"}
    environment.update(env)
    return subprocess.run(
        [SMSGATE, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def one_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def summary_of(result: subprocess.CompletedProcess[str], code: int) -> Any:
    """The JSON summary of a run that exited with ``code``."""
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    # the line naming the config file used is not part of the error
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("config: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


#: a provider that is never called: commands that queue refuse a config without one
PROVIDER = '[providers.twilio]\nurl = "twilio://ACx:token@+15005550006"\n'


def queue_config(tmp_path: Path, url: str, extra: str = "") -> str:
    """A config file with ``url`` as the store and a provider, for commands that queue."""
    config = tmp_path / "smsgate.toml"
    config.write_text(f'store = "{url}"\n{extra}{PROVIDER}', encoding="utf-8")
    return str(config)


def test_db_upgrade_then_version(postgres_url: str) -> None:
    assert "needs" in one_line_error(run("status", "msg_x", "--store", postgres_url), 2)
    first = run("db", "upgrade", "--store", postgres_url)
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {SCHEMA_VERSION}" in first.stdout
    again = run("db", "upgrade", "--store", postgres_url)
    assert "nothing to do" in again.stdout
    version = run("db", "version", "--store", postgres_url)
    assert version.returncode == 0 and f"schema version {SCHEMA_VERSION}" in version.stdout


def test_an_old_store_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = open_store(url)
    store.migrate(target=1)
    store.close()
    error = one_line_error(run("messages", "--store", url), 2)
    assert "schema version 1" in error and "smsgate db upgrade" in error
    assert run("db", "version", "--store", url).returncode == 1
    assert run("db", "upgrade", "--store", url).returncode == 0
    assert run("messages", "--store", url).returncode == 0


def test_status_messages_and_cancel(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with Outbox(url) as outbox:
        kept = outbox.submit(Message(to="+15555550100", body="hello"))
        doomed = outbox.submit(Message(to="+15555550101", body="bye"))
    status = one_json(run("status", kept, "--store", url, "--json"))
    assert (status["status"], status["events"][0]["to"]) == ("queued", "queued")
    text = run("status", kept, "--store", url)
    assert kept in text.stdout and "submitted" in text.stdout
    assert one_json(run("cancel", doomed, "--store", url, "--json"))["status"] == "canceled"
    listed = one_json(run("messages", "--store", url, "--status", "canceled", "--json"))
    assert [item["id"] for item in listed["items"]] == [doomed]
    assert listed["counts"] == {"queued": 1, "canceled": 1}
    table = run("messages", "--store", url)
    assert kept in table.stdout and "canceled 1" in table.stdout
    assert "no message 'msg_nope'" in one_line_error(run("status", "msg_nope", "--store", url), 1)
    assert "status 'lost'" in one_line_error(run("messages", "--status", "lost", "--store", url), 2)


def test_bulk_streams_a_csv_and_writes_the_rejects(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    source = tmp_path / "people.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "name"])
        for n in range(500):
            writer.writerow([f"+1555555{n:04d}", f"Person {n}"])
        writer.writerow(["555-0100", "No Country"])
        writer.writerow(["+15555559999", "Long " + "x" * 1600])
    config = queue_config(tmp_path, url)
    summary = summary_of(run("bulk", str(source), "--body", "Hi {name}", "-c", config, "--json"), 1)
    assert (summary["total"], summary["accepted"], summary["rejected"]) == (502, 500, 2)
    rejects = list(csv.reader((tmp_path / "people.rejects.csv").open(encoding="utf-8")))
    assert rejects[0] == ["phone", "name", "line", "field", "error"]
    assert [(r[2], r[3]) for r in rejects[1:]] == [("502", "to"), ("503", "body")]
    # the same file again stores nothing twice
    again = summary_of(run("bulk", str(source), "--body", "Hi {name}", "-c", config, "--json"), 1)
    assert (again["accepted"], again["duplicates"]) == (0, 500)
    with Outbox(url) as outbox:
        assert outbox.counts() == {Status.QUEUED: 500}
        first = outbox.list(limit=1000).items[-1]
        assert first.body.startswith("Hi Person") and first.idempotency_key


def test_bulk_names_a_bad_template_or_column(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("phone,name\n+15555550100,Ann\n", encoding="utf-8")
    url = sqlite_url(tmp_path)
    error = one_line_error(run("bulk", str(source), "--body", "Hi {first}", "--store", url), 2)
    assert "{first}" in error and "columns: phone, name" in error
    error = one_line_error(
        run("bulk", str(source), "--body", "Hi", "--to-column", "mobile", "--store", url), 2
    )
    assert "--to-column" in error


def test_worker_sends_until_idle_and_send_queue_submits(
    tmp_path: Path, twilio: EmulatorThread
) -> None:
    url = sqlite_url(tmp_path)
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\n[providers.twilio]\nurl = "{emulated(twilio).provider_url()}"\n',
        encoding="utf-8",
    )
    queued = run(
        "send", "+15555550100", "from the queue", "--queue", "--config", str(config), "--json"
    )
    message_id = one_json(queued)["id"]
    result = run("worker", "--config", str(config), "--until-idle")
    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stderr
    status = one_json(run("status", message_id, "--config", str(config), "--json"))
    assert status["status"] == "sent"
    assert twilio.call(lambda: [m.body for m in emulated(twilio).messages]) == ["from the queue"]


def suppress(url: str, recipient: str, our_number: str = "*") -> None:
    """Put ``recipient`` on the store's suppression list, as a STOP would."""
    with Outbox(url, migrate=True) as outbox:
        assert ServerStore.of(outbox.store).add_suppression(
            Suppression(recipient, our_number, "keyword", "STOP", None, 1.0)
        )


def test_send_queue_refuses_an_opted_out_recipient(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\n[otp]\nhonor_opt_outs = false\n{PROVIDER}', encoding="utf-8"
    )
    suppress(url, "+15555550100", our_number="+15005550006")
    send = ("send", "+1 555 555 0100", "hello", "--sender", "+15005550006", "--queue")
    error = one_line_error(run(*send, "--config", str(config)), 2)
    assert "'+15555550100': opted out of messages from +15005550006" in error
    # another sender of ours is not covered by that STOP; otp is let through, as configured
    assert one_json(
        run(*send[:3], "--sender", "+15005550007", "--queue", "--config", str(config), "--json")
    )
    otp = one_json(run(*send, "--purpose", "otp", "--config", str(config), "--json"))
    with Outbox(url) as outbox:
        stored = outbox.list().items
        assert sorted((m.sender, m.purpose) for m in stored) == [
            ("+15005550006", "otp"),
            ("+15005550007", "transactional"),
        ]
        assert otp["id"] in {m.id for m in stored}
    # without the setting, otp is refused like the rest
    config.write_text(f'store = "{url}"\n{PROVIDER}', encoding="utf-8")
    assert "opted out" in one_line_error(run(*send, "--purpose", "otp", "--config", str(config)), 2)


def test_bulk_refuses_opted_out_recipients_into_the_rejects(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    suppress(url, "+15555550003")  # STOPALL: every number of ours
    suppress(url, "+15555550004", our_number="Acme")
    suppress(url, "+15555550005", our_number="Other")
    source = tmp_path / "people.csv"
    source.write_text(
        "phone,name\n" + "".join(f"+1555555000{n},Person {n}\n" for n in range(1, 7)),
        encoding="utf-8",
    )
    summary = summary_of(
        run(
            "bulk",
            str(source),
            "--body",
            "Hi {name}",
            "--sender",
            "Acme",
            "-c",
            queue_config(tmp_path, url),
            "--json",
        ),
        1,
    )
    assert (summary["total"], summary["accepted"], summary["rejected"]) == (6, 4, 2)
    assert summary["reasons"] == {
        "to: opted out of messages from Acme (replied STOP)": 2,
    }
    rejects = list(csv.reader((tmp_path / "people.rejects.csv").open(encoding="utf-8")))
    assert [(r[0], r[1], r[2], r[3]) for r in rejects[1:]] == [
        ("+15555550003", "Person 3", "4", "to"),
        ("+15555550004", "Person 4", "5", "to"),
    ]
    with Outbox(url) as outbox:
        assert sorted(m.to for m in outbox.list().items) == [
            "+15555550001",
            "+15555550002",
            "+15555550005",
            "+15555550006",
        ]


def test_worker_asks_for_receipts_at_the_public_url(tmp_path: Path, twilio: EmulatorThread) -> None:
    url = sqlite_url(tmp_path)
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\npublic_url = "http://127.0.0.1:9/gateway/"\n'
        f'[providers.twilio]\nurl = "{emulated(twilio).provider_url()}"\n',
        encoding="utf-8",
    )
    with Outbox(url) as outbox:
        message_id = outbox.submit(Message(to="+15555550100", body="with a receipt"))
    result = run("worker", "--config", str(config), "--until-idle")
    assert result.returncode == 0, result.stderr
    (callback,) = twilio.call(lambda: [m.callback_url for m in emulated(twilio).messages])
    assert callback == (
        f"http://127.0.0.1:9/gateway/webhooks/twilio/status?smsgate_id={message_id}"
    )


def test_worker_leaves_receipts_off_as_the_server_table_says(
    tmp_path: Path, twilio: EmulatorThread
) -> None:
    url = sqlite_url(tmp_path)
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\npublic_url = "http://127.0.0.1:9/gateway/"\n'
        f'[providers.twilio]\nurl = "{emulated(twilio).provider_url()}"\n'
        "[server]\nrequest_receipts = false\n",
        encoding="utf-8",
    )
    with Outbox(url, migrate=True) as outbox:
        message_id = outbox.submit(Message(to="+15555550100", body="no receipt asked for"))
    result = run("worker", "--config", str(config), "--until-idle")
    assert result.returncode == 0, result.stderr
    assert twilio.call(lambda: [m.callback_url for m in emulated(twilio).messages]) == [None]
    with Outbox(url) as outbox:
        assert outbox.status(message_id).status is Status.SENT
    # a wrong value stops the worker with the key named, as it stops smsgate serve
    config.write_text(
        config.read_text(encoding="utf-8").replace("= false", '= "no"'), encoding="utf-8"
    )
    error = one_line_error(run("worker", "--config", str(config), "--until-idle"), 2)
    assert "server.request_receipts: expected true or false" in error


def test_worker_runs_without_the_server_package(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\n[providers.twilio]\n'
        'url = "twilio://AC00000000000000000000000000000000:token@+15005550006"\n',
        encoding="utf-8",
    )
    Outbox(url, migrate=True).close()
    script = (
        "import sys\n"
        "from smsgate.cli import app\n"
        "try:\n"
        f"    app(['worker', '--config', {str(config)!r}, '--until-idle'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('smsgate.server')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_worker_without_providers_says_what_to_add(tmp_path: Path) -> None:
    config = tmp_path / "smsgate.toml"
    config.write_text(f'store = "{sqlite_url(tmp_path)}"\n', encoding="utf-8")
    assert "[providers.NAME]" in one_line_error(run("worker", "--config", str(config)), 2)


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_exits_by_itself() -> None:
    summary = one_json(run("demo", "--json", timeout=60))
    assert summary["ok"] is True
    assert summary["counts"] == {"delivered": 6, "failed": 2}
    assert summary["elapsed"] < 30
    statuses = {m["to"]: m["status"] for m in summary["messages"]}
    assert statuses["+15005550001"] == "failed" and statuses["+15005550004"] == "failed"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_poison_from_the_command_line_is_refused_and_reads_still_work(
    tmp_path: Path, engine: str, twilio: EmulatorThread, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path) if engine == "sqlite" else request.getfixturevalue("postgres_url")
    config = tmp_path / "smsgate.toml"
    config.write_text(
        f'store = "{url}"\n[providers.twilio]\nurl = "{emulated(twilio).provider_url()}"\n',
        encoding="utf-8",
    )
    assert run("db", "upgrade", "--store", url).returncode == 0
    # undecodable bytes in argv reach Python as lone surrogates (surrogateescape)
    undecodable = os.fsdecode(b"a\xff\xfeb")
    refused = run("send", "+15555550100", undecodable, "--queue", "--config", str(config))
    assert "lone surrogate" in one_line_error(refused, 2)
    kept = one_json(
        run("send", "+15555550100", "fine", "--queue", "--config", str(config), "--json")
    )
    assert "no message" in one_line_error(run("status", "msg_\x01x", "--config", str(config)), 1)
    listed = one_json(run("messages", "--config", str(config), "--json"))
    assert [item["id"] for item in listed["items"]] == [kept["id"]]
    assert run("worker", "--config", str(config), "--until-idle").returncode == 0
    assert (
        one_json(run("status", kept["id"], "--config", str(config), "--json"))["status"] == "sent"
    )


@pytest.mark.parametrize("parallel", ["--parallel", "--no-parallel"])
def test_bulk_goes_on_past_lines_that_are_not_csv(tmp_path: Path, parallel: str) -> None:
    url = sqlite_url(tmp_path)
    source = tmp_path / "people.csv"
    with source.open("wb") as handle:
        handle.write(b"phone,name\n")
        for n in range(300):
            handle.write(f"+1555555{n:04d},Person {n}\n".encode())
        handle.write(b'+15555550900,"' + b"x" * 140_000 + b'"\n')  # over the csv field limit
        handle.write(b"+15555550901,after the long field\n")
        handle.write(b'+15555550902,"never closed\n')  # swallows the lines after it
        handle.write(b"+15555550903,swallowed then read again\n")
        handle.write(b"+15555550904,Caf\xe9 in Latin-1\n")  # undecodable, the last line
    config = queue_config(tmp_path, url)
    result = run("bulk", str(source), "--body", "Hi {name}", "-c", config, parallel, "--json")
    summary = summary_of(result, 1)
    assert (summary["total"], summary["accepted"], summary["rejected"]) == (305, 302, 3)
    rejects = list(csv.reader((tmp_path / "people.rejects.csv").open(encoding="utf-8")))
    by_line = {row[-3]: row for row in rejects[1:]}
    assert set(by_line) == {"302", "304", "306"}
    assert "field larger than field limit" in by_line["302"][-1]
    assert "never closed" in by_line["304"][-1]
    assert "0xe9" in by_line["306"][-1] and "'name'" in by_line["306"][-1]
    assert by_line["306"][1] == "Caf\ufffd in Latin-1"
    with Outbox(url) as outbox:
        bodies = {m.body for m in outbox.list(limit=1000).items}
    assert {"Hi after the long field", "Hi swallowed then read again"} <= bodies
    assert len(bodies) == 302


def test_bulk_exit_codes(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    source = tmp_path / "people.csv"
    source.write_text("phone,name\n+15555550100,Ann\n+15555550101,Bob\n", encoding="utf-8")
    assert (
        summary_of(
            run(
                "bulk",
                str(source),
                "--body",
                "Hi {name}",
                "-c",
                queue_config(tmp_path, url),
                "--json",
            ),
            0,
        )["accepted"]
        == 2
    )
    # the same file again: every row already stored, nothing refused
    assert (
        summary_of(
            run(
                "bulk",
                str(source),
                "--body",
                "Hi {name}",
                "-c",
                queue_config(tmp_path, url),
                "--json",
            ),
            0,
        )["duplicates"]
        == 2
    )
    # nothing could run: refused up front, no rows read, no rejects file
    error = one_line_error(run("bulk", str(source), "--body", "", "--store", url), 2)
    assert "body template is empty" in error
    assert not (tmp_path / "people.rejects.csv").exists()
    assert "no such file" in one_line_error(
        run("bulk", "nope.csv", "--body", "x", "--store", url), 2
    )
