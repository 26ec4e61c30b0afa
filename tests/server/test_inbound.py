"""Inbound messages and opt-outs, end to end through the Twilio emulator's inbound injection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tests.server.conftest import Running, ServerFactory

from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.telnyx import TelnyxEmulator
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.errors import ConfigError
from smsgate.outbox.suppressions import number_key
from smsgate.server.optout import Action, classify
from smsgate.server.settings import ServerSettings

PERSON = "+15555550123"
OURS = "+15005550006"


@pytest.fixture
def twilio() -> Iterator[EmulatorThread]:
    running = TwilioEmulator().run_in_thread()
    yield running
    running.stop()


@pytest.fixture
def gateway(server_factory: ServerFactory, store_url: str, twilio: EmulatorThread) -> Running:
    return server_factory(
        store_url,
        config={"providers": {"twilio": {"url": twilio.emulator.provider_url()}}},
        server={"help_text": "Acme alerts. Reply STOP to stop.", "stop_reply": "Unsubscribed."},
    )


def inject(
    twilio: EmulatorThread,
    gateway: Running,
    body: str,
    sender: str = PERSON,
    to: str = OURS,
    provider: str = "twilio",
) -> dict[str, Any]:
    response = requests.post(
        twilio.url + "/_emulator/inbound",
        json={
            "from": sender,
            "to": to,
            "body": body,
            "url": f"{gateway.url}/webhooks/{provider}/inbound",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def send(gateway: Running, **fields: Any) -> requests.Response:
    return gateway.post("/v1/messages", json={"to": PERSON, "body": "Sale!", **fields})


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("STOP", Action.OPT_OUT),
        ("stop", Action.OPT_OUT),
        (" Stop. ", Action.OPT_OUT),
        ("UNSUBSCRIBE", Action.OPT_OUT),
        ("cancel", Action.OPT_OUT),
        ("End", Action.OPT_OUT),
        ("QUIT!", Action.OPT_OUT),
        ("STOPALL", Action.OPT_OUT_ALL),
        ("start", Action.OPT_IN),
        ("UNSTOP", Action.OPT_IN),
        ("help", Action.HELP),
        ("Help?", Action.HELP),
        ("please stop texting me", None),
        ("STOP IT", None),
        ("", None),
        ("starting", None),
    ],
)
def test_keywords(body: str, action: Action | None) -> None:
    assert classify(body) is action


def test_number_keys() -> None:
    assert number_key("+1 501-712-2661") == "+15017122661"
    assert number_key("Acme") == "Acme" and number_key("*") == "*"
    assert number_key("12345") == "12345"  # a short code stays a short code


def test_opt_out_flow_end_to_end(gateway: Running, twilio: EmulatorThread) -> None:
    assert send(gateway, purpose="marketing").status_code == 201

    assert inject(twilio, gateway, "STOP")["status"] == 200
    suppressed = gateway.get("/v1/suppressions", params={"recipient": PERSON}).json()["items"]
    assert [(s["recipient"], s["our_number"], s["source"], s["keyword"]) for s in suppressed] == [
        (PERSON, OURS, "keyword", "STOP")
    ]
    for purpose in ("marketing", "transactional", "otp"):
        refused = send(gateway, purpose=purpose, sender=OURS)
        assert refused.status_code == 422, purpose
        assert refused.json()["error"] == "opted_out" and refused.json()["field"] == "to"
    # from another number of ours the person did not opt out of
    assert send(gateway, sender="+15005550007").status_code == 201
    # without a sender the route's number is not known yet: refused to be safe
    assert send(gateway).status_code == 422

    assert inject(twilio, gateway, "start")["status"] == 200
    assert gateway.get("/v1/suppressions", params={"recipient": PERSON}).json()["items"] == []
    assert send(gateway, sender=OURS).status_code == 201

    inbound = gateway.get("/v1/inbound", params={"from": PERSON}).json()["items"]
    assert [(m["body"], m["action"], m["to"]) for m in inbound] == [
        ("start", "opt_in", OURS),
        ("STOP", "opt_out", OURS),
    ]
    # the STOP confirmation went out from the number they wrote to, despite the opt-out
    replies = [m for m in gateway.outbox.list(to=PERSON).items if m.body == "Unsubscribed."]
    assert len(replies) == 1 and replies[0].sender == OURS


def test_stopall_covers_every_number_and_start_lifts_it(
    gateway: Running, twilio: EmulatorThread
) -> None:
    inject(twilio, gateway, "STOPALL")
    assert send(gateway, sender="+15005550007").status_code == 422
    inject(twilio, gateway, "UNSTOP", to="+15005550007")
    assert send(gateway, sender="+15005550007").status_code == 201


def test_otp_can_be_let_through(
    server_factory: ServerFactory, sqlite_url: str, twilio: EmulatorThread
) -> None:
    gateway = server_factory(
        sqlite_url,
        config={
            "providers": {"twilio": {"url": twilio.emulator.provider_url()}},
            "otp": {"honor_opt_outs": False},
        },
    )
    inject(twilio, gateway, "STOP")
    assert send(gateway, purpose="otp", sender=OURS).status_code == 201
    assert send(gateway, purpose="transactional", sender=OURS).status_code == 422


def test_the_old_otp_setting_says_where_it_moved() -> None:
    with pytest.raises(ConfigError, match=r"server.suppress_otp: .* honor_opt_outs under \[otp\]"):
        ServerSettings.from_mapping({"suppress_otp": False})


def test_a_batch_refuses_opted_out_recipients_item_by_item(gateway: Running) -> None:
    added = gateway.post("/v1/suppressions", json={"recipient": PERSON, "our_number": OURS})
    assert added.status_code == 201
    answer = gateway.post(
        "/v1/messages/batch",
        json={
            "messages": [
                {"to": "+15555550124", "body": "ok", "sender": OURS},
                {"to": "+1 555 555 0123", "body": "stopped", "sender": OURS},
                {"to": PERSON, "body": "another number", "sender": "+15005550007"},
            ]
        },
    ).json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    refused = answer["results"][1]
    assert refused["id"] is None and refused["error"]["error"] == "opted_out"
    assert refused["error"]["field"] == "to" and OURS in refused["error"]["message"]
    assert sorted((m.to, m.sender) for m in gateway.outbox.list().items) == [
        (PERSON, "+15005550007"),
        ("+15555550124", OURS),
    ]


def test_help_is_answered_once(gateway: Running, twilio: EmulatorThread) -> None:
    inject(twilio, gateway, "HELP")
    replies = gateway.outbox.list(to=PERSON).items
    assert [(m.body, m.sender, m.purpose) for m in replies] == [
        ("Acme alerts. Reply STOP to stop.", OURS, "transactional")
    ]
    inbound = gateway.get("/v1/inbound").json()["items"]
    assert inbound[0]["action"] == "help" and inbound[0]["from"] == PERSON


def test_ordinary_messages_are_stored_with_media(gateway: Running, twilio: EmulatorThread) -> None:
    response = requests.post(
        twilio.url + "/_emulator/inbound",
        json={
            "from": PERSON,
            "to": OURS,
            "body": "Is my order late?",
            "media": ["https://example.com/a.jpg"],
            "url": f"{gateway.url}/webhooks/twilio/inbound",
        },
        timeout=10,
    )
    assert response.json()["status"] == 200
    (item,) = gateway.get("/v1/inbound").json()["items"]
    assert item["body"] == "Is my order late?" and item["media"] == ["https://example.com/a.jpg"]
    assert item["action"] is None and item["provider"] == "twilio"
    assert gateway.outbox.list().items == []  # nothing to answer


def test_api_suppressions(server: Running) -> None:
    created = server.post(
        "/v1/suppressions", json={"recipient": "+15555550199", "reason": "asked by phone"}
    )
    assert created.status_code == 201 and created.json()["our_number"] == "*"
    assert server.post("/v1/suppressions", json={"recipient": "+15555550199"}).status_code == 200
    refused = server.post("/v1/messages", json={"to": "+15555550199", "body": "x"})
    assert refused.status_code == 422 and refused.json()["error"] == "opted_out"
    one = server.post("/v1/suppressions", json={"recipient": "+15555550198", "our_number": "Acme"})
    assert one.json()["our_number"] == "Acme"
    assert (
        server.post(
            "/v1/messages", json={"to": "+15555550198", "body": "x", "sender": "Other"}
        ).status_code
        == 201
    )
    page = server.get("/v1/suppressions", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = server.get("/v1/suppressions", params={"cursor": page["next_cursor"]}).json()
    assert {s["recipient"] for s in page["items"] + rest["items"]} == {
        "+15555550199",
        "+15555550198",
    }
    assert server.get("/v1/suppressions", params={"cursor": "bad!"}).status_code == 422
    assert server.delete("/v1/suppressions", params={"recipient": "+15555550199"}).json() == {
        "removed": 1
    }
    again = server.delete("/v1/suppressions", params={"recipient": "+15555550199"})
    assert again.status_code == 404
    assert server.post("/v1/messages", json={"to": "+15555550199", "body": "x"}).status_code == 201
    bad = server.post("/v1/suppressions", json={"recipient": "nobody"})
    assert bad.status_code == 422 and bad.json()["field"] == "recipient"


def test_replies_leave_through_the_provider_and_number_the_message_arrived_on(
    server_factory: ServerFactory, store_url: str, twilio: EmulatorThread
) -> None:
    telnyx = TelnyxEmulator().run_in_thread()
    try:
        theirs = telnyx.emulator.default_sender
        gateway = server_factory(
            store_url,
            config={
                "providers": {
                    "twilio": {"url": twilio.emulator.provider_url()},
                    "telnyx": {"url": telnyx.emulator.provider_url()},
                },
                # the default route sends through twilio, which does not own telnyx's number
                "routes": [{"name": "default", "providers": ["twilio"]}],
            },
            server={"help_text": "Acme alerts. Reply STOP to stop."},
            worker=True,
        )
        inject(telnyx, gateway, "HELP", to=theirs, provider="telnyx")
        inbound_id = gateway.get("/v1/inbound").json()["items"][0]["id"]
        # any reply naming the inbound message leaves the same way, from the same number
        answer = gateway.post(
            "/v1/messages", json={"to": PERSON, "body": "We are on it.", "in_reply_to": inbound_id}
        )
        assert answer.status_code == 201, answer.text
        wrong = gateway.post(
            "/v1/messages", json={"to": "+15555550999", "body": "x", "in_reply_to": inbound_id}
        )
        assert wrong.status_code == 409 and wrong.json()["field"] == "in_reply_to"
        missing = gateway.post(
            "/v1/messages", json={"to": PERSON, "body": "x", "in_reply_to": "in_nope"}
        )
        assert missing.status_code == 404
        sent = wait_for(lambda: telnyx.call(lambda: list(telnyx.emulator.messages)), count=2)
        assert sorted((m.body, m.sender, m.to) for m in sent) == [
            ("Acme alerts. Reply STOP to stop.", theirs, PERSON),
            ("We are on it.", theirs, PERSON),
        ]
        assert twilio.call(lambda: list(twilio.emulator.messages)) == []
        replies = gateway.outbox.list(to=PERSON).items
        assert {m.provider for m in replies} == {"telnyx"}
        assert all(m.metadata["in_reply_to"] == inbound_id for m in replies)
    finally:
        telnyx.stop()


def wait_for(read: Any, *, count: int, timeout: float = 20) -> list[Any]:
    """What ``read()`` returns once it has ``count`` items (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        items: list[Any] = read()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)
