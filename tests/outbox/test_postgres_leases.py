"""Lease renewal on PostgreSQL never waits on a row another transaction holds.

The worker renews every held lease in one statement while its group commits write some of the
same rows; renewal that waited on a locked row deadlocked with such a write (each holding rows
the other wanted), and the server broke the tie only after its deadlock_timeout, failing one
write and stalling the worker for a second or more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest

from smsgate.clock import FakeClock
from smsgate.message import Message
from smsgate.outbox import Outbox

pytestmark = pytest.mark.postgres

TO = "+15555550100"


@contextmanager
def other_connection(store_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of another process to the same schema, in a transaction of its own."""
    parts = urlsplit(store_url)
    schema = dict(parse_qsl(parts.query))["schema"]
    base = store_url.split("?", 1)[0]
    with psycopg.connect(base, options=f"-c search_path={schema}") as conn:
        yield conn


def leases(conn: psycopg.Connection[Any], ids: list[str]) -> list[tuple[str, float]]:
    """Owner and expiry of each of ``ids``' leases, in that order."""
    rows = conn.execute(
        "SELECT id, lease_owner, lease_expires_at FROM smsgate_messages WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    found = {row[0]: (str(row[1]), float(row[2])) for row in rows}
    return [found[i] for i in ids]


def renew_within(outbox: Outbox, owner: str, ids: list[str], until: float) -> set[str]:
    """``store.renew`` in a thread; fails the test if it does not return within 10 s."""
    result: list[set[str]] = []
    thread = threading.Thread(
        target=lambda: result.append(outbox.store.renew(owner, ids, until)), daemon=True
    )
    thread.start()
    thread.join(10)
    assert result, "renewing leases waited on a row another transaction holds"
    return result[0]


def test_renewal_skips_a_locked_row_keeps_it_held_and_renews_it_next_time(
    postgres_url: str,
) -> None:
    clock = FakeClock()
    with Outbox(postgres_url, clock=clock, migrate=True) as outbox:
        ids = [outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(3)]
        now = clock.time()
        assert len(outbox.store.claim("w1", 10, now, now + 30)) == 3
        with other_connection(postgres_url) as other:
            # a write of this worker's group commit, not committed yet, holds the first row
            other.execute(
                "UPDATE smsgate_messages SET updated_at = updated_at WHERE id = %s", (ids[0],)
            )
            assert renew_within(outbox, "w1", ids, now + 60) == set(ids)
            other.rollback()
            assert leases(other, ids) == [("w1", now + 30), ("w1", now + 60), ("w1", now + 60)]
            other.rollback()
        # the row is free again: the next renewal extends it
        assert outbox.store.renew("w1", ids, now + 90) == set(ids)
        with other_connection(postgres_url) as other:
            assert leases(other, ids) == [("w1", now + 90)] * 3


def test_renewal_reports_a_row_another_worker_took_over_as_lost(postgres_url: str) -> None:
    clock = FakeClock()
    with Outbox(postgres_url, clock=clock, migrate=True) as outbox:
        ids = [outbox.submit(Message(to=TO, body=f"m{n}")) for n in range(2)]
        now = clock.time()
        outbox.store.claim("w1", 10, now, now + 30)
        clock.advance(31)  # w1 stalled past its lease: w2 takes both over
        later = clock.time()
        assert len(outbox.store.claim("w2", 10, later, later + 30)) == 2
        with other_connection(postgres_url) as other:
            other.execute(
                "UPDATE smsgate_messages SET updated_at = updated_at WHERE id = %s", (ids[0],)
            )
            # locked or not, a row w2 holds is not w1's: neither is kept, neither renewed
            assert renew_within(outbox, "w1", ids, later + 60) == set()
            other.rollback()
            assert leases(other, ids) == [("w2", later + 30)] * 2
