"""Delivery receipts that arrive together are stored together (group commit), each judged alone.

Real loopback HTTP and real SQLite: a second connection holds SQLite's write lock so that the
receipts arriving meanwhile are seen queueing, unanswered, and then written in one go.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from tests.server.conftest import Running, ServerFactory
from tests.server.test_provider_webhooks import TWILIO_URL, callback, history, queued

from smsgate.clock import FakeClock
from smsgate.message import DeliveryEvent, Status
from smsgate.outbox import Outbox, ReceiptOutcome
from smsgate.server.fastpath import status_webhook_provider
from smsgate.server.receipts import ReceiptRecorder


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


@contextmanager
def write_lock(sqlite_url: str) -> Iterator[None]:
    """Hold the store's write lock from another connection (as another process would)."""
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture(params=[True, False], ids=["fast", "routed"])
def gateway(
    request: pytest.FixtureRequest, server_factory: ServerFactory, sqlite_url: str
) -> Running:
    return server_factory(
        sqlite_url,
        config={"providers": {"twilio": {"url": TWILIO_URL}}},
        server={"fast_submit": request.param},
    )


def test_concurrent_receipts_share_one_commit_and_are_answered_after_it(
    gateway: Running, sqlite_url: str
) -> None:
    first, *ids = [queued(gateway, f"message {n}") for n in range(7)]
    recorder = gateway.services.receipts
    before = recorder.transactions
    with ThreadPoolExecutor(12) as pool, write_lock(sqlite_url):
        # one receipt the writer is stuck on; what arrives meanwhile is the next group
        blocked = pool.submit(callback, gateway, first, "delivered")
        wait_for(lambda: recorder.pending == 1)
        answers: list[Future[requests.Response]] = [
            pool.submit(callback, gateway, mid, "delivered") for mid in ids
        ]
        # the same receipt again (a provider retrying), and a late "sent" for the first message
        answers += [pool.submit(callback, gateway, mid, "delivered") for mid in ids[:3]]
        answers.append(pool.submit(callback, gateway, ids[0], "sent", token="late-sent"))
        wait_for(lambda: recorder.pending == 1 + len(answers))
        time.sleep(0.2)  # nothing is answered while the commit cannot happen
        assert not any(answer.done() for answer in [blocked, *answers])
        assert gateway.outbox.status(ids[0]).status is Status.QUEUED
    assert blocked.result().json() == {"received": 1, "stored": 1}
    results = [answer.result() for answer in answers]
    assert {r.status_code for r in results} == {200}
    assert recorder.transactions - before == 2  # the stuck one, then all the others together
    stored = [r.json()["stored"] for r in results]
    assert sum(stored[:6]) + sum(stored[6:9]) == 6  # each receipt once, whichever came first
    assert stored[9] == 1  # kept in the history, moving nothing
    for mid in ids:
        assert gateway.outbox.status(mid).status is Status.DELIVERED
        assert history(gateway, mid).count(("queued", "delivered", "webhook:twilio")) == 1
    assert ("delivered", "delivered", "webhook:twilio") in history(gateway, ids[0])


