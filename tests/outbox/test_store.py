"""The shared store suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import InvalidMessage, InvalidRecipient
from smsgate.message import DeliveryEvent, Message, Status
from smsgate.outbox import MessageNotFound, NotCancelable, Outbox, ReceiptOutcome, State
from smsgate.outbox.sql import INDEXED_PREDICATE
from smsgate.outbox.store import NewEvent, StartSend, Transition
from smsgate.outbox.tables.message_parts import MessagePartTable
from tests.outbox.conftest import sqlite_url

TO = "+15555550100"


def at(clock: FakeClock, seconds: float = 0.0) -> datetime:
    return datetime.fromtimestamp(clock.time() + seconds, UTC)


def start(outbox: Outbox, owner: str, ids: list[str], provider: str = "twilio") -> set[str]:
    now = outbox.clock.time()
    starts = [
        StartSend(i, provider, 1, "default", NewEvent(i, now, "queued", "sending", owner, "go"))
        for i in ids
    ]
    return outbox.store.start(owner, starts, now, now + 30)


def finish(outbox: Outbox, owner: str, message_id: str, state: State, **fields: object) -> set[str]:
    now = outbox.clock.time()
    event = NewEvent(message_id, now, "sending", state.status.value, owner, f"to {state}")
    transition = Transition(message_id, state, event, **fields)  # type: ignore[arg-type]
    return outbox.store.finish(owner, [transition], now)


# -- submit, idempotency, status --------------------------------------------------------------


def test_submit_stores_a_queued_message_with_its_history(outbox: Outbox) -> None:
    message_id = outbox.submit(Message(to=TO, body="hello", metadata={"order": 42}))
    record = outbox.status(message_id)
    assert record.status is Status.QUEUED
    assert (record.to, record.body, record.metadata) == (TO, "hello", {"order": 42})
    assert [(e.from_status, e.to_status, e.source) for e in record.events] == [
        (None, Status.QUEUED, "submit")
    ]
    assert record.created_at.timestamp() == pytest.approx(outbox.clock.time())


def test_the_same_idempotency_key_returns_the_first_message_and_stores_nothing(
    outbox: Outbox,
) -> None:
    first = outbox.submit(Message(to=TO, body="code 1", idempotency_key="order-42"))
    again = outbox.submit({"to": "+15555550199", "body": "code 2", "idempotency_key": "order-42"})
    assert again == first
    assert outbox.counts() == {Status.QUEUED: 1}
    assert outbox.status(first).body == "code 1"
    assert len(outbox.status(first).events) == 1


def test_submitting_the_same_message_object_twice_stores_it_once(outbox: Outbox) -> None:
    message = Message(to=TO, body="once")
    assert outbox.submit(message) == outbox.submit(message) == message.id
    assert outbox.counts() == {Status.QUEUED: 1}


def test_a_mapping_is_validated_with_the_field_named(outbox: Outbox) -> None:
    with pytest.raises(InvalidRecipient) as error:
        outbox.submit({"to": "555-0100", "body": "hi"})
    assert error.value.field == "to"
    assert "country code" in str(error.value)
    with pytest.raises(InvalidMessage) as error2:
        outbox.submit({"to": TO, "body": "hi", "colour": "red"})
    assert error2.value.field == "colour"
    assert outbox.counts() == {}


def test_a_mapping_with_a_region_accepts_national_numbers(store_url: str, clock: FakeClock) -> None:
    with Outbox(store_url, clock=clock, migrate=True, region="GB") as box:
        message_id = box.submit({"to": "07700 900123", "body": "hi"})
        assert box.status(message_id).to == "+447700900123"


def test_status_of_an_unknown_id_names_it(outbox: Outbox) -> None:
    with pytest.raises(MessageNotFound, match="msg_nope"):
        outbox.status("msg_nope")
    assert outbox.get("msg_nope") is None


def test_concurrent_submits_of_one_key_from_threads_store_one_message(
    open_outbox: Callable[..., Outbox],
) -> None:
    boxes = [open_outbox() for _ in range(4)]
    ids: list[str] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def submit(n: int) -> None:
        box = boxes[n % len(boxes)]
        barrier.wait()
        for round_ in range(5):
            got = box.submit({"to": TO, "body": f"try {n}", "idempotency_key": f"k-{round_}"})
            with lock:
                ids.append(got)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 40
    assert len(set(ids)) == 5
    assert boxes[0].counts() == {Status.QUEUED: 5}
    for message_id in set(ids):
        assert len(boxes[0].status(message_id).events) == 1


# -- scheduling and cancel --------------------------------------------------------------------


def test_send_at_schedules_and_only_a_due_message_is_claimed(
    outbox: Outbox, clock: FakeClock
) -> None:
    later = outbox.submit(Message(to=TO, body="later", send_at=at(clock, 60)))
    now_id = outbox.submit(Message(to=TO, body="now"))
    assert outbox.status(later).status is Status.SCHEDULED
    assert "scheduled for" in (outbox.status(later).events[0].reason or "")
    claimed = outbox.store.claim("w1", 10, clock.time(), clock.time() + 3600)
    assert [c.row.id for c in claimed] == [now_id]
    clock.advance(59)
    assert outbox.store.claim("w1", 10, clock.time(), clock.time() + 3600) == []
    clock.advance(1)
    claimed = outbox.store.claim("w1", 10, clock.time(), clock.time() + 3600)
    assert [(c.row.id, c.row.state) for c in claimed] == [(later, State.SCHEDULED)]


def test_a_send_at_in_the_past_is_queued_at_once(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="late", send_at=at(clock, -5)))
    assert outbox.status(message_id).status is Status.QUEUED


def test_cancel_stops_scheduled_and_queued_messages(outbox: Outbox, clock: FakeClock) -> None:
    scheduled = outbox.submit(Message(to=TO, body="s", send_at=at(clock, 3600)))
    queued = outbox.submit(Message(to=TO, body="q"))
    for message_id in (scheduled, queued):
        record = outbox.cancel(message_id, reason="customer changed their mind")
        assert record.status is Status.CANCELED
        events = outbox.status(message_id).events
        assert (events[-1].to_status, events[-1].reason) == (
            Status.CANCELED,
            "customer changed their mind",
        )
    clock.advance(7200)
    assert outbox.store.claim("w1", 10, clock.time(), clock.time() + 30) == []
    # canceling again is a no-op, not an error
    assert outbox.cancel(queued).status is Status.CANCELED
    assert len(outbox.status(queued).events) == 2


def test_cancel_wins_over_a_claim_that_has_not_started(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="q"))
    assert len(outbox.store.claim("w1", 10, clock.time(), clock.time() + 30)) == 1
    outbox.cancel(message_id)
    assert start(outbox, "w1", [message_id]) == set()
    assert outbox.status(message_id).status is Status.CANCELED


def test_cancel_refuses_once_handed_to_a_provider(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="q"))
    outbox.store.claim("w1", 10, clock.time(), clock.time() + 30)
    assert start(outbox, "w1", [message_id]) == {message_id}
    with pytest.raises(NotCancelable) as error:
        outbox.cancel(message_id)
    assert error.value.status is Status.SENDING
    with pytest.raises(MessageNotFound):
        outbox.cancel("msg_missing")


def test_an_expired_validity_is_recorded_on_the_row(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="otp", validity=300))
    record = outbox.status(message_id)
    assert record.expires_at is not None
    assert record.expires_at.timestamp() == pytest.approx(clock.time() + 300)


# -- list -------------------------------------------------------------------------------------


def test_list_filters_and_pages_newest_first(outbox: Outbox, clock: FakeClock) -> None:
    ids = []
    for n in range(7):
        ids.append(outbox.submit(Message(to=TO if n % 2 else "+15555550111", body=f"m{n}")))
        clock.advance(1)
    # ids sort by creation time (to the millisecond; within one, any order but a fixed one)
    newest = sorted(ids, reverse=True)
    outbox.cancel(ids[0])
    page = outbox.list(limit=3)
    assert [r.id for r in page.items] == newest[:3]
    assert page.next_cursor is not None
    rest = outbox.list(limit=10, cursor=page.next_cursor)
    assert [r.id for r in rest.items] == newest[3:]
    assert rest.next_cursor is None
    assert [r.id for r in outbox.list(status="canceled").items] == [ids[0]]
    assert {r.id for r in outbox.list(status=[Status.QUEUED]).items} == set(ids[1:])
    to_ours = [r.id for r in outbox.list(to="+1 555 555 0100").items]
    assert to_ours == sorted([ids[1], ids[3], ids[5]], reverse=True)
    since = datetime.fromtimestamp(clock.time() - 2.5, UTC)
    assert {r.id for r in outbox.list(since=since).items} == {ids[6], ids[5]}


def test_list_refuses_bad_filters_naming_them(outbox: Outbox) -> None:
    with pytest.raises(InvalidMessage) as error:
        outbox.list(status="lost")
    assert error.value.field == "status"
    with pytest.raises(InvalidMessage) as error:
        outbox.list(limit=0)
    assert error.value.field == "limit"
    with pytest.raises(InvalidMessage) as error:
        outbox.list(cursor="not ours")
    assert error.value.field == "cursor"


# -- claims and leases ------------------------------------------------------------------------


def test_claims_are_disjoint_and_ordered_by_due_time(outbox: Outbox, clock: FakeClock) -> None:
    ids = [outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(10)]
    now = clock.time()
    first = outbox.store.claim("w1", 4, now, now + 30)
    second = outbox.store.claim("w2", 4, now, now + 30)
    third = outbox.store.claim("w3", 4, now, now + 30)
    got = [c.row.id for c in first + second + third]
    assert sorted(got) == sorted(ids)
    assert len(set(got)) == 10
    assert {c.row.lease_owner for c in first} == {"w1"}
    assert all(c.previous_owner is None for c in first + second + third)
    # held rows are not due for anyone
    assert outbox.store.claim("w4", 10, now, now + 30) == []


def test_an_expired_claim_is_taken_over_and_the_first_owner_can_no_longer_write(
    outbox: Outbox, clock: FakeClock
) -> None:
    claimed_id = outbox.submit(Message(to=TO, body="claimed"))
    sending_id = outbox.submit(Message(to=TO, body="sending"))
    now = clock.time()
    assert len(outbox.store.claim("dead", 10, now, now + 30)) == 2
    assert start(outbox, "dead", [sending_id]) == {sending_id}
    clock.advance(29)
    assert outbox.store.claim("w2", 10, clock.time(), clock.time() + 30) == []
    clock.advance(2)
    taken = outbox.store.claim("w2", 10, clock.time(), clock.time() + 30)
    assert {(c.row.id, c.row.state, c.previous_owner) for c in taken} == {
        (claimed_id, State.QUEUED, "dead"),
        (sending_id, State.SENDING, "dead"),
    }
    assert finish(outbox, "dead", sending_id, State.SENT) == set()
    assert finish(outbox, "w2", sending_id, State.SENT, provider_message_id="SM1") == {sending_id}
    assert outbox.status(sending_id).status is Status.SENT


def test_expired_leases_are_taken_over_before_due_rows_fill_a_claim(
    outbox: Outbox, clock: FakeClock
) -> None:
    """A dead worker's rows are taken over at the next claim that looks for them, even when a
    backlog of due rows would fill it, in the store's claim and in the worker's async one."""
    import asyncio

    dead = [outbox.submit(Message(to=TO, body=f"dead {n}")) for n in range(2)]
    now = clock.time()
    assert len(outbox.store.claim("dead", 2, now, now + 30)) == 2
    assert start(outbox, "dead", [dead[0]]) == {dead[0]}
    backlog = [outbox.submit(Message(to=TO, body=f"backlog {n}")) for n in range(4)]
    clock.advance(31)
    now = clock.time()
    taken = outbox.store.claim("w2", 2, now, now + 30)
    assert {(c.row.id, c.previous_owner) for c in taken} == {(i, "dead") for i in dead}
    assert len(outbox.store.claim("dead2", 2, now, now + 30, take_over=False)) == 2
    clock.advance(31)

    async def claim_as_the_worker_does() -> set[tuple[str, str | None]]:
        calls = await outbox.store.open_calls()
        try:
            now = clock.time()
            claimed = await calls.claim("w3", 5, now, now + 30)
        finally:
            await calls.aclose()
        return {(c.row.id, c.previous_owner) for c in claimed}

    # every expired lease, then one due row for the room left
    assert asyncio.run(claim_as_the_worker_does()) == {
        *((i, "w2") for i in dead),
        *((i, "dead2") for i in backlog[:2]),
        (backlog[2], None),
    }


def test_renew_keeps_a_lease_and_release_gives_back_unstarted_rows(
    outbox: Outbox, clock: FakeClock
) -> None:
    ids = [outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(3)]
    now = clock.time()
    outbox.store.claim("w1", 10, now, now + 30)
    start(outbox, "w1", [ids[0]])
    clock.advance(25)
    assert outbox.store.renew("w1", ids, clock.time() + 30) == set(ids)
    assert outbox.store.renew("w2", ids, clock.time() + 30) == set()
    clock.advance(20)
    assert outbox.store.claim("w2", 10, clock.time(), clock.time() + 30) == []
    # a started row is never released: its request may be out
    assert outbox.store.release("w1", ids, clock.time()) == 2
    again = outbox.store.claim("w2", 10, clock.time(), clock.time() + 30)
    assert sorted(c.row.id for c in again) == sorted(ids[1:])


def test_finish_writes_the_state_the_fields_and_one_event(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="x"))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [message_id])
    clock.advance(1)
    assert finish(
        outbox,
        "w1",
        message_id,
        State.RETRYING,
        next_attempt_at=clock.time() + 5,
        provider="twilio",
        provider_attempt=2,
        last_error='{"error": "transient"}',
    ) == {message_id}
    record = outbox.status(message_id)
    assert (record.status, record.state, record.attempts) == (Status.QUEUED, "retrying", 1)
    assert record.last_error == {"error": "transient"}
    assert record.next_attempt_at is not None
    assert [e.to_status for e in record.events] == [Status.QUEUED, Status.SENDING, Status.QUEUED]
    assert outbox.store.claim("w1", 1, clock.time(), clock.time() + 30) == []
    clock.advance(5)
    (again,) = outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    assert (again.row.provider, again.row.provider_attempt) == ("twilio", 2)


def test_a_long_messages_part_ids_are_written_with_its_result(
    outbox: Outbox, clock: FakeClock
) -> None:
    # docs/smpp.md: a part's receipt reaching a restarted process finds the message by the
    # part's id, in whichever form the SMSC quotes it (hex answered, decimal receipted).
    long, short = (outbox.submit(Message(to=TO, body=b)) for b in ("long", "short"))
    outbox.store.claim("w1", 2, clock.time(), clock.time() + 30)
    start(outbox, "w1", [long, short], provider="smpp")
    ids = ("00FF", "100", "101")
    finish(
        outbox, "w1", long, State.SENT, provider="smpp", provider_message_id="00FF", part_ids=ids
    )
    finish(outbox, "w1", short, State.SENT, provider="smpp", provider_message_id="1A0")
    table = MessagePartTable.of(outbox.store)
    assert table.fold("smpp", ["416"], Status.DELIVERED, None) is None  # 0x1A0: not a part
    assert table.fold("other", ["255"], Status.DELIVERED, None) is None  # another provider's
    first = table.fold("smpp", ["255", "ff"], Status.DELIVERED, None)
    assert first is not None and (first.message_id, first.number) == (long, 1)
    assert [(p.part_id, p.status) for p in first.parts] == [
        ("00FF", Status.DELIVERED),
        ("100", None),
        ("101", None),
    ]
    assert not first.complete
    assert table.fold("smpp", ["0100"], None, None) == first._replace(number=2)  # not final
    table.fold("smpp", ["100"], Status.UNDELIVERED, "001")
    last = table.fold("smpp", ["101"], Status.DELIVERED, None)
    assert last is not None and last.complete
    assert [(p.status, p.error_code) for p in last.parts] == [
        (Status.DELIVERED, None),
        (Status.UNDELIVERED, "001"),
        (Status.DELIVERED, None),
    ]
    table.forget("smpp", long)
    assert table.fold("smpp", ["101"], Status.DELIVERED, None) is None


def test_one_write_skips_the_rows_its_writer_no_longer_holds(
    outbox: Outbox, clock: FakeClock
) -> None:
    sending, given_back, fresh = (outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(3))
    now = clock.time()
    outbox.store.claim("w1", 3, now, now + 30)
    assert start(outbox, "w1", [sending]) == {sending}
    assert outbox.store.release("w1", [given_back], now) == 1
    (taken,) = outbox.store.claim("w2", 3, now, now + 30)
    assert taken.row.id == given_back
    event = NewEvent(sending, now, "sending", "sent", "w1", "accepted")
    done = Transition(sending, State.SENT, event, provider="twilio", provider_message_id="SM1")
    starts = [
        StartSend(i, "twilio", 1, "default", NewEvent(i, now, "queued", "sending", "w1", "go"))
        for i in (given_back, fresh)
    ]
    assert outbox.store.write("w1", starts, [done], (), now, now + 30) == ({fresh}, {sending})
    assert outbox.status(sending).status is Status.SENT
    assert outbox.status(fresh).status is Status.SENDING
    record = outbox.status(given_back)
    assert (record.status, record.attempts) == (Status.QUEUED, 0)
    assert [e.to_status for e in record.events] == [Status.QUEUED]


def test_a_write_mixing_held_and_moved_rows_applies_each_once(
    outbox: Outbox, clock: FakeClock
) -> None:
    held, moved, fresh = (outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(3))
    now = clock.time()
    outbox.store.claim("w1", 3, now, now + 30)
    assert start(outbox, "w1", [held, moved]) == {held, moved}
    outbox.record_event(receipt(Status.DELIVERED, "e1", message_id=moved))
    clock.advance(1)
    now = clock.time()

    def outcome(message_id: str, pmid: str) -> Transition:
        event = NewEvent(message_id, now, "sending", "sent", "w1", f"accepted as {pmid}")
        return Transition(
            message_id, State.SENT, event, provider="twilio", provider_message_id=pmid
        )

    go = StartSend(
        fresh, "twilio", 1, "default", NewEvent(fresh, now, "queued", "sending", "w1", "go")
    )
    started, finished = outbox.store.write(
        "w1", [go], [outcome(held, "SM-h"), outcome(moved, "SM-m")], (), now, now + 30
    )
    assert (started, finished) == ({fresh}, {held, moved})
    assert outbox.status(fresh).status is Status.SENDING
    record = outbox.status(held)
    assert (record.status, record.provider_message_id) == (Status.SENT, "SM-h")
    assert [(e.from_status, e.to_status) for e in record.events] == [
        (None, Status.QUEUED),
        (Status.QUEUED, Status.SENDING),
        (Status.SENDING, Status.SENT),
    ]
    record = outbox.status(moved)
    assert (record.status, record.provider_message_id) == (Status.DELIVERED, "SM-m")
    assert [e.to_status for e in record.events] == [
        Status.QUEUED,
        Status.SENDING,
        Status.DELIVERED,
        Status.DELIVERED,
    ]
    assert "a receipt had already moved it to delivered" in (record.events[-1].reason or "")
    assert [e.to_status for e in outbox.status(fresh).events] == [Status.QUEUED, Status.SENDING]


# -- provider receipts ------------------------------------------------------------------------


def receipt(status: Status, event_id: str, **fields: object) -> DeliveryEvent:
    values: dict[str, object] = {"provider": "twilio", "provider_message_id": "SM1"}
    values.update(fields)
    return DeliveryEvent(
        status=status, event_id=event_id, raw={"MessageStatus": status.value}, **values
    )  # type: ignore[arg-type]


def sent(outbox: Outbox, clock: FakeClock, pmid: str = "SM1") -> str:
    message_id = outbox.submit(Message(to=TO, body="x"))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [message_id])
    finish(outbox, "w1", message_id, State.SENT, provider="twilio", provider_message_id=pmid)
    return message_id


def test_a_receipt_moves_a_message_forward_once(outbox: Outbox, clock: FakeClock) -> None:
    message_id = sent(outbox, clock)
    result = outbox.record_event(receipt(Status.DELIVERED, "e1"))
    assert (result.outcome, result.message_id) == (ReceiptOutcome.APPLIED, message_id)
    assert outbox.record_event(receipt(Status.DELIVERED, "e1")).outcome is ReceiptOutcome.DUPLICATE
    late = outbox.record_event(receipt(Status.SENT, "e0"))
    assert late.outcome is ReceiptOutcome.STALE
    record = outbox.status(message_id)
    assert record.status is Status.DELIVERED
    last_two = [(e.from_status, e.to_status, e.source) for e in record.events[-2:]]
    assert last_two == [
        (Status.SENT, Status.DELIVERED, "webhook:twilio"),
        (Status.DELIVERED, Status.DELIVERED, "webhook:twilio"),
    ]
    assert record.events[-2].raw == {"MessageStatus": "delivered"}


def test_a_receipt_never_moves_a_final_status_sideways(outbox: Outbox, clock: FakeClock) -> None:
    message_id = sent(outbox, clock)
    outbox.record_event(receipt(Status.UNDELIVERED, "e1", error_code="30003"))
    assert outbox.record_event(receipt(Status.DELIVERED, "e2")).outcome is ReceiptOutcome.STALE
    record = outbox.status(message_id)
    assert record.status is Status.UNDELIVERED
    assert "30003" in (record.events[-2].reason or "")


def test_a_receipt_can_resolve_an_unknown_message_by_our_id(
    outbox: Outbox, clock: FakeClock
) -> None:
    message_id = outbox.submit(Message(to=TO, body="x"))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [message_id])
    finish(outbox, "w1", message_id, State.UNKNOWN, provider="twilio")
    result = outbox.record_event(
        receipt(Status.SENT, "e1", provider_message_id="SM9", message_id=message_id)
    )
    assert result.outcome is ReceiptOutcome.APPLIED
    record = outbox.status(message_id)
    assert (record.status, record.provider_message_id) == (Status.SENT, "SM9")


def test_a_receipt_before_the_send_is_recorded_waits_and_is_applied_then(
    outbox: Outbox, clock: FakeClock
) -> None:
    message_id = outbox.submit(Message(to=TO, body="x"))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [message_id])
    early = outbox.record_event(receipt(Status.DELIVERED, "e1", provider_message_id="SM7"))
    assert (early.outcome, early.message_id) == (ReceiptOutcome.PENDING, None)
    assert outbox.record_event(
        receipt(Status.DELIVERED, "e1", provider_message_id="SM7")
    ).outcome is (ReceiptOutcome.DUPLICATE)
    finish(outbox, "w1", message_id, State.SENT, provider="twilio", provider_message_id="SM7")
    record = outbox.status(message_id)
    assert record.status is Status.DELIVERED
    assert [e.to_status for e in record.events] == [
        Status.QUEUED,
        Status.SENDING,
        Status.SENT,
        Status.DELIVERED,
    ]
    assert outbox.store.pending_receipts() == 0  # type: ignore[attr-defined]


def test_a_receipt_while_sending_is_kept_when_the_send_is_recorded(
    outbox: Outbox, clock: FakeClock
) -> None:
    message_id = outbox.submit(Message(to=TO, body="x"))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [message_id])
    outbox.record_event(receipt(Status.DELIVERED, "e1", message_id=message_id))
    assert finish(
        outbox, "w1", message_id, State.SENT, provider="twilio", provider_message_id="SM1"
    ) == {message_id}
    record = outbox.status(message_id)
    assert (record.status, record.provider_message_id) == (Status.DELIVERED, "SM1")
    assert "a receipt had already moved it to delivered" in (record.events[-1].reason or "")
    assert record.state == "delivered"
    # the lease is gone: nobody will take the message over
    clock.advance(100)
    assert outbox.store.claim("w2", 10, clock.time(), clock.time() + 30) == []


# -- shared rate-limit buckets ----------------------------------------------------------------


def test_buckets_are_shared_between_outbox_objects(
    open_outbox: Callable[..., Outbox], clock: FakeClock
) -> None:
    from smsgate.ratelimit import BucketSpec

    one, two = open_outbox(), open_outbox()
    spec = BucketSpec("provider:twilio", rate=10.0, burst=5)
    now = clock.time()
    assert one.store.take_tokens([spec], 3, now) == 0.0
    assert two.store.take_tokens([spec], 2, now) == 0.0
    assert two.store.take_tokens([spec], 1, now) == pytest.approx(0.1)
    clock.advance(0.1)
    assert one.store.take_tokens([spec], 1, clock.time()) == 0.0
    one.store.penalize_bucket(spec, 2.0, clock.time())
    assert two.store.take_tokens([spec], 1, clock.time()) == pytest.approx(2.1)
    clock.advance(2.1)
    assert two.store.take_tokens([spec], 1, clock.time()) == 0.0


def test_take_up_to_grants_what_every_bucket_holds_from_one_token_on(
    open_outbox: Callable[..., Outbox], clock: FakeClock
) -> None:
    from smsgate.ratelimit import BucketSpec

    one, two = open_outbox(), open_outbox()
    provider = BucketSpec("provider:twilio", rate=10.0, burst=5)
    sender = BucketSpec("sender:twilio:+15017122661", rate=20.0, burst=3)
    now = clock.time()
    # the smaller bucket caps the grant; the other keeps what was not taken
    assert one.store.take_tokens_up_to([provider, sender], 8, now) == (3, 0.0)
    assert two.store.take_tokens_up_to([provider], 8, now) == (2, 0.0)
    granted, wait = one.store.take_tokens_up_to([provider, sender], 8, now)
    assert granted == 0 and wait == pytest.approx(0.1)  # one provider token away
    clock.advance(0.25)
    assert two.store.take_tokens_up_to([provider, sender], 8, clock.time()) == (2, 0.0)
    assert two.store.take_tokens_up_to([], 8, clock.time()) == (8, 0.0)


def test_counts_group_internal_states_under_public_statuses(
    outbox: Outbox, clock: FakeClock
) -> None:
    a = outbox.submit(Message(to=TO, body="a"))
    outbox.submit(Message(to=TO, body="b", send_at=at(clock, 10)))
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    start(outbox, "w1", [a])
    finish(outbox, "w1", a, State.RETRYING, next_attempt_at=clock.time() + 1)
    assert outbox.counts() == {Status.QUEUED: 1, Status.SCHEDULED: 1}
    assert outbox.store.counts() == {State.RETRYING: 1, State.SCHEDULED: 1}


def test_work_left_reports_the_next_due_time_and_leases(outbox: Outbox, clock: FakeClock) -> None:
    assert outbox.store.work_left() == (None, None)
    outbox.submit(Message(to=TO, body="b", send_at=at(clock, 10)))
    due, leased = outbox.store.work_left()
    assert due == pytest.approx(clock.time() + 10) and leased is None
    clock.advance(10)
    outbox.store.claim("w1", 1, clock.time(), clock.time() + 30)
    assert outbox.store.work_left() == (None, pytest.approx(clock.time() + 30))


def test_history_survives_time_and_is_never_rewritten(outbox: Outbox, clock: FakeClock) -> None:
    message_id = outbox.submit(Message(to=TO, body="x", send_at=at(clock, 5)))
    first = outbox.status(message_id).events
    clock.advance(timedelta(seconds=10).total_seconds())
    outbox.cancel(message_id)
    after = outbox.status(message_id).events
    assert after[: len(first)] == first
    assert [e.id for e in after] == sorted(e.id for e in after)


# -- engine-specific: the statements stay cheap -----------------------------------------------


def test_sqlite_lists_uncommon_statuses_through_the_partial_index(tmp_path: Path) -> None:
    with (
        Outbox(sqlite_url(tmp_path), migrate=True) as outbox,
        outbox.store._read() as tx,  # type: ignore[attr-defined]
    ):
        plan = tx.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM smsgate_messages "
            f"WHERE state = 'failed' AND ({INDEXED_PREDICATE}) ORDER BY id DESC"
        )
    assert any("INDEX smsgate_messages_state" in row[3] for row in plan), plan


def test_a_sqlite_claim_leaves_the_sync_setting_as_configured(tmp_path: Path) -> None:
    with Outbox(sqlite_url(tmp_path), migrate=True) as outbox:
        message_id = outbox.submit(Message(to=TO, body="x"))
        (claimed,) = outbox.store.claim("w1", 5, outbox.clock.time(), outbox.clock.time() + 30)
        assert claimed.row.id == message_id
        with outbox.store._read() as tx:  # type: ignore[attr-defined]
            assert tx.execute("PRAGMA synchronous") == [(2,)]  # FULL
            assert tx.execute("SELECT lease_owner FROM smsgate_messages") == [("w1",)]


@pytest.mark.postgres
def test_postgresql_claims_and_writes_look_rows_up_by_key(postgres_url: str) -> None:
    """Each statement finds the rows it updates (``m``) by primary key, whatever the table's
    statistics say (a fresh table has none): joined to a list of ids, the planner may hash
    the whole table for every batch."""
    from smsgate.outbox import postgres
    from smsgate.outbox.leasequeue import MESSAGES

    with Outbox(postgres_url, migrate=True) as outbox:
        outbox.submit_many({"to": TO, "body": f"m{n}"} for n in range(20_000))
        now = outbox.clock.time()
        claimed = outbox.store.claim("w1", 50, now, now + 30)
        ids = [c.row.id for c in claimed]
        starts = [
            StartSend(i, "twilio", 1, "default", NewEvent(i, now, "queued", "sending", "w1", "go"))
            for i in ids[:25]
        ]
        outcomes = [
            Transition(i, State.SENT, NewEvent(i, now, "sending", "sent", "w1", "ok"))
            for i in ids[25:]
        ]
        queue = postgres.PgLeaseQueue(MESSAGES)
        statements = [
            (queue.claim_due_sql, queue.claim_due_params("w2", 200, now, now + 30)),
            (queue.take_over_sql, queue.take_over_params("w2", 200, now, now + 30)),
            (queue.drop_stale_all_sql, queue.drop_stale_all_params(now)),
            (postgres._FAST_WRITE, postgres._fast_write_params("w1", starts, outcomes, now)),
        ]
        with outbox.store._read() as tx:  # type: ignore[attr-defined]
            for sql, params in statements:
                plan = "\n".join(row[0] for row in tx.execute("EXPLAIN " + sql, params))
                assert not re.search(r"Seq Scan on smsgate_messages m(_\d+)?\b", plan), plan


@pytest.mark.postgres
def test_postgresql_loop_calls_claim_take_over_and_write_as_the_store_does(
    postgres_url: str,
) -> None:
    """The worker's claims and group commits on its event loop (PgLoopCalls): due rows are
    claimed once, expired leases are taken over only when asked, and a write starts and
    finishes what its writer holds, leaves the rest to the general path (a row a receipt moved
    meanwhile, releases) and skips what it no longer holds."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from smsgate.outbox.postgres import PostgresStore

    clock = FakeClock()
    with Outbox(postgres_url, clock=clock, migrate=True) as outbox:
        store = outbox.store
        assert isinstance(store, PostgresStore)
        held, moved, fresh, given_back, orphan = (
            outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(5)
        )

        def outcome(message_id: str, pmid: str, now: float) -> Transition:
            event = NewEvent(message_id, now, "sending", "sent", "w1", f"accepted as {pmid}")
            return Transition(
                message_id, State.SENT, event, provider="twilio", provider_message_id=pmid
            )

        def go(message_id: str, owner: str, now: float) -> StartSend:
            event = NewEvent(message_id, now, "queued", "sending", owner, "go")
            return StartSend(message_id, "twilio", 1, "default", event)

        async def scenario() -> None:
            with ThreadPoolExecutor(2) as executor:
                calls = await store.open_loop_calls(executor, 2)
                assert calls is not None
                try:
                    now = clock.time()
                    first = await calls.claim("w1", 4, now, now + 30, take_over=False)
                    assert [c.row.id for c in first] == sorted([held, moved, fresh, given_back])
                    assert {c.row.lease_owner for c in first} == {"w1"}
                    (second,) = await calls.claim("dead", 4, now, now + 30, take_over=False)
                    assert (second.row.id, second.previous_owner) == (orphan, None)
                    assert await calls.claim("w2", 4, now, now + 30) == []
                    started, finished = await calls.write(
                        "w1", [go(held, "w1", now), go(moved, "w1", now)], [], [], now, now + 30
                    )
                    assert (started, finished) == ({held, moved}, set())
                    outbox.record_event(receipt(Status.DELIVERED, "e1", message_id=moved))
                    clock.advance(1)
                    now = clock.time()
                    started, finished = await calls.write(
                        "w1",
                        [go(fresh, "w1", now), go(orphan, "w1", now)],
                        [outcome(held, "SM-h", now), outcome(moved, "SM-m", now)],
                        [given_back],
                        now,
                        now + 30,
                    )
                    # orphan is dead's: not started by w1; moved is finished the general way
                    assert (started, finished) == ({fresh}, {held, moved})
                    # releases alone take the general path too
                    assert await calls.write("w1", [], [], [], now, now + 30) == (set(), set())
                    (again,) = await calls.claim("w2", 4, now, now + 30, take_over=False)
                    assert (again.row.id, again.previous_owner) == (given_back, None)
                    # the leases of dead and w1 run out (not w2's, a second younger): taken
                    # over only by a claim that looks for them
                    clock.advance(30)
                    now = clock.time()
                    assert await calls.claim("w3", 4, now, now + 30, take_over=False) == []
                    taken = await calls.claim("w3", 4, now, now + 30)
                    assert {(c.row.id, c.row.state, c.previous_owner) for c in taken} == {
                        (orphan, State.QUEUED, "dead"),
                        (fresh, State.SENDING, "w1"),
                    }
                finally:
                    await calls.aclose()

        asyncio.run(scenario())
        assert outbox.status(held).status is Status.SENT
        assert outbox.status(fresh).status is Status.SENDING
        record = outbox.status(moved)
        assert (record.status, record.provider_message_id) == (Status.DELIVERED, "SM-m")
        assert "a receipt had already moved it to delivered" in (record.events[-1].reason or "")
        assert [e.to_status for e in outbox.status(orphan).events] == [Status.QUEUED]
        assert [e.to_status for e in outbox.status(given_back).events] == [Status.QUEUED]


