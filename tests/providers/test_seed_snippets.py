"""The seeds' own code, run unchanged but for the host, against the emulators as a user starts them.

Each emulator runs as ``smsgate emulate NAME`` with no flags, in its own process; the snippets are
the seed articles' text (seeds 002 and 003) with only the API host replaced, and the environment
variables they read set to the emulators' documented default credentials.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from smsgate.emulators.smspm import SmspmEmulator
from smsgate.emulators.smsroute import SmsrouteEmulator

SMSPM_HOST = "https://api.smspm.com"
SMSROUTE_HOST = "https://api.smsroute.cc"

# Seed 002, "Basic Send", verbatim (the article's copy lost its indentation; it is restored).
SEED_002_SEND = '''
import os
import requests
def send_sms(to_number: str, text: str, from_number: str = "SMSPM") -> dict:
    """
    Send an SMS via SMSPM API.
    Args:
        to_number: Recipient in E.164 format (+37256789045)
        text: Message body (max 160 chars for single GSM-7 part)
        from_number: Alphanumeric sender ID or numeric shortcode
    Returns:
        API response dict with 'status' and 'messageId'
    Raises:
        requests.HTTPError: On non-200 response
        ValueError: On API-level error (status != 'success')
    """
    response = requests.get(
        "https://api.smspm.com",
        params={
            "hash": os.environ["SMSPM_HASH"],
            "token": os.environ["SMSPM_TOKEN"],
            "toNumber": to_number,
            "fromNumber": from_number,
            "text": text,
        },
        timeout=10,
    )
    response.raise_for_status()
    data = response.json()
    if data.get("status") != "success":
        raise ValueError(f"SMS send failed: {data.get('message', 'unknown error')}")
    return data
# Usage
result = send_sms("+37256789045", "Hello from SMSPM! Your code is 847392.")
print(f"Message ID: {result['messageId']}")
'''

# Seed 002, "Sending Bulk SMS", verbatim, indentation restored (it calls send_sms from above).
SEED_002_BULK = """
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
def send_bulk(numbers: list[str], text: str, max_workers: int = 10) -> dict:
    results = {"sent": 0, "failed": 0, "errors": []}
    def _send(number):
        try:
            send_sms(number, text)
            return ("ok", number)
        except Exception as exc:
            return ("err", number, str(exc))
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(_send, n): n for n in numbers}
        for future in as_completed(futures):
            outcome = future.result()
            if outcome[0] == "ok":
                results["sent"] += 1
            else:
                results["failed"] += 1
                results["errors"].append({"number": outcome[1], "error": outcome[2]})
    return results
# Usage
stats = send_bulk(
    ["+37256789045", "+4915123456789", "+447700900123"],
    "Your order has been dispatched.",
)
print(f"Sent: {stats['sent']}, Failed: {stats['failed']}")
"""

# Seed 003, "The 30-second version", verbatim.
SEED_003_SEND = """
import os
import requests

response = requests.post(
    "https://api.smsroute.cc/v1/send",
    headers={
        "Authorization": f"Bearer {os.environ['SMSROUTE_API_KEY']}",
        "Content-Type": "application/json",
    },
    json={
        "to": "+15555550100",
        "from": "MyApp",
        "message": "Your verification code is 481902.",
    },
    timeout=10,
)
response.raise_for_status()
print(response.json())
"""

# Seed 003's later snippets use `requests`, `url` and `headers` from the article's context: the
# import, the endpoint and the headers of the 30-second version.
SEED_003_CONTEXT = """
import os
import requests
url = "https://api.smsroute.cc/v1/send"
headers = {
    "Authorization": f"Bearer {os.environ['SMSROUTE_API_KEY']}",
    "Content-Type": "application/json",
}
"""

# Seed 003, "2. The 429", verbatim.
SEED_003_BACKOFF = """
import time
import requests
from requests.exceptions import HTTPError

def send_with_backoff(payload, attempts=4):
    for i in range(attempts):
        r = requests.post(url, json=payload, headers=headers, timeout=10)
        if r.status_code == 429:
            wait = int(r.headers.get("Retry-After", 2 ** i))
            time.sleep(wait)
            continue
        r.raise_for_status()
        return r.json()
    raise HTTPError("rate limited after retries")
