"""submit_many: validation before storing, per-item errors, whole batches, streaming."""

from __future__ import annotations

import csv
import multiprocessing
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smsgate.errors import InvalidMessage, InvalidRecipient, OptedOut
from smsgate.message import Message, Status
from smsgate.outbox import Outbox, SubmitOutcome
from smsgate.outbox.bulk import BulkOptions, submit_csv


def mixed() -> list[Any]:
    return [
        {"to": "+15555550100", "body": "ok 0"},
        {"to": "+1 555", "body": "short number"},
        Message(to="+15555550101", body="ok 2"),
        {"to": "+15555550102", "body": ""},
        {"to": "+15555550103", "body": "x" * 1601},
        {"to": "+15555550104", "body": "ok 5", "idempotency_key": "k5"},
        {"to": "+15555550105", "body": "bad purpose", "purpose": "spam"},
        "not a message",
        {"to": "+15555550106", "body": "ok 8", "idempotency_key": "k5"},
        {"to": "+15555550107", "body": "unknown field", "priority": 1},
    ]


def test_mixed_rows_store_the_valid_ones_and_name_each_refusal(outbox: Outbox) -> None:
    seen: list[SubmitOutcome] = []
    report = outbox.submit_many(mixed(), batch_size=3, on_outcome=seen.append)
    assert (report.total, report.accepted, report.duplicates, report.rejected) == (10, 3, 1, 6)
    assert [o.index for o in seen] == list(range(10))
    fields = {o.index: o.error.field for o in report.errors if o.error is not None}
    assert fields == {1: "to", 3: "body", 4: "body", 6: "purpose", 7: "item", 9: "priority"}
    assert isinstance(report.errors[0].error, InvalidRecipient)
    assert report.errors[0].to == "+1 555"
    assert "1601 characters" in str(report.errors[2].error)
    assert seen[8].id == seen[5].id and seen[8].created is False
    assert outbox.counts() == {Status.QUEUED: 3}
    assert report.to_dict()["errors"][0]["error"]["field"] == "to"


def test_atomic_stores_nothing_when_anything_is_refused(outbox: Outbox) -> None:
    report = outbox.submit_many(mixed(), batch_size=3, atomic=True)
    assert not report.committed and report.accepted == 0 and report.rejected == 6
    assert outbox.counts() == {}
    good = [{"to": f"+1555555{n:04d}", "body": f"m{n}"} for n in range(7)]
    report = outbox.submit_many(good, batch_size=3, atomic=True)
    assert report.committed and report.accepted == 7
    assert outbox.counts() == {Status.QUEUED: 7}


def test_a_failure_mid_stream_leaves_whole_batches_only(outbox: Outbox) -> None:
    def items() -> Iterator[dict[str, str]]:
        for n in range(250):
            if n == 230:
                raise RuntimeError("the source broke")
            yield {"to": f"+1555555{n:04d}", "body": f"m{n}", "idempotency_key": f"row-{n}"}

    with pytest.raises(RuntimeError, match="the source broke"):
        outbox.submit_many(items(), batch_size=100)
    assert outbox.counts() == {Status.QUEUED: 200}
    # submitting the whole source again with the same keys stores only what is missing
    again = [
        {"to": f"+1555555{n:04d}", "body": f"m{n}", "idempotency_key": f"row-{n}"}
        for n in range(250)
    ]
    report = outbox.submit_many(again, batch_size=100)
    assert (report.accepted, report.duplicates) == (50, 200)


