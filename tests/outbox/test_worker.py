"""The worker against the Twilio emulator over real loopback HTTP, on both engines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from smsgate.clock import SYSTEM_CLOCK, FakeClock
from smsgate.emulators.base import EmulatorThread
from smsgate.message import Message, Purpose, SendResult, Status
from smsgate.outbox import Outbox
from smsgate.outbox.worker import ReceiptTimeout, Worker, WorkerStats
from smsgate.providers import create_provider
from smsgate.providers.base import Provider, WebhookRequest
from smsgate.retry import RetryPolicy
from smsgate.routing import CircuitBreakers, Route, Router
from tests.outbox.conftest import emulated
from tests.support.webhooks import WebhookReceiver

FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.02, max_delay=0.2)


@pytest.fixture
def box(store_url: str) -> Iterator[Outbox]:
    outbox = Outbox(store_url, clock=SYSTEM_CLOCK, migrate=True)
    yield outbox
    outbox.close()


def provider_for(thread: EmulatorThread, name: str = "twilio", **options: str) -> Provider:
    url = emulated(thread).provider_url()
    extra = "".join(f"&{key}={value}" for key, value in options.items())
    return create_provider(url + extra, name=name)


def router(*providers: str, **route: Any) -> Router:
    route.setdefault("retry", FAST_RETRY)
    return Router(
        [Route(name="default", providers=providers, **route)],
        CircuitBreakers(failure_threshold=25, cooldown=0.3),
    )


def work(box: Outbox, providers: list[Provider], **options: Any) -> WorkerStats:
    options.setdefault("router", router(*(p.name for p in providers)))
    options.setdefault("poll_interval", 0.05)

    async def main() -> WorkerStats:
        worker = box.worker(providers, **options)
        try:
            return await worker.run(until_idle=True)
        finally:
            for provider in providers:
                await provider.aclose()

    return asyncio.run(main())


def history(box: Outbox, message_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (None if e.from_status is None else e.from_status.value, e.to_status.value, e.reason or "")
        for e in box.status(message_id).events
    ]


def test_sends_everything_and_records_each_step(box: Outbox, twilio: EmulatorThread) -> None:
    ids = [box.submit(Message(to=f"+1555555{n:04d}", body=f"hello {n}")) for n in range(25)]
    invalid = box.submit(Message(to="+15005550001", body="to a bad number"))
    opted_out = box.submit(Message(to="+15005550004", body="to someone who said STOP"))
    soon = datetime.now(UTC) + timedelta(seconds=0.6)
    scheduled = box.submit(Message(to="+15555550999", body="later", send_at=soon))
    stats = work(box, [provider_for(twilio)], concurrency=8)
    assert stats.sent == 26 and stats.failed == 2
    for message_id in [*ids, scheduled]:
        record = box.status(message_id)
        assert record.status is Status.SENT
        assert record.provider_message_id and record.provider_message_id.startswith("SM")
        assert [e.to_status for e in record.events] == [
            Status.SCHEDULED if message_id == scheduled else Status.QUEUED,
            Status.SENDING,
            Status.SENT,
        ]
    sending_at = box.status(scheduled).events[1].at
    assert sending_at >= soon
    assert box.status(invalid).last_error["error"] == "invalid_recipient"  # type: ignore[index]
    assert box.status(opted_out).last_error["error"] == "opted_out"  # type: ignore[index]
    assert "recipient or the message is at fault" in history(box, opted_out)[-1][2]
    accepted = twilio.call(lambda: [(m.to, m.body, m.duplicate) for m in emulated(twilio).messages])
    assert len(accepted) == 26
    assert not any(duplicate for _, _, duplicate in accepted)
    assert box.store.work_left() == (None, None)


def test_the_history_keeps_the_providers_response_as_it_was_sent(
    box: Outbox, twilio: EmulatorThread
) -> None:
    message_id = box.submit(Message(to="+15555550100", body="keep the raw answer"))
    work(box, [provider_for(twilio)])
    with box.store._read() as tx:  # type: ignore[attr-defined]
        (raw,) = tx.execute(
            "SELECT raw FROM smsgate_events WHERE message_id = ? AND to_status = 'sent'",
            (message_id,),
        )[0]
    # The emulator answers as aiohttp writes JSON (", " and ": "); a re-encoding would be compact.
    assert '", "' in raw and '": "' in raw
    sent = box.status(message_id).events[-1]
    assert sent.raw["sid"] == box.status(message_id).provider_message_id  # type: ignore[index]


def test_faults_end_final_with_no_unexplained_duplicate(
    box: Outbox, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    twilio.call(
        lambda: emulator.faults.update(
            {
                "error_rate": 0.10,
                "rate_limit_rate": 0.05,
                "retry_after": 0.1,
                "hang_rate": 0.02,
                "hang_seconds": 1.2,
                "reset_rate": 0.03,
            }
        )
    )
    count = 240
    ids = [box.submit(Message(to=f"+1555556{n:04d}", body=f"fault test {n}")) for n in range(count)]
    stats = work(box, [provider_for(twilio, timeout="0.4")], concurrency=24)
    statuses = {box.status(i).status for i in ids}
    assert statuses <= {Status.SENT, Status.UNKNOWN}, statuses
    received = twilio.call(lambda: [(m.body, m.duplicate) for m in emulator.messages])
    bodies = [body for body, _ in received]
    duplicates = [body for body, duplicate in received if duplicate]
    may_repeat = {
        box.status(i).body
        for i in ids
        if any("may arrive twice" in r for _, _, r in history(box, i))
    }
    assert set(duplicates) <= may_repeat
    assert duplicates == []  # Twilio can be looked up: ambiguous sends are reconciled
    for message_id in ids:
        record = box.status(message_id)
        if record.status is Status.SENT:
            assert bodies.count(record.body) == 1
        else:
            assert "status unknown until a receipt arrives" in history(box, message_id)[-1][2]
    # the faults really happened and were handled the way the policies say
    assert stats.retried > 10
    assert stats.reconciling > 0 and stats.reconciled > 0
    reasons = " ".join(r for i in ids for _, _, r in history(box, i))
    assert "the ambiguous send did arrive, so it is not sent again" in reasons
    assert "throttling" in reasons and "unavailable" in reasons


def test_fails_over_when_a_provider_refuses_our_credentials(
    box: Outbox, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    good = provider_for(twilio, name="backup")
    bad_url = emulator.provider_url().replace(":emulator-auth-token@", ":wrong-token@")
    bad = create_provider(bad_url, name="primary")
    ids = [box.submit(Message(to=f"+1555557{n:04d}", body=f"failover {n}")) for n in range(30)]
    route = router("primary", "backup")
    stats = work(box, [bad, good], router=route, concurrency=1)
    assert stats.sent == 30
    for message_id in ids:
        record = box.status(message_id)
        assert (record.status, record.provider) == (Status.SENT, "backup")
    first = history(box, ids[0])
    assert any("failing over to backup" in reason for _, _, reason in first)
    assert any("auth" in reason for _, _, reason in first)
    # after a few auth errors the breaker opens and later messages skip the primary at once
    assert route.breakers["primary"].consecutive_failures >= 1
    last = history(box, ids[-1])
    assert any("circuit open for primary" in reason for _, _, reason in last)
    assert twilio.call(lambda: len(emulator.messages)) == 30


def test_shared_rate_limit_spans_two_workers(
    box: Outbox, twilio: EmulatorThread, store_url: str
) -> None:
    from smsgate.outbox.buckets import shared_limiter
    from smsgate.ratelimit import Limit

    ids = [box.submit(Message(to=f"+1555558{n:04d}", body=f"limited {n}")) for n in range(24)]
    other = Outbox(store_url, clock=SYSTEM_CLOCK)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        workers = []
        for outbox in (box, other):
            provider = provider_for(twilio)
            limiter = shared_limiter(outbox, {"twilio": Limit.parse("10/s", burst=2)})
            workers.append(
                Worker(
                    outbox,
                    [provider],
                    router=router("twilio"),
                    limiter=limiter,
                    concurrency=4,
                    poll_interval=0.05,
                    close_providers=True,
                )
            )
        await asyncio.gather(*(w.run(until_idle=True) for w in workers))
        return loop.time() - started

    try:
        elapsed = asyncio.run(main())
    finally:
        other.close()
    assert {box.status(i).status for i in ids} == {Status.SENT}
    # 24 sends at 10/s with a burst of 2, over both workers together
    assert elapsed >= 2.0
    times = sorted(twilio.call(lambda: [m.created_at for m in emulated(twilio).messages]))
    assert len(times) == 24
    for start in range(len(times)):
        window = [t for t in times if times[start] <= t < times[start] + 1.0]
        assert len(window) <= 10 + 2 + 1  # rate, burst, one for timing slack


def test_receipts_from_signed_webhooks_complete_the_history(
    box: Outbox, twilio: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    provider = provider_for(twilio, callback=f"{webhook_receiver.url}/twilio/status")
    ids = [box.submit(Message(to=f"+1555559{n:04d}", body=f"receipt {n}")) for n in range(6)]
    work(box, [provider], concurrency=3)
    requests = webhook_receiver.wait(count=12, timeout=10)
    verifier = create_provider(emulated(twilio).provider_url())
    outcomes = []
    for request in requests:
        for event in verifier.handle_status_webhook(request):
            outcomes.append(box.record_event(event).outcome.value)
    # a replay of the same webhook is recorded once
    replay = WebhookRequest(
        requests[0].url, requests[0].method, requests[0].headers, requests[0].body
    )
    assert box.record_event(verifier.handle_status_webhook(replay)[0]).outcome.value == "duplicate"
    # "sent" says nothing new after the worker recorded the send: kept in the history only
    assert sorted(outcomes) == ["applied"] * 6 + ["stale"] * 6
    for message_id in ids:
        record = box.status(message_id)
        assert record.status is Status.DELIVERED
        sources = [e.source for e in record.events]
        assert sources[-2:] == ["webhook:twilio", "webhook:twilio"]


class HeldAnswers:
    """A provider's sends whose answers wait until :meth:`release`: each request is made and
    its answer is in hand, so the send stays in flight for as long as the test needs, however
    loaded the machine is."""

    def __init__(self, provider: Provider) -> None:
        self._asend = provider.asend
        self._count = 0
        self._arrived = asyncio.Event()
        self._released = asyncio.Event()

    async def asend(self, message: Message) -> SendResult:
        result = await self._asend(message)
        self._count += 1
        self._arrived.set()
        await self._released.wait()
        return result

    async def wait_for(self, count: int) -> None:
        """Until ``count`` answers are held (bounded: a worker that never gets there fails
        rather than hangs)."""
        async with asyncio.timeout(30):
            while self._count < count:
                self._arrived.clear()
                await self._arrived.wait()

    def release(self) -> None:
        self._released.set()


def test_stop_finishes_what_is_in_flight_and_gives_back_the_rest(
    box: Outbox, twilio: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = emulated(twilio)
    ids = [box.submit(Message(to=f"+1555560{n:04d}", body=f"stop {n}")) for n in range(30)]

    async def main() -> WorkerStats:
        provider = provider_for(twilio)
        answers = HeldAnswers(provider)
        monkeypatch.setattr(provider, "asend", answers.asend)
        worker = box.worker(
            [provider],
            router=router("twilio"),
            concurrency=4,
            poll_interval=0.05,
            close_providers=True,
        )
        task = asyncio.create_task(worker.run())
        await answers.wait_for(4)  # every sender in flight, more claimed and waiting for one
        worker.stop()
        # The answers come back only now, stopping: a sender that gets its answer must not
        # take up a waiting message.
        answers.release()
        return await task

    stats = asyncio.run(main())
    statuses = [box.status(i).status for i in ids]
    assert stats.sent == 4 and statuses.count(Status.SENT) == 4
    assert statuses.count(Status.QUEUED) == 26
    assert stats.released == stats.claimed - stats.sent > 0
    assert box.store.work_left()[1] is None  # no lease left behind
    work(box, [provider_for(twilio)], concurrency=4)
    assert {box.status(i).status for i in ids} == {Status.SENT}
    assert twilio.call(lambda: len(emulator.messages)) == 30
    assert twilio.call(lambda: sum(m.duplicate for m in emulator.messages)) == 0


def test_a_forced_stop_records_abandoned_sends_as_ambiguous(
    box: Outbox, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    twilio.call(lambda: emulator.faults.update({"hang_rate": 1.0, "hang_seconds": 2.0}))
    ids = [box.submit(Message(to=f"+1555561{n:04d}", body=f"hang {n}")) for n in range(3)]

    async def main() -> None:
        worker = box.worker(
            [provider_for(twilio)],
            router=router("twilio"),
            concurrency=3,
            shutdown_grace=0.3,
            close_providers=True,
        )
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        worker.stop()
        await task

    asyncio.run(main())
    for message_id in ids:
        record = box.status(message_id)
        assert record.state == "reconciling"
        assert "stopped while waiting" in history(box, message_id)[-1][2]
    twilio.call(lambda: emulator.faults.update({"hang_rate": 0.0}))
    stats = work(box, [provider_for(twilio)], concurrency=3)
    assert stats.reconciled == 3
    assert {box.status(i).status for i in ids} == {Status.SENT}
    assert twilio.call(lambda: len(emulator.messages)) == 3


def test_an_otp_resend_after_an_ambiguous_send_says_it_may_arrive_twice(
    box: Outbox, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    twilio.call(lambda: emulator.faults.update({"reset_rate": 1.0}))
    message_id = box.submit(Message(to="+15555620000", body="code 123456", purpose=Purpose.OTP))
    route = router("twilio", ambiguous="resend", retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    work(box, [provider_for(twilio)], router=route)
    record = box.status(message_id)
    reasons = [r for _, _, r in history(box, message_id)]
    assert any("may arrive twice" in r for r in reasons)
    received = twilio.call(lambda: [(m.body, m.duplicate) for m in emulator.messages])
    assert received == [("code 123456", False), ("code 123456", True)]
    assert record.status is Status.UNKNOWN


def test_a_message_whose_validity_ran_out_is_expired_not_sent(
    store_url: str, twilio: EmulatorThread
) -> None:
    clock = FakeClock(start=datetime.now(UTC).timestamp())
    with Outbox(store_url, clock=clock, migrate=True) as outbox:
        message_id = outbox.submit(Message(to="+15555630000", body="code 42", validity=60))
        clock.advance(61)
        stats = work(outbox, [provider_for(twilio)])
        record = outbox.status(message_id)
    assert (record.status, stats.expired) == (Status.EXPIRED, 1)
    assert "validity ended" in (record.events[-1].reason or "")
    assert twilio.call(lambda: len(emulated(twilio).messages)) == 0


def test_a_route_with_no_provider_configured_here_fails_over_or_fails(
    box: Outbox, twilio: EmulatorThread
) -> None:
    message_id = box.submit(Message(to="+15555640000", body="x"))
    route = router("elsewhere", "twilio")
    work(box, [provider_for(twilio)], router=route)
    record = box.status(message_id)
    assert (record.status, record.provider) == (Status.SENT, "twilio")
    assert any("not configured on this worker" in r for _, _, r in history(box, message_id))


def test_backoff_follows_the_retry_policy_on_a_fake_clock(
    store_url: str, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    twilio.call(lambda: emulator.faults.update({"error_rate": 1.0}))
    clock = FakeClock(start=datetime.now(UTC).timestamp())
    policy = RetryPolicy(max_attempts=3, base_delay=10.0, max_delay=60.0, jitter="none")
    with Outbox(store_url, clock=clock, migrate=True) as outbox:
        message_id = outbox.submit(Message(to="+15555650000", body="down"))
        route = Router(
            [Route(name="default", providers=("twilio",), retry=policy)],
            CircuitBreakers(failure_threshold=100, cooldown=1.0, clock=clock),
            clock=clock,
        )
        work(outbox, [provider_for(twilio)], router=route)
        events = outbox.status(message_id).events
    starts = [e.at.timestamp() for e in events if e.to_status is Status.SENDING]
    failures = [e.at.timestamp() for e in events if e.from_status is Status.SENDING][:2]
    assert len(starts) == 3 and len(failures) == 2
    # No jitter: 10 s after the first failure, 20 s after the second (never earlier). Measured
    # from each failure, not from the attempt before it: the fake clock also moves on every
    # pause the claim loop takes while a request is in flight, so an attempt's own duration
    # in fake seconds depends on how busy the machine is.
    assert 10.0 <= starts[1] - failures[0] < 10.5
    assert 20.0 <= starts[2] - failures[1] < 20.5
    reasons = [e.reason or "" for e in events]
    assert any("retrying twilio in 10.0s (attempt 2 of 3)" in r for r in reasons)
    assert events[-1].to_status is Status.FAILED
    assert "3 attempts used" in (events[-1].reason or "")
    assert twilio.call(lambda: len(emulator.messages)) == 0


@pytest.mark.postgres
def test_a_postgresql_worker_claims_and_writes_on_its_event_loop(
    postgres_url: str, twilio: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the worker's claims and group commits are non-blocking statements on its
    event loop, not calls on its threads: a thread must win the GIL back from the busy loop
    after every wait on the socket, which made each claim take milliseconds (and every
    message wait for it) for a fraction of one in the server."""
    import threading

    calls: list[tuple[str, str]] = []
    with Outbox(postgres_url, clock=SYSTEM_CLOCK, migrate=True) as outbox:
        store = outbox.store
        for name in ("claim", "write"):
            method = getattr(store, name)

            def traced(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
                calls.append((_name, threading.current_thread().name))
                return _method(*args, **kw)

            monkeypatch.setattr(store, name, traced)
        ids = [outbox.submit(Message(to=f"+1555570{n:04d}", body=f"loop {n}")) for n in range(30)]
        stats = work(outbox, [provider_for(twilio)], concurrency=8, batch_size=5)
        assert stats.sent == 30 and stats.claimed == 30
        assert {outbox.status(i).status for i in ids} == {Status.SENT}
        assert [e.to_status for e in outbox.status(ids[0]).events] == [
            Status.QUEUED,
            Status.SENDING,
            Status.SENT,
        ]
    assert calls == []


def test_quiet_hours_hold_marketing_as_scheduled_then_send_it(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    today = datetime.fromtimestamp(clock.time(), new_york)
    clock.advance(today.replace(hour=22, minute=30).timestamp() + 86400 - clock.time())
    promo = outbox.submit(Message(to="+12125550100", body="Sale!", purpose=Purpose.MARKETING))
    code = outbox.submit(Message(to="+12125550100", body="481902", purpose=Purpose.OTP))
    quiet = Router(
        [Route(name="default", providers=("twilio",), quiet_hours="21:00-08:00")],  # type: ignore[arg-type]
        CircuitBreakers(),
        clock=clock,
    )
    provider = provider_for(twilio)

    async def night() -> None:
        stop = asyncio.Event()
        worker = outbox.worker([provider], router=quiet, poll_interval=0.05)
        task = asyncio.ensure_future(worker.run(stop=stop))
        for _ in range(400):  # bounded: 20 s
            if outbox.status(promo).status is Status.SCHEDULED:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(night())
    assert outbox.status(code).status is Status.SENT  # otp is never held
    held = outbox.status(promo)
    released = datetime.fromtimestamp(clock.time(), new_york).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    released += timedelta(days=1)
    assert held.status is Status.SCHEDULED and held.next_attempt_at == released
    assert "quiet hours 21:00-08:00 in America/New_York" in (held.events[-1].reason or "")
    clock.advance(released.timestamp() - clock.time())
    work(outbox, [provider], router=quiet)
    events = outbox.status(promo).events
    assert [e.to_status for e in events] == [
        Status.QUEUED,
        Status.SCHEDULED,
        Status.SENDING,
        Status.SENT,
    ]
    assert events[2].at >= released


def test_a_worker_takes_a_bare_store_a_router_and_a_clock(
    box: Outbox, twilio: EmulatorThread
) -> None:
    ids = [box.submit(Message(to=f"+1555563{n:04d}", body=f"bare {n}")) for n in range(5)]

    async def main() -> WorkerStats:
        worker = Worker(
            box.store,
            [provider_for(twilio)],
            router=router("twilio"),
            clock=SYSTEM_CLOCK,
            poll_interval=0.05,
            close_providers=True,
        )
        return await worker.run(until_idle=True)

    assert asyncio.run(main()).sent == 5
    assert {box.status(i).status for i in ids} == {Status.SENT}


def run_until_idle(outbox: Outbox, twilio: EmulatorThread, **options: Any) -> WorkerStats:
    async def main() -> WorkerStats:
        worker = Worker(
            outbox,
            [provider_for(twilio)],
            router=router("twilio"),
            poll_interval=0.05,
            close_providers=True,
            receipt_timeout=ReceiptTimeout(after=60, validity=600),
            **options,
        )
        return await worker.run(until_idle=True)

    return asyncio.run(main())


def test_a_receipt_that_never_came_is_looked_up_and_recorded_as_if_it_had(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    emulator = emulated(twilio)
    message_id = outbox.submit(Message(to="+15555640000", body="did it arrive?"))
    assert run_until_idle(outbox, twilio).sent == 1  # idle: a receipt wait is not work
    record = outbox.status(message_id)
    assert record.status is Status.SENT and record.next_attempt_at is not None
    # the provider delivered it, but its callback never reached us
    twilio.call(lambda: setattr(emulator.messages[0], "status", "delivered"))
    clock.advance(30)
    assert run_until_idle(outbox, twilio).receipts_looked_up == 0  # not yet
    clock.advance(31)
    assert run_until_idle(outbox, twilio).receipts_looked_up == 1
    record = outbox.status(message_id)
    assert record.status is Status.DELIVERED and record.next_attempt_at is None
    last = record.events[-1]
    assert (last.from_status, last.to_status, last.source) == (
        Status.SENT,
        Status.DELIVERED,
        "receipt-lookup:twilio",
    )
    assert "no delivery receipt came" in (last.reason or "")


def test_a_message_the_provider_never_settles_ends_unknown_after_its_validity(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    message_id = outbox.submit(Message(to="+15555640001", body="no receipt ever"))
    run_until_idle(outbox, twilio)
    looks = 0
    while outbox.status(message_id).status is Status.SENT and looks < 10:
        due = outbox.status(message_id).next_attempt_at
        assert due is not None  # a sent message always has its next look-up
        clock.advance(max(0.0, due.timestamp() - clock.time()) + 0.01)
        run_until_idle(outbox, twilio)
        looks += 1
    record = outbox.status(message_id)
    assert record.status is Status.UNKNOWN
    reasons = [e.reason or "" for e in record.events if e.source == "receipt-lookup:twilio"]
    # asked at 60 s, then after twice as long each time, then given up at 600 s
    assert len(reasons) == looks and 3 <= looks <= 5
    # the emulator reports queued, then sent, never a final status (no receipt will come)
    assert all(re.search(r"twilio still reports (queued|sent) when asked", r) for r in reasons)
    assert "by the end of the validity period" in reasons[-1]
