"""Retention on both engines: only final messages past their age go, with their events;
idempotency keys of pruned messages are free again; opt-outs stay; ``smsgate db prune``."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
from typer.testing import CliRunner

from smsgate.cli import app
from smsgate.clock import FakeClock
from smsgate.config import Config
from smsgate.emulators.base import EmulatorThread
from smsgate.errors import ConfigError
from smsgate.message import Message
from smsgate.outbox import Outbox, State
from smsgate.outbox.cli_support import build_worker
from smsgate.outbox.retention import Retention, prune
from smsgate.outbox.store import NewEvent, StartSend, Transition
from smsgate.outbox.tables.message_parts import MessagePartTable
from tests.outbox.conftest import emulated

DAY = 86_400.0


def submit(
    outbox: Outbox, n: int, *, key: str | None = None, prefix: str = "+1555555"
) -> list[str]:
    return [
        outbox.submit(
            Message(to=f"{prefix}{i:04d}", body=f"hello {i}", idempotency_key=key and f"{key}{i}")
        )
        for i in range(n)
    ]


def move(outbox: Outbox, ids: list[str], state: State) -> None:
    """Claim, start and finish ``ids`` into ``state`` at the clock's time."""
    now = outbox.clock.time()
    claimed = outbox.store.claim("w", len(ids) + 100, now, now + 30)
    assert {c.row.id for c in claimed} >= set(ids)
    starts = [
        StartSend(i, "twilio", 1, "default", NewEvent(i, now, "queued", "sending", "w", "go"))
        for i in ids
    ]
    outbox.store.start("w", starts, now, now + 30)
    done = [
        Transition(i, state, NewEvent(i, now, "sending", state.status.value, "w", "done"))
        for i in ids
    ]
    assert outbox.store.finish("w", done, now) == set(ids)
    outbox.store.release("w", [c.row.id for c in claimed if c.row.id not in ids], now)


def remaining(outbox: Outbox, ids: list[str]) -> list[str]:
    return [i for i in ids if outbox.store.get(i) is not None]


def test_only_final_messages_past_their_age_go_with_their_events(
    outbox: Outbox, clock: FakeClock
) -> None:
    delivered = submit(outbox, 3, prefix="+1555551")
    failed = submit(outbox, 2, prefix="+1555552")
    sent = submit(outbox, 2, prefix="+1555553")
    move(outbox, delivered, State.DELIVERED)
    move(outbox, failed, State.FAILED)
    move(outbox, sent, State.SENT)  # still waiting for its receipt: never final
    queued_long_ago = submit(outbox, 2, prefix="+1555554")
    clock.advance(40 * DAY)
    young = submit(outbox, 2, prefix="+1555555")
    move(outbox, young, State.DELIVERED)
    retention = Retention(messages=90 * DAY, states={State.DELIVERED: 30 * DAY}, batch_size=2)

    dry = prune(outbox.store, retention, clock.time(), dry_run=True)
    assert (dry.messages, dry.events) == (3, 9)  # 3 delivered, each: submitted, sending, done
    assert remaining(outbox, delivered) == delivered  # a dry run deletes nothing

    done = prune(outbox.store, retention, clock.time())
    assert (done.messages, done.events) == (3, 9)
    assert remaining(outbox, delivered) == []
    assert all(outbox.store.events(i) == [] for i in delivered)
    kept = failed + sent + queued_long_ago + young
    assert remaining(outbox, kept) == kept
    assert all(outbox.store.events(i) for i in kept)

    clock.advance(60 * DAY)  # failed: 100 days, young: 60; sent and queued ones are never final
    submit(outbox, 1, prefix="+1555556")  # the newest event
    assert prune(outbox.store, retention, clock.time()).messages == 2 + 2
    assert remaining(outbox, kept) == sent + queued_long_ago


def test_a_pruned_messages_idempotency_key_is_free_again(outbox: Outbox, clock: FakeClock) -> None:
    (first,) = submit(outbox, 1, key="order-")
    assert submit(outbox, 1, key="order-") == [first]  # the same key: the same message
    move(outbox, [first], State.DELIVERED)
    clock.advance(10 * DAY)
    # one younger message keeps the newest event (the change feed's cursor never goes back)
    submit(outbox, 1, prefix="+1555559")
    assert prune(outbox.store, Retention.older_than(7 * DAY), clock.time()).messages == 1
    (again,) = submit(outbox, 1, key="order-")
    assert again != first
    assert outbox.status(again).status.value == "queued"


def test_the_newest_event_and_opt_outs_are_never_pruned(outbox: Outbox, clock: FakeClock) -> None:
    (last,) = submit(outbox, 1)
    move(outbox, [last], State.CANCELED)
    with outbox.store.write_transaction() as tx:  # type: ignore[attr-defined]
        tx.execute(
            "INSERT INTO smsgate_suppressions (recipient, our_number, source, created_at) "
            "VALUES (?, '*', 'keyword', ?)",
            ("+15555550000", clock.time()),
        )
    clock.advance(400 * DAY)
    assert prune(outbox.store, Retention.older_than(DAY), clock.time()).messages == 0
    assert outbox.store.get(last) is not None
    with outbox.store.read_transaction() as tx:  # type: ignore[attr-defined]
        assert tx.execute("SELECT count(*) FROM smsgate_suppressions")[0][0] == 1


