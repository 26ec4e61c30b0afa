"""Store first, then send: the durable outbox with an idempotency key and a worker.

    SMSGATE_PROVIDER=twilio://SID:TOKEN@+15017122661 python examples/durable_outbox.py

A message is committed to the store before anything is sent, so a crash loses nothing; the same
idempotency key always returns the first message, so a retried request never sends twice.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import smsgate
from smsgate.providers import create_provider


async def main() -> int:
    folder = tempfile.mkdtemp(prefix="smsgate-example-")
    with smsgate.Outbox(f"sqlite:///{folder}/outbox.db", migrate=True) as outbox:
        order = smsgate.Message(
            to="+15555550100", body="Order 42 has shipped.", idempotency_key="order-42"
        )
        first = outbox.submit(order)
        again = outbox.submit(order)  # a retried request: the same message, not a second one
        print(f"submitted {first}; submitted again: {again} (same: {first == again})")

        provider = create_provider(os.environ["SMSGATE_PROVIDER"], name="primary")
        stats = await outbox.arun_worker([provider], until_idle=True, close_providers=True)
        record = outbox.status(first)
        print(f"worker sent {stats.sent}; {record.id} is {record.status.value}")
        for event in record.events:
            print(
                f"  {event.from_status.value if event.from_status else '-':>9} -> "
                f"{event.to_status.value:<9} {event.source}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