def test_submit_many_streams_without_holding_the_items(outbox: Outbox) -> None:
    def items(count: int) -> Iterator[dict[str, str]]:
        for n in range(count):
            yield {"to": f"+1555{n:07d}", "body": f"Hello number {n}, this is a bulk message."}

    tracemalloc.start()
    try:
        report = outbox.submit_many(items(20_000), batch_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.accepted == 20_000
    # one batch of 500 rows is well under 3 MB; 20,000 held rows would be far over it
    assert peak < 3_000_000, peak


def test_submit_stream_yields_outcomes_in_order(outbox: Outbox) -> None:
    outcomes = list(outbox.submit_stream(mixed()[:4], batch_size=2))
    assert [(o.index, o.ok) for o in outcomes] == [(0, True), (1, False), (2, True), (3, False)]
    assert outcomes[0].created and outcomes[0].id and outcomes[0].id.startswith("msg_")


def test_scheduled_items_through_the_fast_path(outbox: Outbox) -> None:
    from datetime import UTC, datetime, timedelta

    later = datetime.fromtimestamp(outbox.clock.time(), UTC) + timedelta(hours=1)
    report = outbox.submit_many(
        [
            {"to": "+15555550100", "body": "later", "send_at": later},
            {"to": "+15555550101", "body": "naive", "send_at": later.replace(tzinfo=None)},
        ]
    )
    assert report.accepted == 1
    assert report.errors[0].error is not None and report.errors[0].error.field == "send_at"
    assert outbox.counts() == {Status.SCHEDULED: 1}


def _submit_in_process(url: str, key: str, barrier: Any, results: Any) -> None:
    with Outbox(url) as outbox:
        barrier.wait()
        results.put(outbox.submit({"to": "+15555550100", "body": "once", "idempotency_key": key}))


def test_concurrent_submits_of_one_key_from_processes_store_one_message(store_url: str) -> None:
    Outbox(store_url, migrate=True).close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    procs = [
        context.Process(target=_submit_in_process, args=(store_url, "same-key", barrier, results))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    ids = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert len(set(ids)) == 1
    with Outbox(store_url) as outbox:
        assert outbox.counts() == {Status.QUEUED: 1}
        assert len(outbox.status(ids[0]).events) == 1


def test_bad_batch_size_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        list(outbox.submit_stream([], batch_size=0))
    with pytest.raises(InvalidMessage):
        outbox.submit(42)  # type: ignore[arg-type]


def suppress(outbox: Outbox, recipient: str, our_number: str) -> None:
    """A STOP from ``recipient`` to ``our_number`` (``*``: STOPALL), as the server records it."""
    from smsgate.outbox.tables.server import ServerStore, Suppression

    ServerStore.of(outbox.store).add_suppression(
        Suppression(recipient, our_number, "keyword", "STOP", None, 1.0)
    )


def test_every_submit_refuses_recipients_who_opted_out(outbox: Outbox) -> None:
    suppress(outbox, "+15555550100", "+15005550006")
    suppress(outbox, "+15555550101", "*")
    blocked = {"to": "+1 555 555 0100", "body": "hi", "sender": "+1 500 555 0006"}
    for purpose in ("transactional", "marketing", "otp"):
        with pytest.raises(OptedOut) as refused:
            outbox.submit({**blocked, "purpose": purpose})
        assert refused.value.field == "to" and "from +15005550006" in refused.value.message
    with pytest.raises(OptedOut):
        outbox.submit(Message(to="+15555550101", body="hi", sender="Acme"))
    # the STOP was to one number of ours: another may still write, and a message without a
    # sender (from the provider's default number) may not
    outbox.submit({**blocked, "sender": "+15005550007"})
    with pytest.raises(OptedOut, match="from our numbers"):
        outbox.submit({"to": "+15555550100", "body": "hi"})
    # the confirmation of the opt-out itself
    confirmation = outbox.submit({**blocked, "body": "You are unsubscribed."}, check_opt_outs=False)
    items = [
        {"to": "+15555550102", "body": "ok"},
        blocked,
        {"to": "+15555550101", "body": "stopped all", "sender": "Acme"},
        {"to": "+15555550103", "body": "ok", "sender": "+15005550006"},
    ]
    report = outbox.submit_many(items, batch_size=3)
    assert (report.accepted, report.rejected) == (2, 2)
    assert [(o.index, o.to, o.error.kind) for o in report.errors if o.error] == [
        (1, "+15555550100", "opted_out"),
        (2, "+15555550101", "opted_out"),
    ]
    atomic = outbox.submit_many([{"to": "+15555550104", "body": "ok"}, blocked], atomic=True)
    assert not atomic.committed and atomic.rejected == 1
    stored = {m.to for m in outbox.list().items}
    assert stored == {"+15555550100", "+15555550102", "+15555550103"}
    assert outbox.get(confirmation) is not None


def test_otp_may_be_let_through(open_outbox: Any) -> None:
    lenient = open_outbox(otp_honors_opt_outs=False)
    suppress(lenient, "+15555550100", "*")
    code = {"to": "+15555550100", "body": "Your code is 123456", "purpose": "otp"}
    assert lenient.submit(code)
    with pytest.raises(OptedOut):
        lenient.submit({**code, "purpose": "transactional"})
    with pytest.raises(OptedOut):
        open_outbox().submit(code)


def test_a_message_sent_again_after_its_recipient_opted_out_is_the_stored_one(
    outbox: Outbox,
) -> None:
    order = {"to": "+15555550100", "body": "Your order shipped", "idempotency_key": "order-42"}
    first = outbox.submit(order)
    message = Message(to="+15555550100", body="Your code is 123456", purpose="otp")
    by_id = outbox.submit(message)
    suppress(outbox, "+15555550100", "*")
    # the same key (or the same message) again is the stored message, not a refusal
    assert outbox.submit(order) == first
    assert outbox.submit(message) == by_id == message.id
    with pytest.raises(OptedOut):
        outbox.submit({**order, "idempotency_key": "order-43"})
    items = [
        order,
        {**order, "idempotency_key": "order-44"},
        {"to": "+15555550101", "body": "ok", "idempotency_key": "order-45"},
        message,
        # a key first seen in this batch, for a recipient who may still be written to, then
        # again for one who may not: the second is the first message, not a refusal
        {"to": "+15555550102", "body": "ok", "idempotency_key": "order-46"},
        {**order, "idempotency_key": "order-46"},
    ]
    report = outbox.submit_many(items, batch_size=4)
    assert (report.accepted, report.duplicates, report.rejected) == (2, 3, 1)
    outcomes = list(outbox.submit_stream(items))
    assert [(o.id, o.created) for o in outcomes[:4:3]] == [(first, False), (by_id, False)]
    assert outcomes[1].error is not None and outcomes[1].error.kind == "opted_out"
    assert outcomes[5].id == outcomes[4].id
    atomic = outbox.submit_many([order, message], atomic=True)
    assert atomic.committed and (atomic.accepted, atomic.duplicates) == (0, 2)
    assert len(outbox.list().items) == 4


def test_a_bulk_file_run_again_after_a_stop_stores_nothing_and_refuses_only_new_rows(
    outbox: Outbox, tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("phone,name\n+15555550101,Ann\n+15555550102,Bob\n", encoding="utf-8")
    options = BulkOptions.build(str(source), body="Hi {name}", key_prefix="spring")
    first = submit_csv(outbox, options, parallel=False)
    assert (first.accepted, first.rejected) == (2, 0)
    suppress(outbox, "+15555550101", "*")
    again = submit_csv(outbox, options, parallel=False)
    assert (again.total, again.accepted, again.duplicates, again.rejected) == (2, 0, 2, 0)
    assert again.rejects_file is None and not Path(options.rejects).exists()
    # a row added for them since is refused; the rows stored before are still theirs
    with source.open("a", encoding="utf-8") as handle:
        handle.write("+15555550101,Ann again\n+15555550103,Cy\n")
    longer = BulkOptions.build(str(source), body="Hi {name}", key_prefix="spring")
    third = submit_csv(outbox, longer, parallel=False)
    assert (third.accepted, third.duplicates, third.rejected) == (1, 2, 1)
    rejects = list(csv.reader(Path(longer.rejects).read_text(encoding="utf-8").splitlines()))
    assert [(r[0], r[2], r[3]) for r in rejects[1:]] == [("+15555550101", "4", "to")]
    assert sorted(m.to for m in outbox.list().items) == [
        "+15555550101",
        "+15555550102",
        "+15555550103",
    ]