def test_old_events_of_final_messages_go_and_the_message_stays(
    outbox: Outbox, clock: FakeClock
) -> None:
    done = submit(outbox, 2, prefix="+1555551")
    waiting = submit(outbox, 1, prefix="+1555552")
    move(outbox, done, State.DELIVERED)
    clock.advance(40 * DAY)
    submit(outbox, 1, prefix="+1555553")  # the newest event
    result = prune(outbox.store, Retention(events=30 * DAY, batch_size=2), clock.time())
    assert (result.messages, result.events) == (0, 6)
    assert remaining(outbox, done) == done
    assert all(outbox.store.events(i) == [] for i in done)
    assert len(outbox.store.events(waiting[0])) == 1  # not final: its history stays


def test_one_batch_deletes_at_most_its_size_in_one_call(outbox: Outbox, clock: FakeClock) -> None:
    ids = submit(outbox, 7)
    move(outbox, ids, State.DELIVERED)
    clock.advance(2 * DAY)
    submit(outbox, 1, prefix="+1555559")
    cutoffs = Retention.older_than(DAY).cutoffs(clock.time())
    assert outbox.store.prune(cutoffs, None, 3) == (3, 9)
    assert len(remaining(outbox, ids)) == 4
    assert ids[:3] == sorted(ids)[:3] and remaining(outbox, ids) == ids[3:]  # oldest first


def test_retention_refuses_a_state_that_is_not_final() -> None:
    with pytest.raises(ValueError, match="'sent' is not a final state"):
        Retention(states=MappingProxyType({State.SENT: DAY}))


# -- config ---------------------------------------------------------------------------------


def test_the_retention_table_is_read_with_ages_per_state() -> None:
    config = Config.from_dict(
        {"retention": {"messages": "90d", "events": "30d", "failed": "180d", "batch_size": 200}}
    )
    retention = config.retention.build()
    assert retention is not None
    cutoffs = retention.cutoffs(1000 * DAY)
    assert cutoffs[State.FAILED] == 820 * DAY and cutoffs[State.DELIVERED] == 910 * DAY
    assert retention.events_cutoff(1000 * DAY) == 970 * DAY and retention.batch_size == 200
    assert Config.from_dict({}).retention.build() is None  # nothing is deleted unless asked


@pytest.mark.parametrize(
    ("table", "field"),
    [({"sent": "30d"}, "retention.sent"), ({"messages": "soon"}, "retention.messages")],
)
def test_a_bad_retention_setting_names_its_field(table: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"retention": table})
    assert field in str(caught.value)


# -- smsgate db prune -----------------------------------------------------------------------


def test_db_prune_dry_run_counts_and_prune_prints_what_went(store_url: str) -> None:
    clock = FakeClock(1_000 * DAY)
    with Outbox(store_url, clock=clock, migrate=True) as outbox:
        ids = submit(outbox, 4)
        move(outbox, ids, State.DELIVERED)
        submit(outbox, 1, prefix="+1555559")
    # the CLI runs on the real clock: these messages are 1,000 days in its past
    runner = CliRunner()
    dry = runner.invoke(
        app, ["db", "prune", "--older-than", "90d", "--dry-run", "--store", store_url, "--json"]
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) | {"store": ""} == {
        "store": "",
        "dry_run": True,
        "messages": 4,
        "events": 12,
    }
    real = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--store", store_url])
    assert real.exit_code == 0, real.output
    assert "deleted 4 messages and 12 events" in real.stdout
    with Outbox(store_url, migrate=True) as outbox:
        assert remaining(outbox, ids) == []


def test_db_prune_without_an_age_says_how_to_give_one(store_url: str) -> None:
    result = CliRunner().invoke(app, ["db", "prune", "--store", store_url])
    assert result.exit_code == 2
    assert "--older-than 90d" in result.output and "[retention]" in result.output


def test_the_configured_worker_prunes_what_the_config_says(
    outbox: Outbox, clock: FakeClock, twilio: EmulatorThread
) -> None:
    config = Config.from_dict(
        {
            "providers": {"twilio": {"url": emulated(twilio).provider_url()}},
            "retention": {"messages": "90d", "canceled": "1d", "interval": "10min"},
        }
    )
    worker = build_worker(outbox, config)
    assert worker.retention is not None
    assert worker.retention.cutoffs(100 * DAY)[State.CANCELED] == 99 * DAY
    assert worker.retention.interval == 600
    assert (
        build_worker(outbox, Config.from_dict(config_without_retention(config))).retention is None
    )


def config_without_retention(config: Config) -> dict[str, object]:
    return {"providers": {name: {"url": p.url} for name, p in config.providers.items()}}


def test_a_pruned_long_message_takes_its_part_ids_along(outbox: Outbox, clock: FakeClock) -> None:
    # docs/smpp.md: the part ids of a message whose receipts never all came go with it.
    [long] = submit(outbox, 1)
    now = clock.time()
    outbox.store.claim("w", 1, now, now + 30)
    start = NewEvent(long, now, "queued", "sending", "w", "go")
    outbox.store.start("w", [StartSend(long, "smpp", 1, "default", start)], now, now + 30)
    done = NewEvent(long, now, "sending", "undelivered", "w", "done")
    parts = ("A0", "A1")
    sent = Transition(long, State.UNDELIVERED, done, provider="smpp", provider_message_id="A0")
    assert outbox.store.finish("w", [sent._replace(part_ids=parts)], now) == {long}
    table = MessagePartTable.of(outbox.store)
    assert table.fold("smpp", ["a1"], None, None) is not None
    clock.advance(40 * DAY)
    submit(outbox, 1, prefix="+1555556")  # the newest event, which pruning keeps
    assert prune(outbox.store, Retention(messages=30 * DAY), clock.time()).messages == 1
    assert table.fold("smpp", ["a1"], None, None) is None
