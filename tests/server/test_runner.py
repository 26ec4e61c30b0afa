"""Running the server: ``smsgate serve`` and ``smsgate keys`` as a user runs them, and
``serving()`` in an event loop (how ``smsgate demo`` starts it)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from fastapi import FastAPI

from smsgate.config import Config
from smsgate.emulators.base import Callbacks
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.message import Message, Status
from smsgate.outbox import Outbox
from smsgate.server.app import create_app
from smsgate.server.runner import serving
from smsgate.server.settings import ServerSettings

SMSGATE = [str(Path(sys.executable).with_name("smsgate"))]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*SMSGATE, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    made = run(
        "keys",
        "create",
        "billing",
        "--store",
        store,
        "--purpose",
        "otp",
        "--rate",
        "10/s",
        "--quota",
        "1000/d",
        "--json",
    )
    key = json.loads(made.stdout)
    assert key["key"].startswith("sgk_") and key["purposes"] == ["otp"]
    listed = json.loads(run("keys", "list", "--store", store, "--json").stdout)
    assert [(k["id"], k["revoked"]) for k in listed] == [(key["id"], False)]
    assert key["key"] not in run("keys", "list", "--store", store).stdout
    run("keys", "revoke", key["id"], "--store", store)
    assert json.loads(run("keys", "list", "--store", store, "--json").stdout)[0]["revoked"]
    again = run("keys", "revoke", key["id"], "--store", store, check=False)
    assert again.returncode == 1 and "no active key" in again.stderr
    bad = run("keys", "create", "x", "--store", store, "--rate", "often", check=False)
    assert bad.returncode == 2 and "rate" in bad.stderr and "Traceback" not in bad.stderr


def test_serve_sends_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    with TwilioEmulator(callbacks=Callbacks(delay=0.05)).run_in_thread() as twilio:
        config = tmp_path / "smsgate.toml"
        config.write_text(
            f'store = "sqlite:///{tmp_path / "s.db"}"\n\n'
            f'[providers.twilio]\nurl = "{twilio.emulator.provider_url()}"\n'
        )
        key = run("keys", "create", "app", "--config", str(config)).stdout.strip()
        proc = subprocess.Popen(
            [*SMSGATE, "serve", "--config", str(config), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("smsgate serving http://127.0.0.1:"), first
            url = first.split()[2]
            assert "with a worker" in first
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            ids = [
                session.post(
                    f"{url}/v1/messages",
                    timeout=10,
                    json={"to": "+15555550100", "body": f"hello {n}"},
                ).json()["id"]
                for n in range(20)
            ]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = {
                    session.get(f"{url}/v1/messages/{m}", timeout=10).json()["status"] for m in ids
                }
                if states == {"delivered"}:
                    break
                time.sleep(0.1)
            assert states == {"delivered"}  # sent by the worker, receipts by signed webhook
            ids += [
                session.post(
                    f"{url}/v1/messages",
                    timeout=10,
                    json={"to": "+15555550101", "body": f"late {n}"},
                ).json()["id"]
                for n in range(50)
            ]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            output = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "Traceback" not in output and key not in output
        with Outbox(f"sqlite:///{tmp_path / 's.db'}") as outbox:
            statuses = {outbox.status(m).status for m in ids}
        # nothing was left mid-send: every message is queued again or went out
        assert statuses <= {Status.QUEUED, Status.SENT, Status.DELIVERED}


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "smsgate.toml"
    config.write_text('[server]\nport = "eighty"\n')
    done = run("serve", "--config", str(config), check=False)
    assert done.returncode == 2 and "server.port" in done.stderr


def test_serving_in_an_event_loop_is_what_the_demo_runs(tmp_path: Path) -> None:
    async def scenario() -> list[Status]:
        emulator = TwilioEmulator(callbacks=Callbacks(delay=0.05))
        async with emulator.serving():
            config = Config.from_dict(
                {
                    "store": f"sqlite:///{tmp_path / 'demo.db'}",
                    "providers": {"twilio": {"url": emulator.provider_url()}},
                    "worker": {"concurrency": 4},
                }
            )
            with Outbox(config.store, migrate=True) as outbox:

                def make(url: str) -> FastAPI:
                    settings = ServerSettings.from_config(config).with_overrides(public_url=url)
                    return create_app(config, settings=settings, outbox=outbox)

                async with serving(make) as served:
                    assert served.url.startswith("http://127.0.0.1:")
                    ids = [
                        outbox.submit(Message(to="+15555550100", body=f"demo {n}"))
                        for n in range(3)
                    ]
                    for _ in range(200):
                        statuses = [(await outbox.astatus(m)).status for m in ids]
                        if set(statuses) == {Status.DELIVERED}:
                            break
                        await asyncio.sleep(0.05)
                return statuses

    assert asyncio.run(scenario()) == [Status.DELIVERED] * 3