"""

# Seed 003, "Sending in bulk", verbatim (one expression).
SEED_003_BULK = """
requests.post(
    "https://api.smsroute.cc/v1/send/bulk",
    headers=headers,
    json={
        "from": "MyApp",
        "message": "Flash sale: 30% off for the next 4 hours.",
        "recipients": ["+15555550100", "+15555550101", "+447700900123"],
    },
    timeout=30,
)
"""

# Seed 003, "Verifying the number before you bill it", verbatim (one expression).
SEED_003_HLR = """
requests.get(
    "https://api.smsroute.cc/v1/hlr/+15555550100",
    headers=headers,
    timeout=10,
).json()
"""


def rehost(snippet: str, host: str, url: str) -> str:
    """The snippet with the API host pointed at the emulator, and nothing else changed."""
    assert host in snippet
    return snippet.replace(host, url)


class RunningEmulator:
    """``smsgate emulate NAME`` in a child process, with no flags."""

    def __init__(self, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from smsgate.cli import main; main()", "emulate", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("provider URL:"):
                break
        listening = [line for line in self.lines if " emulator listening on " in line]
        if not listening:
            self.stop()
            raise AssertionError(f"{name} emulator did not start: {self.lines}")
        self.url = listening[0].rsplit(" ", 1)[1]
        self.provider_url = next(
            line.split(": ", 1)[1] for line in self.lines if line.startswith("provider URL:")
        )

    def messages(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{self.url}/_emulator/messages", timeout=10).json()
        return answer

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture(scope="module")
def smspm() -> Iterator[RunningEmulator]:
    emulator = RunningEmulator("smspm")
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def smsroute() -> Iterator[RunningEmulator]:
    emulator = RunningEmulator("smsroute")
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulators' documented defaults (printed at start and in their docstrings).
    monkeypatch.setenv("SMSPM_HASH", "emulator-hash")
    monkeypatch.setenv("SMSPM_TOKEN", "emulator-token")
    monkeypatch.setenv("SMSROUTE_API_KEY", "emulator-api-key")
    assert SmspmEmulator.default_credentials == "emulator-hash:emulator-token"
    assert SmsrouteEmulator.default_credentials == "emulator-api-key"


def _reset(emulator: RunningEmulator) -> None:
    requests.post(f"{emulator.url}/_emulator/reset", timeout=10).raise_for_status()
    requests.post(
        f"{emulator.url}/_emulator/faults", json={"rate_limit_rate": 0}, timeout=10
    ).raise_for_status()


# -- seed 002: SMSPM ------------------------------------------------------------------------------


def test_emulators_print_how_to_point_a_client_at_them(
    smspm: RunningEmulator, smsroute: RunningEmulator
) -> None:
    assert smspm.provider_url == f"smspm://emulator-hash:emulator-token@SMSPM?base_url={smspm.url}"
    assert smsroute.provider_url.startswith(
        f"smsroute://emulator-api-key@MyApp?base_url={smsroute.url}&webhook_secret="
    )


def test_seed_002_send_sms(smspm: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    _reset(smspm)
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_002_SEND, SMSPM_HOST, smspm.url), namespace)
    printed = capsys.readouterr().out.strip()
    [message] = smspm.messages()["messages"]
    assert printed == f"Message ID: {message['id']}"
    assert namespace["result"] == {"status": "success", "messageId": message["id"]}
    assert message["to"] == "+37256789045" and message["sender"] == "SMSPM"
    assert message["body"] == "Hello from SMSPM! Your code is 847392."
    assert message["fields"]["method"] == "GET"


def test_seed_002_refusal_reaches_its_value_error(smspm: RunningEmulator) -> None:
    _reset(smspm)
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_002_SEND, SMSPM_HOST, smspm.url), namespace)
    # An API-level refusal comes back as HTTP 200 with status "error": the seed's second check.
    with pytest.raises(ValueError, match=r"SMS send failed: Invalid phone number: \+15005550001"):
        namespace["send_sms"]("+15005550001", "hello")


def test_seed_002_send_bulk(smspm: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_002_SEND, SMSPM_HOST, smspm.url), namespace)
    _reset(smspm)
    capsys.readouterr()
    exec(SEED_002_BULK, namespace)
    assert capsys.readouterr().out.strip() == "Sent: 3, Failed: 0"
    sent = sorted(m["to"] for m in smspm.messages()["messages"])
    assert sent == sorted(["+37256789045", "+4915123456789", "+447700900123"])


# -- seed 003: smsroute ---------------------------------------------------------------------------


def test_seed_003_send(smsroute: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    _reset(smsroute)
    exec(rehost(SEED_003_SEND, SMSROUTE_HOST, smsroute.url), {})
    printed = capsys.readouterr().out
    [message] = smsroute.messages()["messages"]
    assert f"'message_id': '{message['id']}'" in printed
    assert (message["to"], message["sender"]) == ("+15555550100", "MyApp")
    assert message["body"] == "Your verification code is 481902."


def test_seed_003_bulk(smsroute: RunningEmulator) -> None:
    _reset(smsroute)
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_003_CONTEXT, SMSROUTE_HOST, smsroute.url), namespace)
    response = eval(rehost(SEED_003_BULK, SMSROUTE_HOST, smsroute.url), namespace)
    assert response.status_code == 200
    answer = response.json()
    assert [r["to"] for r in answer["results"]] == ["+15555550100", "+15555550101", "+447700900123"]
    assert answer["accepted"] == 3 and answer["rejected"] == 0
    stored = smsroute.messages()["messages"]
    assert [m["id"] for m in stored] == [r["message_id"] for r in answer["results"]]
    assert {m["fields"]["batch_id"] for m in stored} == {answer["batch_id"]}


def test_seed_003_hlr(smsroute: RunningEmulator) -> None:
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_003_CONTEXT, SMSROUTE_HOST, smsroute.url), namespace)
    answer = eval(rehost(SEED_003_HLR, SMSROUTE_HOST, smsroute.url), namespace)
    assert answer["number"] == "+15555550100"
    assert (answer["status"], answer["live"], answer["reachable"]) == ("live", True, True)
    assert answer["network"]["name"] and answer["ported"] is False


def test_seed_003_backoff_honours_retry_after(
    smsroute: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reset(smsroute)
    namespace: dict[str, Any] = {}
    exec(rehost(SEED_003_CONTEXT, SMSROUTE_HOST, smsroute.url), namespace)
    exec(SEED_003_BACKOFF, namespace)
    payload = {"to": "+15555550100", "from": "MyApp", "message": "Your code is 481902"}
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the snippet's own sleeps, recorded
    requests.post(
        f"{smsroute.url}/_emulator/faults",
        json={"rate_limit_rate": 1, "retry_after": 3},
        timeout=10,
    ).raise_for_status()
    with pytest.raises(requests.HTTPError, match="rate limited after retries"):
        namespace["send_with_backoff"](payload)
    assert waits == [3, 3, 3, 3]
    assert smsroute.messages()["count"] == 0
    _reset(smsroute)
    answer = namespace["send_with_backoff"](payload)
    assert answer["message_id"] == smsroute.messages()["messages"][0]["id"]
    assert waits == [3, 3, 3, 3]
