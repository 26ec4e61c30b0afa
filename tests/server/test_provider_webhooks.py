"""Provider webhooks at /webhooks/{provider}/...: verified, stored once, forward only.

Twilio callbacks here are signed with the official twilio SDK's validator (an implementation
independent of smsgate's); Telnyx ones by the Telnyx emulator's Ed25519 key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest
import requests
from tests.server.conftest import Running, ServerFactory
from twilio.request_validator import RequestValidator

from smsgate.clock import FakeClock
from smsgate.emulators.base import Callbacks, EmulatorThread
from smsgate.emulators.telnyx import TelnyxEmulator
from smsgate.emulators.twilio import TwilioEmulator

TOKEN = TwilioEmulator.default_credentials.partition(":")[2]
SID = TwilioEmulator.default_credentials.partition(":")[0]
TWILIO_URL = f"twilio://{TwilioEmulator.default_credentials}@+15005550006"


@pytest.fixture(params=[True, False], ids=["fast", "routed"])
def gateway(
    request: pytest.FixtureRequest, server_factory: ServerFactory, store_url: str
) -> Running:
    """With status webhooks answered by the fast path (``FastReceipts``) and by the routes."""
    return server_factory(
        store_url,
        config={"providers": {"twilio": {"url": TWILIO_URL}}},
        server={"fast_submit": request.param},
    )


def queued(gateway: Running, body: str = "hi") -> str:
    response = gateway.post("/v1/messages", json={"to": "+15555550100", "body": body})
    assert response.status_code == 201
    message_id: str = response.json()["id"]
    return message_id


def callback(
    gateway: Running,
    message_id: str,
    status: str,
    *,
    token: str | None = None,
    provider: str = "twilio",
    tamper: dict[str, str] | None = None,
    signing_token: str = TOKEN,
    extra: dict[str, str] | None = None,
) -> requests.Response:
    """A Twilio status callback as Twilio sends it, for the message with our id."""
    url = f"{gateway.url}/webhooks/{provider}/status?" + urlencode({"smsgate_id": message_id})
    fields = {
        "MessageSid": "SM" + message_id[-20:].lower(),
        "MessageStatus": status,
        "AccountSid": SID,
        "To": "+15555550100",
        "From": "+15005550006",
        **(extra or {}),
    }
    signature = RequestValidator(signing_token).compute_signature(url, fields)
    headers = {
        "X-Twilio-Signature": signature,
        "I-Twilio-Idempotency-Token": token or f"{message_id}-{status}",
    }
    return requests.post(url, data={**fields, **(tamper or {})}, headers=headers, timeout=10)


def history(gateway: Running, message_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (None if e.from_status is None else e.from_status.value, e.to_status.value, e.source)
        for e in gateway.outbox.status(message_id).events
    ]


def test_a_signed_receipt_moves_the_message(gateway: Running) -> None:
    mid = queued(gateway)
    response = callback(gateway, mid, "delivered")
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "stored": 1}
    assert gateway.outbox.status(mid).status.value == "delivered"
    assert history(gateway, mid)[-1] == ("queued", "delivered", "webhook:twilio")


def test_tampered_and_unsigned_receipts_get_403_and_store_nothing(gateway: Running) -> None:
    mid = queued(gateway)
    before = history(gateway, mid)
    tampered = callback(gateway, mid, "delivered", tamper={"MessageStatus": "failed"})
    assert tampered.status_code == 403 and tampered.json()["error"] == "webhook_verification"
    wrong_key = callback(gateway, mid, "delivered", signing_token="not-the-token")
    assert wrong_key.status_code == 403
    genuine = callback(gateway, mid, "delivered")
    assert genuine.status_code == 200
    unsigned = requests.post(
        f"{gateway.url}/webhooks/twilio/status?smsgate_id={mid}",
        data={"MessageSid": "SM1", "MessageStatus": "failed"},
        timeout=10,
    )
    assert unsigned.status_code == 403
    assert history(gateway, mid) == [*before, ("queued", "delivered", "webhook:twilio")]


def test_wrong_provider_paths_are_404(gateway: Running) -> None:
    mid = queued(gateway)
    assert callback(gateway, mid, "delivered", provider="vonage").status_code == 404
    assert callback(gateway, mid, "delivered", provider="Twilio").status_code == 404
    nowhere = requests.post(f"{gateway.url}/webhooks/twilio/elsewhere", data={}, timeout=10)
    assert nowhere.status_code == 404
    assert gateway.outbox.status(mid).status.value == "queued"


def test_a_replayed_receipt_is_stored_once(gateway: Running) -> None:
    mid = queued(gateway)
    first = callback(gateway, mid, "delivered", token="tok-1")
    replay = callback(gateway, mid, "delivered", token="tok-1")
    # A provider retrying a receipt it thinks was lost must not be told to keep retrying:
    # the answer is 200, and nothing new is stored.
    assert (first.json()["stored"], replay.status_code, replay.json()["stored"]) == (1, 200, 0)
    assert history(gateway, mid).count(("queued", "delivered", "webhook:twilio")) == 1


def test_a_receipt_replayed_with_a_new_unsigned_token_is_stored_once(gateway: Running) -> None:
    # I-Twilio-Idempotency-Token is not signed: anyone can change it, so it cannot make a
    # replayed receipt a new event. Only the signed parameters identify it.
    mid = queued(gateway)
    first = callback(gateway, mid, "delivered", token="tok-1")
    replay = callback(gateway, mid, "delivered", token="tok-2-forged")
    assert (first.json()["stored"], replay.status_code, replay.json()["stored"]) == (1, 200, 0)
    assert history(gateway, mid).count(("queued", "delivered", "webhook:twilio")) == 1
    # A different signed status is a different event.
    assert callback(gateway, mid, "sent", token="tok-1").json()["stored"] == 1


def test_a_late_sent_never_overwrites_delivered(gateway: Running) -> None:
    mid = queued(gateway)
    callback(gateway, mid, "delivered")
    late = callback(gateway, mid, "sent")
    assert late.status_code == 200
    assert gateway.outbox.status(mid).status.value == "delivered"
    assert ("delivered", "delivered", "webhook:twilio") in history(gateway, mid)


def test_an_opt_out_the_provider_reports_suppresses_the_recipient(gateway: Running) -> None:
    mid = queued(gateway)
    response = callback(gateway, mid, "undelivered", extra={"ErrorCode": "21610"})
    assert response.status_code == 200
    (item,) = gateway.get("/v1/suppressions").json()["items"]
    assert (item["recipient"], item["our_number"], item["source"]) == (
        "+15555550100",
        "+15005550006",
        "provider",
    )  # the provider's own number: the message named none
    refused = gateway.post("/v1/messages", json={"to": "+15555550100", "body": "again"})
    assert refused.status_code == 422 and refused.json()["error"] == "opted_out"
    assert callback(gateway, mid, "undelivered", extra={"ErrorCode": "21610"}).json() == {
        "received": 1,
        "stored": 0,
    }


@pytest.mark.parametrize(
    "body",
    [b"", b"\xff\xfe\x00garbage", b"MessageSid=SM1", b"%%%", json.dumps({"a": 1}).encode()],
)
def test_malformed_bodies_get_4xx_and_store_nothing(gateway: Running, body: bytes) -> None:
    mid = queued(gateway)
    url = f"{gateway.url}/webhooks/twilio/status?smsgate_id={mid}"
    try:
        fields = dict(p.split("=", 1) for p in body.decode().split("&") if "=" in p)
    except UnicodeDecodeError:
        fields = {}
    signature = RequestValidator(TOKEN).compute_signature(url, fields)
    response = requests.post(
        url,
        data=body,
        timeout=10,
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert history(gateway, mid) == [(None, "queued", "submit")]


def test_oversized_webhook_bodies_are_refused(gateway: Running) -> None:
    response = requests.post(
        f"{gateway.url}/webhooks/twilio/status", data=b"x" * (2 << 20), timeout=30
    )
    assert response.status_code == 413


def test_signatures_are_checked_against_the_public_url(
    server_factory: ServerFactory, sqlite_url: str
) -> None:
    """Behind a proxy Twilio signs the public URL, not the one the server sees."""
    public = "https://sms.example.com"
    gateway = server_factory(
        sqlite_url, config={"public_url": public, "providers": {"twilio": {"url": TWILIO_URL}}}
    )
    mid = queued(gateway)
    path = "/webhooks/twilio/status?" + urlencode({"smsgate_id": mid})
    fields = {"MessageSid": "SM9", "MessageStatus": "delivered"}
    signature = RequestValidator(TOKEN).compute_signature(public + path, fields)
    response = requests.post(
        gateway.url + path, data=fields, timeout=10, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200, response.text
    assert gateway.outbox.status(mid).status.value == "delivered"
    assert gateway.services.providers["twilio"].status_callback == (
        f"{public}/webhooks/twilio/status"
    )


# -- a provider with signed timestamps: replays outside the window are refused ------------------


@pytest.fixture
def telnyx() -> Iterator[EmulatorThread]:
    running = TelnyxEmulator().run_in_thread()
    yield running
    running.stop()


def test_stale_timestamps_are_refused_as_replays(
    server_factory: ServerFactory, sqlite_url: str, telnyx: EmulatorThread
) -> None:
    clock = FakeClock(start=time.time())
    gateway = server_factory(
        sqlite_url,
        clock=clock,
        config={"providers": {"telnyx": {"url": telnyx.emulator.provider_url()}}},
    )
    emulator = telnyx.emulator
    assert isinstance(emulator, TelnyxEmulator)
    body = json.dumps(
        {
            "data": {
                "event_type": "message.received",
                "id": "ev-1",
                "occurred_at": "2024-05-01T00:00:00Z",
                "payload": {
                    "id": "in-1",
                    "from": {"phone_number": "+15555550123"},
                    "to": [{"phone_number": "+14155550100"}],
                    "text": "hello",
                    "media": [],
                },
            }
        }
    ).encode()
    url = f"{gateway.url}/webhooks/telnyx/inbound"
    headers = {**emulator.sign(body, timestamp=clock.time()), "Content-Type": "application/json"}
    assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
    clock.advance(600)  # the same request, ten minutes later
    replay = requests.post(url, data=body, headers=headers, timeout=10)
    assert replay.status_code == 403 and "replay" in replay.json()["message"]
    assert len(gateway.get("/v1/inbound").json()["items"]) == 1
    junk = b'{"data": {"event_type": "message.received"}}'
    signed = {**emulator.sign(junk, timestamp=clock.time()), "Content-Type": "application/json"}
    malformed = requests.post(url, data=junk, headers=signed, timeout=10)
    assert 400 <= malformed.status_code < 500
    assert len(gateway.get("/v1/inbound").json()["items"]) == 1


# -- end to end: the in-process worker sends to the emulator, which calls back, signed ----------


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.parametrize("outcome", ["delivered", "undelivered"])
def test_emulator_receipts_flip_states_live(
    server_factory: ServerFactory, store_url: str, outcome: str
) -> None:
    emulator = TwilioEmulator(callbacks=Callbacks(delay=0.05, outcomes={outcome: 1.0}))
    with emulator.run_in_thread() as twilio:
        gateway = server_factory(
            store_url,
            worker=True,
            config={"providers": {"twilio": {"url": emulator.provider_url()}}},
        )
        ids = [queued(gateway, f"message {n}") for n in range(5)]

        def final() -> bool:
            return all(gateway.get(f"/v1/messages/{m}").json()["status"] == outcome for m in ids)

        wait_for(final)
        record = gateway.get(f"/v1/messages/{ids[0]}").json()
        steps = [(e["from"], e["to"], e["source"].split(":")[0]) for e in record["events"]]
        assert steps[0] == (None, "queued", "submit")
        assert ("sending", "sent", "worker") in steps
        assert steps[-1][1:] == (outcome, "webhook")
        assert record["provider"] == "twilio" and record["provider_message_id"].startswith("SM")
        log = twilio.call(lambda: list(emulator.callback_log))
        assert len(log) == 10 and {entry["status"] for entry in log} == {200}
        assert all("/webhooks/twilio/status?smsgate_id=msg_" in e["url"] for e in log)
        assert gateway.get("/readyz").json()["worker"] == "running"
