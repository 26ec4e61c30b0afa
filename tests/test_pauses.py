"""Provider pauses: stored once for every worker, read through a cached view, skipped by the
router like an open circuit."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import AuthError
from smsgate.message import Message
from smsgate.outbox import Outbox
from smsgate.outbox.cli_support import pause_view
from smsgate.outbox.sql import SqlStore
from smsgate.outbox.tables.pauses import ProviderPauses
from smsgate.pauses import PauseView
from smsgate.routing import PAUSE_POLL_SECONDS, Action, Route, Router


class Names:
    """A load function that counts its calls."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.calls = 0
        self.fail = False

    def __call__(self) -> frozenset[str]:
        self.calls += 1
        if self.fail:
            raise OSError("store unavailable")
        return self.names


def router(pauses: PauseView, *providers: str) -> Router:
    clock = FakeClock()
    return Router([Route(name="default", providers=providers)], clock=clock, pauses=pauses)


MSG = Message(to="+15555550100", body="hi")


def test_router_skips_a_paused_provider_and_fails_over_past_it() -> None:
    names = Names()
    names.names = frozenset({"a"})
    view = PauseView(names, clock=FakeClock())
    r = router(view, "a", "b", "c", "d")
    plan = r.plan(MSG)
    assert plan.action is Action.SEND
    assert plan.provider == "b"
    assert "paused: a" in plan.reason
    names.names = frozenset({"a", "c"})
    view.refresh()
    after = r.decide(MSG, provider="b", attempt=1, error=AuthError("bad token"))
    assert (after.action, after.provider) == (Action.FAILOVER, "d")
    names.names = frozenset({"a"})
    view.refresh()
    after = r.decide(MSG, provider="b", attempt=1, error=AuthError("bad token"))
    assert (after.action, after.provider) == (Action.FAILOVER, "c")


def test_router_waits_when_every_provider_is_paused_and_sends_after_resume() -> None:
    names = Names()
    names.names = frozenset({"a", "b"})
    clock = FakeClock()
    r = Router(
        [Route(name="default", providers=("a", "b"))],
        clock=clock,
        pauses=PauseView(names, clock=clock),
    )
    plan = r.plan(MSG)
    assert plan.action is Action.WAIT
    assert plan.at == clock.time() + PAUSE_POLL_SECONDS
    assert "paused" in plan.reason
    names.names = frozenset({"a"})
    clock.advance(PAUSE_POLL_SECONDS)
    again = r.plan(MSG)
    assert (again.action, again.provider) == (Action.SEND, "b")


def test_view_reads_at_most_once_per_ttl_and_keeps_the_last_set_when_the_store_fails() -> None:
    names = Names()
    names.names = frozenset({"a"})
    clock = FakeClock()
    view = PauseView(names, clock=clock, ttl=1.0)
    for _ in range(50):
        assert view.is_paused("a")
    assert names.calls == 1
    names.names = frozenset()
    clock.advance(0.5)
    assert view.is_paused("a")  # still cached
    clock.advance(0.6)
    assert not view.is_paused("a")
    assert names.calls == 2
    names.names = frozenset({"b"})
    names.fail = True
    clock.advance(2)
    assert view.paused() == frozenset()  # the failure kept the last known set
    names.fail = False
    clock.advance(2)
    assert view.paused() == frozenset({"b"})


def test_pauses_are_shared_through_the_store(store_url: str) -> None:
    clock = FakeClock()
    with (
        Outbox(store_url, clock=clock, migrate=True) as first,
        Outbox(store_url, clock=clock) as second,
    ):
        assert isinstance(first.store, SqlStore) and isinstance(second.store, SqlStore)
        pauses = ProviderPauses(first.store)
        view = pause_view(second, clock)
        assert view is not None
        assert view.paused() == frozenset()
        assert pauses.pause("twilio", "alice", "carrier incident", clock.time())
        assert not pauses.pause("twilio", "bob", "again", clock.time())
        kept = pauses.list()["twilio"]
        assert (kept.paused_by, kept.reason) == ("alice", "carrier incident")
        clock.advance(view.ttl)
        assert view.is_paused("twilio")
        assert pauses.resume("twilio")
        assert not pauses.resume("twilio")
        clock.advance(view.ttl)
        assert not view.is_paused("twilio")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pauses.db'}"
    import secrets

    import psycopg

    from tests.outbox.conftest import postgres_base

    base = postgres_base()
    schema = f"smsgate_test_{secrets.token_hex(6)}"

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    request.addfinalizer(drop)
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}schema={schema}"
