"""A bounded load: 20,000 API submissions, single and batched at once; no error, all stored."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from tests.server.conftest import Running

SINGLE = 10_000
BATCHES = 5
PER_BATCH = 2_000
CONCURRENCY = 64


async def _load(running: Running) -> tuple[list[int], list[dict[str, int]]]:
    headers = {"Authorization": f"Bearer {running.key}"}
    statuses: list[int] = []
    summaries: list[dict[str, int]] = []
    numbers = iter(range(SINGLE))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY + BATCHES)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:

        async def singles() -> None:
            for n in numbers:
                body = {"to": f"+1555{n % 10_000_000:07d}", "body": f"single {n}"}
                async with session.post(
                    running.url + "/v1/messages",
                    json=body,
                    headers={"Idempotency-Key": f"single-{n}"},
                ) as r:
                    await r.read()
                    statuses.append(r.status)

        async def batch(b: int) -> None:
            messages = [
                {"to": f"+4477009{n:05d}", "body": f"batch {b}", "idempotency_key": f"b{b}-{n}"}
                for n in range(PER_BATCH)
            ]
            async with session.post(
                running.url + "/v1/messages/batch", json={"messages": messages}
            ) as r:
                statuses.append(r.status)
                body = await r.json()
                summaries.append({k: body[k] for k in ("accepted", "duplicates", "rejected")})

        await asyncio.gather(
            *(singles() for _ in range(CONCURRENCY)), *(batch(b) for b in range(BATCHES))
        )
    return statuses, summaries


@pytest.mark.slow
def test_twenty_thousand_submissions(server: Running) -> None:
    started = time.monotonic()
    statuses, summaries = asyncio.run(_load(server))
    elapsed = time.monotonic() - started
    assert statuses.count(201) == SINGLE and statuses.count(200) == BATCHES, set(statuses)
    assert summaries == [{"accepted": PER_BATCH, "duplicates": 0, "rejected": 0}] * BATCHES
    counts = server.outbox.counts()
    assert sum(counts.values()) == SINGLE + BATCHES * PER_BATCH, counts
    assert elapsed < 120