@pytest.mark.postgres
def test_postgresql_claims_on_the_loop_do_not_wait_for_the_disk_and_writes_do(
    postgres_url: str,
) -> None:
    """A claim lost in a crash only leaves its rows due again (nothing is sent before a start
    is written, and that commit waits for the disk, claim included): its commit need not wait.
    The crash-safety mark and the outcomes must."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from smsgate.outbox.postgres import PostgresStore

    async def settings(store: PostgresStore) -> tuple[str, str]:
        with ThreadPoolExecutor(1) as executor:
            calls = await store.open_loop_calls(executor, 2)
            assert calls is not None
            try:
                async with calls._claims.connection() as conn:
                    claims = await (await conn.execute("SHOW synchronous_commit")).fetchone()
                async with calls._pool.connection() as conn:
                    writes = await (await conn.execute("SHOW synchronous_commit")).fetchone()
            finally:
                await calls.aclose()
        assert claims is not None and writes is not None
        return claims[0], writes[0]

    with Outbox(postgres_url, migrate=True) as outbox:
        assert isinstance(outbox.store, PostgresStore)
        assert asyncio.run(settings(outbox.store)) == ("off", "on")


def test_closing_a_sqlite_store_waits_for_a_write_under_way_on_another_thread(
    tmp_path: Path,
) -> None:
    # Closing a connection while another thread is inside one of its calls crashes the
    # interpreter (seen at server shutdown): close() must let the write finish first.
    outbox = Outbox(sqlite_url(tmp_path), migrate=True)
    store = outbox.store
    inside, release, closed = threading.Event(), threading.Event(), threading.Event()
    wrote: list[str] = []

    def write() -> None:
        with store._write() as tx:  # type: ignore[attr-defined]
            tx.execute("CREATE TABLE held (n INTEGER)")
            inside.set()
            release.wait(10)
            tx.execute("INSERT INTO held VALUES (1)")
        wrote.append("committed")

    def close() -> None:
        outbox.close()
        closed.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(10)
    closer = threading.Thread(target=close)
    closer.start()
    assert not closed.wait(0.2), "close() did not wait for the write under way"
    release.set()
    writer.join(10)
    closer.join(10)
    assert wrote == ["committed"] and closed.is_set()
    with pytest.raises(RuntimeError, match="store is closed"), store._write():  # type: ignore[attr-defined]
        pass


def test_a_receipt_look_up_a_dead_worker_held_is_due_again(
    outbox: Outbox, clock: FakeClock
) -> None:
    message_id = outbox.submit(Message(to=TO, body="x"))
    now = clock.time()
    outbox.store.claim("w1", 1, now, now + 30)
    start(outbox, "w1", [message_id])
    finish(outbox, "w1", message_id, State.SENT, provider="twilio", next_attempt_at=now + 60)
    assert outbox.store.work_left() == (None, None)  # waiting for a receipt is not work
    clock.advance(61)
    now = clock.time()
    (looking,) = outbox.store.claim("dead", 1, now, now + 30)  # its look-up is due
    assert looking.row.state is State.SENT
    clock.advance(31)  # "dead" died looking it up: its lease runs out
    now = clock.time()
    # the claim drops the stale lease before it looks for due rows: the look-up is due again
    (again,) = outbox.store.claim("w2", 1, now, now + 30)
    assert (again.row.id, again.row.state) == (message_id, State.SENT)
