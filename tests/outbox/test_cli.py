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


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


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
    summary = one_json(run("bulk", str(source), "--body", "Hi {name}", "--store", url, "--json"))
    assert (summary["total"], summary["accepted"], summary["rejected"]) == (502, 500, 2)
    rejects = list(csv.reader((tmp_path / "people.rejects.csv").open(encoding="utf-8")))
    assert rejects[0] == ["phone", "name", "line", "field", "error"]
    assert [(r[2], r[3]) for r in rejects[1:]] == [("502", "to"), ("503", "body")]
    # the same file again stores nothing twice
    again = one_json(run("bulk", str(source), "--body", "Hi {name}", "--store", url, "--json"))
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