def test_a_receipt_the_store_refuses_fails_alone(gateway: Running, sqlite_url: str) -> None:
    ids = [queued(gateway, f"message {n}") for n in range(4)]
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        # a store failure for one receipt only (as a full disk or a broken row would be)
        conn.execute(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON smsgate_events "
            f"WHEN NEW.message_id = '{ids[1]}' AND NEW.source = 'webhook:twilio' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    first = queued(gateway, "first")
    recorder = gateway.services.receipts
    with ThreadPoolExecutor(5) as pool, write_lock(sqlite_url):
        blocked = pool.submit(callback, gateway, first, "delivered")
        wait_for(lambda: recorder.pending == 1)  # so the next four are one group
        answers = [pool.submit(callback, gateway, mid, "delivered") for mid in ids]
        wait_for(lambda: recorder.pending == 1 + len(answers))
    assert blocked.result().status_code == 200
    results = [answer.result() for answer in answers]
    assert [r.status_code for r in results] == [200, 503, 200, 200]
    assert results[1].json()["error"] == "unavailable" and "Traceback" not in results[1].text
    # the failed group stored nothing, so the others were stored anew (not as duplicates)
    assert [results[n].json()["stored"] for n in (0, 2, 3)] == [1, 1, 1]
    assert [gateway.outbox.status(mid).status for mid in ids] == [
        Status.DELIVERED,
        Status.QUEUED,
        Status.DELIVERED,
        Status.DELIVERED,
    ]


def test_a_group_records_as_one_by_one_would(store_url: str) -> None:
    """Duplicates inside one group, forward-only moves and receipts for unknown messages."""
    clock = FakeClock(start=1_700_000_000)
    with Outbox(store_url, migrate=True, clock=clock) as outbox:
        mid = outbox.submit({"to": "+15555550100", "body": "hi"})

        def event(
            status: Status, event_id: str, sid: str = "SM1", message_id: str | None = None
        ) -> DeliveryEvent:
            return DeliveryEvent(
                provider="twilio",
                provider_message_id=sid,
                status=status,
                event_id=event_id,
                message_id=message_id,
            )

        events = [
            event(Status.SENT, "e1", message_id=mid),
            event(Status.DELIVERED, "e2", message_id=mid),
            event(Status.DELIVERED, "e2", message_id=mid),  # the same, in the same group
            event(Status.SENT, "e3", message_id=mid),  # late: does not move it back
            event(Status.DELIVERED, "e4", sid="SM-not-yet-known"),
        ]
        recorder = ReceiptRecorder(outbox)

        async def record_all() -> list[ReceiptOutcome]:
            recorder.start()
            try:
                results = await asyncio.gather(*(recorder.record(e) for e in events))
            finally:
                await recorder.stop()
            return [r.outcome for r in results]

        outcomes = asyncio.run(record_all())
        assert outcomes == [
            ReceiptOutcome.APPLIED,
            ReceiptOutcome.APPLIED,
            ReceiptOutcome.DUPLICATE,
            ReceiptOutcome.STALE,
            ReceiptOutcome.PENDING,
        ]
        assert (recorder.transactions, recorder.recorded) == (1, 5)
        assert outbox.status(mid).status is Status.DELIVERED
        assert outbox.store.pending_receipts() == 1


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/webhooks/twilio/status", "twilio"),
        ("/webhooks/my-twilio/status", "my-twilio"),
        ("/webhooks//status", None),
        ("/webhooks/a/b/status", None),
        ("/webhooks/twilio/status/", None),
        ("/webhooks/twilio/inbound", None),
        ("/v1/webhooks/twilio/status", None),
    ],
)
def test_the_fast_path_takes_exactly_the_routes_paths(path: str, name: str | None) -> None:
    assert status_webhook_provider(path) == name


def test_a_receipt_is_stored_as_outbox_record_event_stores_it(store_url: str) -> None:
    """The server builds the stored receipt itself (to group it): the same history row."""
    clock = FakeClock(start=1_700_000_000)
    event = DeliveryEvent(
        provider="twilio",
        provider_message_id="SM1",
        status=Status.UNDELIVERED,
        event_id="e1",
        occurred_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        error_code="21610",
        reason="unsubscribed",
        opted_out=True,
        part=1,
        parts=2,
        raw={"MessageSid": "SM1", "ErrorCode": "21610"},
    )
    with Outbox(store_url, migrate=True, clock=clock) as outbox:
        one = outbox.submit({"to": "+15555550100", "body": "one"})
        two = outbox.submit({"to": "+15555550100", "body": "two"})
        outbox.record_event(replace(event, message_id=one))
        recorder = ReceiptRecorder(outbox)
        asyncio.run(recorder.record(replace(event, message_id=two, event_id="e2")))
        rows = [outbox.status(mid).events[-1].to_dict() for mid in (one, two)]
    for row in rows:
        del row["id"]
    assert rows[0] == rows[1]
    assert "recipient opted out" in rows[0]["reason"] and "part 1 of 2" in rows[0]["reason"]
