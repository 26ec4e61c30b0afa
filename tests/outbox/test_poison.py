"""Inputs that used to poison the store, through the library, on both engines: each is refused
with an error naming the field, and afterwards every read and the worker still work. A row that
does not decode (written by hand or an older version) reads back and is quarantined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from smsgate.clock import SYSTEM_CLOCK
from smsgate.emulators.base import EmulatorThread
from smsgate.errors import InvalidMessage
from smsgate.message import Message, Status
from smsgate.outbox import MessageNotFound, Outbox
from smsgate.outbox.store import NewEvent, NewMessageRow
from smsgate.providers import create_provider
from smsgate.routing import CircuitBreakers, Route, Router
from tests.outbox.conftest import emulated

TO = "+15555550100"
YEAR_ONE = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))

#: (field, values) that each must be refused when a message is built or submitted
POISON: list[tuple[str, dict[str, Any]]] = [
    ("send_at", {"send_at": YEAR_ONE}),
    ("send_at", {"send_at": datetime(2200, 1, 1, tzinfo=UTC)}),
    ("body", {"body": "a\udcff\udcfeb"}),  # printf 'a\xff\xfeb' read with surrogateescape
    ("body", {"body": "a\x00b"}),
    ("metadata.note", {"metadata": {"note": "x\ud800"}}),
    ("metadata.note", {"metadata": {"note": "x\x00"}}),
    ("metadata", {"metadata": {"k\x00": 1}}),
    ("metadata.n", {"metadata": {"n": float("nan")}}),
    ("sender", {"sender": "Acme\udcff"}),
    ("idempotency_key", {"idempotency_key": "k\x00"}),
    ("media", {"media": ["https://example.com/\udcff.png"]}),
    ("id", {"id": "msg_\x00x"}),
]


@pytest.fixture
def box(store_url: str) -> Iterator[Outbox]:
    outbox = Outbox(store_url, clock=SYSTEM_CLOCK, migrate=True)
    yield outbox
    outbox.close()


def reads_still_work(box: Outbox) -> None:
    page = box.list(limit=1000)
    for item in page.items:
        box.status(item.id)
    box.counts()


@pytest.mark.parametrize(("field", "values"), POISON, ids=[f for f, _ in POISON])
def test_each_poison_is_refused_naming_its_field(
    box: Outbox, field: str, values: dict[str, Any]
) -> None:
    with pytest.raises(InvalidMessage) as built:
        Message(**{"to": TO, "body": "hi", **values})
    assert built.value.field == field
    # the same values as a mapping (the bulk and API path, fast or not) are one refused item
    report = box.submit_many([{"to": TO, "body": "hi", **values}, {"to": TO, "body": "fine"}])
    assert (report.accepted, report.rejected) == (1, 1)
    error = report.errors[0].error
    assert isinstance(error, InvalidMessage) and error.field == field
    reads_still_work(box)
    assert [item.body for item in box.list().items] == ["fine"]


def test_a_send_at_in_the_past_within_the_window_sends_now(box: Outbox) -> None:
    mid = box.submit(Message(to=TO, body="late", send_at=datetime(2001, 1, 1, tzinfo=UTC)))
    assert box.status(mid).status is Status.QUEUED


@pytest.mark.parametrize("bad", ["msg_\x00x", "x" * 101, "msg x", "", "msg_\udcff"])
def test_malformed_ids_and_cursors_are_not_found_without_a_query(box: Outbox, bad: str) -> None:
    with pytest.raises(MessageNotFound):
        box.status(bad)
    with pytest.raises(MessageNotFound):
        box.cancel(bad)
    assert box.get(bad) is None
    with pytest.raises(InvalidMessage) as error:
        box.list(cursor=bad)
    assert error.value.field == "cursor"


def corrupt(box: Outbox, message_id: str, payload: str, send_at: float | None) -> None:
    """Store a row that skipped validation, as an older version or a hand edit would have."""
    now = SYSTEM_CLOCK.time()
    row = NewMessageRow(
        message_id, "queued", "transactional", TO, None, None, payload, send_at, None, now, now
    )
    with box.store.inserter(atomic=True) as inserter:
        inserter.insert([row], [NewEvent(message_id, now, None, "queued", "test", "by hand")])


def test_an_unreadable_row_reads_back_and_the_worker_quarantines_it(
    box: Outbox, twilio: EmulatorThread
) -> None:
    corrupt(box, "msg_year_zero", '{"body":"x"}', -62_167_219_200.0 - 86_400)
    corrupt(box, "msg_not_json", "{not json", None)
    good = box.submit(Message(to=TO, body="still sent"))
    listed = {item.id: item for item in box.list().items}
    assert set(listed) == {"msg_year_zero", "msg_not_json", good}
    assert listed["msg_year_zero"].send_at is None
    assert listed["msg_year_zero"].last_error["error"] == "unreadable_row"  # type: ignore[index]
    assert box.status("msg_not_json").body == ""

    provider = create_provider(emulated(twilio).provider_url(), name="twilio")
    router = Router([Route(name="default", providers=("twilio",))], CircuitBreakers())

    async def main() -> None:
        worker = box.worker([provider], router=router, poll_interval=0.05)
        try:
            await worker.run(until_idle=True)
        finally:
            await provider.aclose()

    asyncio.run(main())
    assert box.status(good).status is Status.SENT
    for bad in ("msg_year_zero", "msg_not_json"):
        record = box.status(bad)
        assert record.status is Status.FAILED
        assert "cannot be read back" in (record.events[-1].reason or "")
    assert box.store.work_left() == (None, None)
    reads_still_work(box)
