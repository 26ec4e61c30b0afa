"""The durable outbox: a store on SQLite or PostgreSQL, and the workers that empty it.

``Outbox(url).submit(message)`` stores a message and returns its id at once; a worker
(``smsgate worker`` or :meth:`Outbox.run_worker`) sends it through the configured routes with
retries, rate limits and failover, and records every state change. See docs/architecture.md,
"Delivery semantics", and docs/outbox.md for what it promises.
"""

from __future__ import annotations

from smsgate.outbox.migrate import LATEST as SCHEMA_VERSION
from smsgate.outbox.migrate import SchemaVersionError
from smsgate.outbox.outbox import Outbox
from smsgate.outbox.records import (
    MessageNotFound,
    MessageRecord,
    NotCancelable,
    Page,
    RecordResult,
    SubmitOutcome,
    SubmitReport,
)
from smsgate.outbox.store import EventRecord, ReceiptOutcome, State

__all__ = [
    "SCHEMA_VERSION",
    "EventRecord",
    "MessageNotFound",
    "MessageRecord",
    "NotCancelable",
    "Outbox",
    "Page",
    "ReceiptOutcome",
    "RecordResult",
    "SchemaVersionError",
    "State",
    "SubmitOutcome",
    "SubmitReport",
]
