"""The console's message log over a store of 1,000,000 messages, on SQLite and PostgreSQL.

    .venv/bin/python bench/console.py [--messages 1000000] [--repeat 30] [--engines sqlite,postgresql]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]   (or SMSGATE_TEST_POSTGRES_URL)

The store is filled straight through SQL, with the sent and final events of the last day's
messages (which the overview reads). Ids are made for creation times spread over the last 7
days, as ``smsgate.ids`` makes them; 85% delivered, 5% sent, 4% failed, 3% undelivered, the rest
queued, scheduled, canceled or unknown; providers alpha 50%, beta 35%, gamma 15%. Then
``smsgate serve``'s app (no worker) runs on loopback with the console, a user signs in, and each
page is fetched ``--repeat`` times over HTTP. The figure is the page's own ``Server-Timing``
(query and template, measured in the handler); the wall time of the whole request is shown next
to it. The target is <= 100 ms server time for the first page and for the filtered page.

The SQLite file is kept in the temporary directory and reused by the next run with the same
size; the PostgreSQL schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from smsgate.config import Config
from smsgate.console.auth import ConsoleAuth, Role
from smsgate.console.settings import ConsoleSettings
from smsgate.ids import new_id
from smsgate.outbox import Outbox
from smsgate.outbox.cli_support import open_outbox
from smsgate.outbox.tables.message_log import MessageLog
from smsgate.server.app import create_app
from smsgate.server.runner import ServerThread
from smsgate.server.settings import ServerSettings

STATES = (
    ("delivered", 0.85),
    ("sent", 0.05),
    ("failed", 0.04),
    ("undelivered", 0.03),
    ("queued", 0.01),
    ("scheduled", 0.01),
    ("canceled", 0.005),
    ("unknown", 0.005),
)
PROVIDERS = (("alpha", 0.5), ("beta", 0.35), ("gamma", 0.15))
COLUMNS = (
    "id, state, purpose, to_number, sender, payload, attempts, provider, provider_attempt, "
    "route, provider_message_id, next_attempt_at, last_error, created_at, updated_at"
)
PASSWORD = "bench password 1"
DAYS = 7


def pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for value, weight in table:
        x -= weight
        if x < 0:
            return value
    return table[-1][0]


EVENT_COLUMNS = "message_id, at, from_status, to_status, source, provider"


def events_of(row: tuple[Any, ...], now: float) -> list[tuple[Any, ...]]:
    """The sent and final events of a message of the last day (the overview reads a day)."""
    message_id, state, provider, at = row[0], row[1], row[7], row[13]
    if at < now - 86400 or state in ("queued", "scheduled", "canceled"):
        return []
    made = [(message_id, at + 1, "sending", "sent", "worker:bench", provider)]
    if state not in ("sent", "unknown"):
        made.append((message_id, at + 4.5, "sent", state, f"webhook:{provider}", provider))
    return made


def rows(count: int, now: float, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    start = now - DAYS * 86400
    step = DAYS * 86400 / count
    for i in range(count):
        at = start + i * step
        state = pick(rng, STATES)
        provider = pick(rng, PROVIDERS)
        error = None
        if state in ("failed", "undelivered"):
            code = rng.choice(("21211", "30003", "30005", "30007"))
            error = f'{{"error":"invalid_recipient","message":"bad","provider":"{provider}","code":"{code}","field":null,"retryable":false}}'
        yield (
            new_id(now_ms=int(at * 1000)),
            state,
            "otp" if rng.random() < 0.2 else "transactional",
            f"+1555{rng.randrange(10**7):07d}",
            None,
            '{"body":"Your order shipped"}',
            1,
            provider,
            1,
            "otp" if rng.random() < 0.2 else "default",
            f"SM{i:032x}",
            at + 60 if state in ("queued", "scheduled") else None,
            error,
            at,
            at + 5,
        )


def fill_sqlite(path: Path, count: int, now: float) -> None:
    Outbox(f"sqlite:///{path}", migrate=True).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = off")
    marks = ", ".join("?" * len(COLUMNS.split(", ")))
    insert = f"INSERT INTO smsgate_messages ({COLUMNS}) VALUES ({marks})"
    insert_events = f"INSERT INTO smsgate_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    batch: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for row in rows(count, now):
        batch.append(row)
        events.extend(events_of(row, now))
        if len(batch) == 50_000:
            db.executemany(insert, batch)
            db.executemany(insert_events, events)
            db.commit()
            batch.clear()
            events.clear()
    db.executemany(insert, batch)
    db.executemany(insert_events, events)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def fill_postgres(url: str, base: str, schema: str, count: int, now: float) -> None:
    import psycopg

    Outbox(url, migrate=True).close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        events: list[tuple[Any, ...]] = []
        with conn.cursor() as cur:
            with cur.copy(f"COPY smsgate_messages ({COLUMNS}) FROM STDIN") as copy:
                for row in rows(count, now):
                    copy.write_row(row)
                    events.extend(events_of(row, now))
            with cur.copy(f"COPY smsgate_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                for event in events:
                    copy.write_row(event)
        conn.execute("ANALYZE smsgate_messages")
        conn.execute("ANALYZE smsgate_events")


def measure(store: str, label: str, repeat: int) -> None:
    config = Config.from_dict(
        {
            "store": store,
            "providers": {
                name: {"url": f"smsroute://KEY@{name}?base_url=http://127.0.0.1:9"}
                for name, _ in PROVIDERS
            },
        }
    )
    outbox = open_outbox(config)
    ConsoleAuth(outbox.store, ConsoleSettings()).create_user(
        f"bench-{secrets.token_hex(3)}", PASSWORD, Role.READONLY
    )
    name = ConsoleAuth(outbox.store, ConsoleSettings()).list_users()[-1].name

    def make(url: str) -> Any:
        settings = ServerSettings.from_mapping({}, public_url=url)
        return create_app(config, settings=settings, outbox=outbox, worker=False, background=False)

    server = ServerThread(make)
    try:
        session = requests.Session()
        page = session.get(server.url + "/console/login", timeout=30)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        signed = session.post(
            server.url + "/console/login",
            data={"csrf": token[1], "name": name, "password": PASSWORD},
            timeout=30,
        )
        assert signed.url.endswith("/console/"), signed.status_code
        first = session.get(server.url + "/console/messages", timeout=30)
        some_id = re.findall(r'class="mono">(msg_[0-9A-Z]+)</a>', first.text)[-1]
        pages = {
            "first page": "/console/messages",
            "state+provider+24h": "/console/messages?state=delivered&provider=beta&window=24h",
            "failed+gamma+24h": "/console/messages?state=failed&provider=gamma&window=24h",
            "next page (keyset)": f"/console/messages?before={some_id}",
            # the worst case: nothing matches, so the whole day is read
            "no match in 24h": "/console/messages?state=delivered&route=nosuch&window=24h",
            "error code 30007": "/console/messages?error=30007",
            "message page": f"/console/messages/{some_id}",
            "overview (5 s cache)": "/console/",
        }
        print(f"\n{label}", flush=True)
        print(f"  {'page':<22} {'rows':>5} {'server p50':>11} {'server p95':>11} {'wall p50':>9}")
        for what, path in pages.items():
            server_ms: list[float] = []
            wall_ms: list[float] = []
            shown = 0
            for _ in range(repeat):
                started = time.perf_counter()
                answer = session.get(server.url + path, timeout=30)
                wall_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
                server_ms.append(float(answer.headers["server-timing"].split("dur=")[1]))
                shown = len(re.findall(r'class="mono">msg_', answer.text))
            server_ms.sort()
            p95 = server_ms[min(len(server_ms) - 1, int(0.95 * len(server_ms)))]
            print(
                f"  {what:<22} {shown:>5} {statistics.median(server_ms):>8.1f} ms "
                f"{p95:>8.1f} ms {statistics.median(wall_ms):>6.1f} ms",
                flush=True,
            )
        figures = []
        for _ in range(5):
            started = time.perf_counter()
            found = MessageLog.of(outbox.store).overview(time.time())
            figures.append((time.perf_counter() - started) * 1000)
        sent = sum(w["day"].get("sent", 0) for w in found.per_provider.values())
        print(
            f"  overview, computed (no cache): {statistics.median(figures):.0f} ms median of 5, "
            f"over {sent:,} sends and {found.latency_sample:,} receipts in the last 24 h",
            flush=True,
        )
    finally:
        server.stop()
        outbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SMSGATE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not 1 <= args.messages <= 5_000_000 or not 1 <= args.repeat <= 1000:
        parser.error("--messages must be 1..5,000,000 and --repeat 1..1000")
    now = time.time()
    engines = args.engines.split(",")
    if "sqlite" in engines:
        path = Path(tempfile.gettempdir()) / f"smsgate-bench-console-v2-{args.messages}.db"
        if not path.exists():
            started = time.perf_counter()
            fill_sqlite(path, args.messages, now)
            print(
                f"sqlite: {args.messages:,} messages stored in {time.perf_counter() - started:.0f} s"
            )
        else:  # reused: its newest rows are as old as the file
            print(f"sqlite: reusing {path} ({args.messages:,} messages)")
        measure(f"sqlite:///{path}", f"SQLite, {args.messages:,} messages", args.repeat)
    if "postgresql" in engines:
        if not args.postgres:
            print("postgresql: skipped (set SMSGATE_TEST_POSTGRES_URL or --postgres)")
            return
        import psycopg

        schema = f"smsgate_bench_{secrets.token_hex(4)}"
        joiner = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{joiner}schema={schema}"
        try:
            started = time.perf_counter()
            fill_postgres(url, args.postgres, schema, args.messages, now)
            print(
                f"postgresql: {args.messages:,} messages stored in {time.perf_counter() - started:.0f} s"
            )
            measure(url, f"PostgreSQL, {args.messages:,} messages", args.repeat)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
