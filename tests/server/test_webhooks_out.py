"""User webhooks: Standard Webhooks signatures, durable retries on a fake clock, dead letters."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.providers.test_transport import Script, Seen, response
from tests.providers.test_transport import Server as ScriptedServer
from tests.server.conftest import Running, ServerFactory
from tests.support.proxy import Proxy
from tests.support.webhooks import WebhookReceiver

from smsgate.clock import FakeClock
from smsgate.errors import WebhookVerificationError
from smsgate.outbox import Outbox
from smsgate.outbox.tables.server import ServerStore, Subscription
from smsgate.server.webhooks_out import (
    RetrySchedule,
    WebhookDispatcher,
    make_event,
    new_secret,
    sign,
    subscriptions_for,
    verify,
)

DAY = 86_400.0


def independent_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks algorithm written out from the spec, not from smsgate."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_signature_matches_the_spec() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        independent_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
    )


def test_verify_accepts_good_and_refuses_tampered_or_stale() -> None:
    secret = new_secret()
    body = b'{"a":1}'
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1000",
        "webhook-signature": "v1,bogus " + sign(secret, "evt_1", 1000, body),
    }
    verify(secret, headers, body, now=1100)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, b'{"a":2}', now=1100)
    with pytest.raises(WebhookVerificationError):
        verify(secret, {**headers, "webhook-id": "evt_2"}, body, now=1100)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify(secret, headers, body, now=1000 + 301)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), headers, body, now=1100)


def test_event_type_patterns() -> None:
    assert subscriptions_for(["message.*", "inbound.received", "*", "*"]) == [
        "message.*",
        "inbound.received",
        "*",
    ]
    with pytest.raises(ValueError, match="unknown event type"):
        subscriptions_for(["message.exploded"])


def test_schedule_backs_off_and_ends_at_the_horizon() -> None:
    schedule = RetrySchedule(horizon=DAY)
    rng = random.Random(7)
    now, attempts, waits = 0.0, 0, []
    while (due := schedule.next_attempt(0.0, attempts + 1, now, rng)) is not None:
        waits.append(due - now)
        now, attempts = due, attempts + 1
    assert now == DAY
    for attempt, wait in enumerate(waits[:-1], start=1):
        ceiling = min(3600.0, 5.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling, (attempt, wait)
    assert 0 < waits[-1] <= 3600.0  # the last one lands on the horizon
    assert 20 <= attempts <= 60
    assert schedule.next_attempt(0.0, attempts + 1, DAY, rng) is None


# -- the dispatcher on a fake clock -------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Outbox, ServerStore]]:
    outbox = Outbox(f"sqlite:///{tmp_path / 'w.db'}")
    yield outbox, ServerStore.of(outbox.store)
    outbox.close()


def subscribe(store: ServerStore, url: str, events: tuple[str, ...] = ("*",)) -> Subscription:
    sub = Subscription("whk_1", url, events, new_secret(), None, 0.0)
    store.add_subscription(sub)
    return sub


def test_delivery_is_signed_and_any_2xx_is_success(
    store: tuple[Outbox, ServerStore], webhook_receiver: WebhookReceiver
) -> None:
    _, server_store = store
    clock = FakeClock()
    webhook_receiver.status = 204
    sub = subscribe(server_store, webhook_receiver.url + "/hook")
    event = make_event("message.delivered", {"message_id": "msg_1"}, clock.time())
    assert server_store.enqueue([event], clock.time()) == 1
    dispatcher = WebhookDispatcher(server_store, clock=clock)
    assert asyncio.run(_once(dispatcher)) == 1
    (request,) = webhook_receiver.wait(1)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-id"] == event.id
    assert headers["webhook-timestamp"] == str(int(clock.time()))
    assert headers["webhook-signature"] == independent_signature(
        sub.secret, event.id, headers["webhook-timestamp"], request.body
    )
    payload = json.loads(request.body)
    assert payload["type"] == "message.delivered" and payload["data"] == {"message_id": "msg_1"}
    (row,) = server_store.list_deliveries()
    assert row.state == "delivered" and row.attempts == 1 and row.last_status == 204


def test_failures_are_retried_with_backoff_then_dead_lettered_after_24h(
    store: tuple[Outbox, ServerStore], webhook_receiver: WebhookReceiver
) -> None:
    _, server_store = store
    clock = FakeClock()
    webhook_receiver.status = 500
    subscribe(server_store, webhook_receiver.url + "/hook")
    server_store.enqueue(
        [make_event("inbound.received", {"id": "in_1"}, clock.time())], clock.time()
    )
    dispatcher = WebhookDispatcher(server_store, clock=clock, rng=random.Random(1))
    start = clock.time()
    attempts = 0
    while True:
        made = asyncio.run(_once(dispatcher))
        assert made <= 1
        attempts += made
        (row,) = server_store.list_deliveries()
        if row.state == "dead":
            break
        assert row.state == "pending" and row.next_attempt_at is not None
        assert asyncio.run(_once(dispatcher)) == 0  # nothing is due before its time
        clock.advance(row.next_attempt_at - clock.time())
    assert clock.time() - start == pytest.approx(DAY)
    assert row.attempts == attempts == len(webhook_receiver.received) and attempts > 10
    assert row.last_status == 500 and row.last_error == "HTTP 500"
    assert [d.id for d in server_store.list_deliveries(state="dead")] == [row.id]


def test_a_receiver_that_recovers_gets_the_event(
    store: tuple[Outbox, ServerStore], webhook_receiver: WebhookReceiver
) -> None:
    _, server_store = store
    clock = FakeClock()
    webhook_receiver.status = 503
    subscribe(server_store, webhook_receiver.url + "/hook")
    event = make_event("message.sent", {}, clock.time())
    server_store.enqueue([event], clock.time())
    dispatcher = WebhookDispatcher(server_store, clock=clock)
    asyncio.run(_once(dispatcher))
    webhook_receiver.status = 200
    clock.advance(3600)
    asyncio.run(_once(dispatcher))
    (row,) = server_store.list_deliveries()
    assert row.state == "delivered" and row.attempts == 2
    ids = {r.request.header("webhook-id") for r in webhook_receiver.received}
    assert ids == {event.id}  # the same id on every attempt, so receivers can dedupe


def test_unreachable_receivers_and_redirects_fail(store: tuple[Outbox, ServerStore]) -> None:
    _, server_store = store
    clock = FakeClock()
    subscribe(server_store, "http://127.0.0.1:9/closed")
    server_store.enqueue([make_event("message.sent", {}, clock.time())], clock.time())
    asyncio.run(_once(WebhookDispatcher(server_store, clock=clock, timeout=2)))
    (row,) = server_store.list_deliveries()
    assert row.state == "pending" and row.attempts == 1 and row.last_status is None
    assert row.last_error and "Connect" in row.last_error


def test_a_delivery_whose_server_died_mid_attempt_is_taken_over_once_its_lease_expires(
    store: tuple[Outbox, ServerStore], webhook_receiver: WebhookReceiver
) -> None:
    _, server_store = store
    clock = FakeClock()
    subscribe(server_store, webhook_receiver.url + "/hook")
    event = make_event("message.sent", {}, clock.time())
    server_store.enqueue([event], clock.time())
    dead = WebhookDispatcher(server_store, clock=clock, owner="dead-server")
    now = clock.time()
    # the dead server's claim: it never posted nor finished the attempt
    (claimed,) = server_store.claim_deliveries(dead.owner, 10, now, now + 60)
    assert claimed.delivery.event_id == event.id
    survivor = WebhookDispatcher(server_store, clock=clock, owner="survivor")
    assert asyncio.run(_once(survivor)) == 0  # held: nobody makes the same attempt twice
    clock.advance(61)
    assert asyncio.run(_once(survivor)) == 1
    (request,) = webhook_receiver.wait(1)
    assert {k.lower(): v for k, v in request.headers.items()}["webhook-id"] == event.id
    (row,) = server_store.list_deliveries()
    assert row.state == "delivered" and row.attempts == 1


async def _once(dispatcher: WebhookDispatcher) -> int:
    try:
        return await dispatcher.run_once()
    finally:
        await dispatcher.aclose()


# -- through the API ----------------------------------------------------------------------------


def test_subscribe_receive_and_manage_over_the_api(
    server: Running, webhook_receiver: WebhookReceiver
) -> None:
    created = server.post(
        "/v1/webhooks",
        json={
            "url": webhook_receiver.url + "/in",
            "events": ["message.queued"],
            "description": "billing",
        },
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_")
    listed = server.get("/v1/webhooks").json()
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert "secret" not in server.get(f"/v1/webhooks/{sub['id']}").json()
    mid = server.post("/v1/messages", json={"to": "+15555550100", "body": "hi"}).json()["id"]
    (request,) = webhook_receiver.wait(1, timeout=15)
    verify(sub["secret"], request.headers, request.body, now=_now())
    payload = json.loads(request.body)
    assert payload["type"] == "message.queued" and payload["data"]["message_id"] == mid
    assert server.delete(f"/v1/webhooks/{sub['id']}").status_code == 204
    assert server.get(f"/v1/webhooks/{sub['id']}").status_code == 404
    assert server.delete(f"/v1/webhooks/{sub['id']}").status_code == 404


def test_bad_subscriptions_are_refused(server: Running) -> None:
    for body, field in [
        ({"url": "ftp://x", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1/x", "events": ["message.nope"]}, "events"),
    ]:
        response = server.post("/v1/webhooks", json=body)
        assert response.status_code == 422 and response.json()["field"].startswith(field), (
            response.text
        )


def test_dead_letters_are_listed_and_can_be_retried(
    server_factory: ServerFactory, sqlite_url: str, webhook_receiver: WebhookReceiver
) -> None:
    clock = FakeClock()
    running = server_factory(sqlite_url, clock=clock, background=False)
    webhook_receiver.status = 500
    sub = running.post("/v1/webhooks", json={"url": webhook_receiver.url, "events": ["*"]}).json()
    running.store.enqueue(
        [make_event("message.failed", {"message_id": "m"}, clock.time())], clock.time()
    )
    dispatcher = WebhookDispatcher(running.store, clock=clock)
    for _ in range(200):
        asyncio.run(_once(dispatcher))
        clock.advance(3600)
        if running.store.list_deliveries(state="dead"):
            break
    dead = running.get("/v1/webhooks/dead-letters").json()["items"]
    assert len(dead) == 1 and dead[0]["subscription_id"] == sub["id"]
    assert dead[0]["payload"]["type"] == "message.failed" and dead[0]["state"] == "dead"
    assert running.get("/v1/webhooks/deliveries", params={"state": "dead"}).json()["items"] == dead
    webhook_receiver.status = 200
    again = running.post(f"/v1/webhooks/dead-letters/{dead[0]['id']}/retry")
    assert again.status_code == 200 and again.json()["state"] == "pending"
    asyncio.run(_once(dispatcher))
    assert running.store.list_deliveries()[0].state == "delivered"
    assert running.get("/v1/webhooks/dead-letters").json()["items"] == []
    assert running.post("/v1/webhooks/dead-letters/whd_nope/retry").status_code == 404


def _now() -> float:
    import time

    return time.time()


# -- the HTTP client: smsgate's own transport -----------------------------------------------------


def _dispatch_to(
    server_store: ServerStore, script: Script, path: str = "/hook", credentials: str = ""
) -> list[Seen]:
    """Subscribe a scripted loopback server, run one dispatch pass; what the server read."""

    async def main() -> list[Seen]:
        async with ScriptedServer(script) as server:
            url = server.url.replace("://", f"://{credentials}") + path
            subscribe(server_store, url)
            clock = FakeClock()
            server_store.enqueue([make_event("message.sent", {}, clock.time())], clock.time())
            await _once(WebhookDispatcher(server_store, clock=clock, timeout=2))
        return server.seen

    return asyncio.run(main())


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    store: tuple[Outbox, ServerStore],
) -> None:
    async def moved(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return response(307, b"", (("Location", "/elsewhere"),))

    _, server_store = store
    seen = _dispatch_to(server_store, moved)
    assert [s.target for s in seen] == ["/hook"]
    (row,) = server_store.list_deliveries()
    assert row.state == "pending" and row.last_status == 307 and row.last_error == "HTTP 307"


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_recorded(
    store: tuple[Outbox, ServerStore],
) -> None:
    async def refuse(seen: Seen, writer: asyncio.StreamWriter) -> bytes | None:
        return None  # closed without an answer

    _, server_store = store
    seen = _dispatch_to(server_store, refuse, credentials="hooks:s3cr%40t@")
    expected = "Basic " + base64.b64encode(b"hooks:s3cr@t").decode()
    assert seen[0].headers["authorization"] == expected
    assert seen[0].headers["user-agent"] == "smsgate-webhooks"
    (row,) = server_store.list_deliveries()
    assert row.state == "pending" and row.last_status is None
    assert row.last_error and "s3cr" not in row.last_error and "may have been" in row.last_error


def test_deliveries_go_through_the_environment_proxy(
    store: tuple[Outbox, ServerStore], proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", proxy.url())

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return response(204, b"")

    _, server_store = store
    seen = _dispatch_to(server_store, answer)
    assert "tinyproxy" in seen[0].headers.get("via", "")
    (row,) = server_store.list_deliveries()
    assert row.state == "delivered"
