"""Prometheus metrics, derived from the outbox's event history.

Every state change of every message is a row of ``smsgate_events``, written by whichever process
made it (this server, its in-process worker, standalone ``smsgate worker`` processes, webhook
receipts). :class:`EventFollower` reads the rows added since this server started and
:class:`Metrics` counts them, so the counters cover the whole store, not just this process:

- ``smsgate_messages_submitted_total{purpose}``
- ``smsgate_messages_sent_total{provider,route}``
- ``smsgate_messages_delivered_total{provider,route}``
- ``smsgate_messages_failed_total{provider,route,status,error}`` (failed, rejected, undelivered,
  expired, unknown; ``error`` is the error kind, e.g. ``invalid_recipient``, or ``receipt`` for
  a provider's delivery report)
- ``smsgate_send_retries_total{provider,route}``
- ``smsgate_send_latency_seconds{provider,route}``: from when a message was due (submitted, or
  its ``send_at``) to the provider accepting it
- ``smsgate_queue_depth{status}`` and ``smsgate_circuit_state{provider,state}``, read at scrape.

When several servers share a store, each reports the whole store's counts: scrape one, or
aggregate with ``max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping

import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.message import Status
from smsgate.outbox.tables.server import EventRow, GapWatch, ServerStore

logger = logging.getLogger("smsgate.server.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAILED = frozenset(
    {Status.FAILED, Status.REJECTED, Status.UNDELIVERED, Status.EXPIRED, Status.UNKNOWN}
)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
CIRCUIT_STATES = ("closed", "half_open", "open")
_STATUSES = {status.value: status for status in Status}
_SENDING = Status.SENDING.value


class Metrics:
    """The registry of one server; :meth:`observe` counts event rows."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter(
            "smsgate_messages_submitted", "Messages stored in the outbox.", ["purpose"], registry=r
        )
        self.sent = Counter(
            "smsgate_messages_sent",
            "Messages a provider accepted.",
            ["provider", "route"],
            registry=r,
        )
        self.delivered = Counter(
            "smsgate_messages_delivered",
            "Messages the provider reported delivered.",
            ["provider", "route"],
            registry=r,
        )
        self.failed = Counter(
            "smsgate_messages_failed",
            "Messages that ended without delivery.",
            ["provider", "route", "status", "error"],
            registry=r,
        )
        self.retries = Counter(
            "smsgate_send_retries",
            "Send attempts that will be tried again.",
            ["provider", "route"],
            registry=r,
        )
        self.latency = Histogram(
            "smsgate_send_latency_seconds",
            "From due to accepted by the provider.",
            ["provider", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.receipt_timeouts = Counter(
            "smsgate_receipt_timeouts",
            "Sent messages whose receipt did not come in time, by what became of them "
            "(a final status looked up at the provider, or unknown).",
            ["provider", "status"],
            registry=r,
        )
        self.webhooks = Counter(
            "smsgate_provider_webhooks",
            "Provider webhook requests by outcome.",
            ["provider", "kind", "outcome"],
            registry=r,
        )

    def observe(self, rows: Iterable[EventRow]) -> None:
        # Counted here first, then added once per label set: a batch of 10,000 submissions is
        # one increment, not 10,000 (each takes a lock and looks its labels up).
        counts: dict[tuple[Counter, tuple[str, ...]], int] = {}
        for row in rows:
            if row.from_status == row.to_status:
                continue  # a receipt that did not move the message
            status = _STATUSES.get(row.to_status)
            if status is None:
                continue
            if row.source.startswith("receipt-lookup:"):
                timed_out: tuple[str, ...] = (row.provider or "none", status.value)
                counts[(self.receipt_timeouts, timed_out)] = (
                    counts.get((self.receipt_timeouts, timed_out), 0) + 1
                )
            if row.source == "submit" and row.from_status is None:
                labels: tuple[str, ...] = (row.purpose or "unknown",)
                counter = self.submitted
            else:
                provider = row.provider or "none"
                route = row.route or "none"
                labels = (provider, route)
                if status is Status.SENT:
                    counter = self.sent
                    if row.from_status == _SENDING:
                        due = max(row.created_at or row.at, row.send_at or 0.0)
                        self.latency.labels(provider, route).observe(max(0.0, row.at - due))
                elif status is Status.DELIVERED:
                    counter = self.delivered
                elif status in _FAILED:
                    counter = self.failed
                    labels = (provider, route, status.value, _error_kind(row))
                elif row.from_status == _SENDING and status is Status.QUEUED:
                    counter = self.retries
                else:
                    continue
            key = (counter, labels)
            counts[key] = counts.get(key, 0) + 1
        for (counter, labels), count in counts.items():
            counter.labels(*labels).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _error_kind(row: EventRow) -> str:
    if row.source.startswith("webhook") or row.source.startswith("receipt"):
        return "receipt"
    if row.last_error:
        try:
            kind = json.loads(row.last_error).get("error")
        except (ValueError, AttributeError):
            kind = None
        if isinstance(kind, str) and kind.isidentifier():
            return kind
    return "unknown"


class StoreCollector(Collector):
    """Gauges read when Prometheus scrapes: queue depth by status, circuit breaker states."""

    def __init__(
        self,
        counts: Callable[[], Mapping[Status, int]],
        circuits: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self._counts = counts
        self._circuits = circuits

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "smsgate_queue_depth", "Messages in the outbox by status.", labels=["status"]
        )
        try:
            counts = self._counts()
        except Exception as exc:  # the store is down: say so through the other metrics
            logger.warning("queue depth unavailable: %s", exc)
            counts = {}
        for status in Status:
            depth.add_metric([status.value], counts.get(status, 0))
        yield depth
        if self._circuits is not None:
            circuit = GaugeMetricFamily(
                "smsgate_circuit_state",
                "1 for the state each provider's circuit breaker is in (this process's worker).",
                labels=["provider", "state"],
            )
            for provider, current in sorted(self._circuits().items()):
                for state in CIRCUIT_STATES:
                    circuit.add_metric([provider, state], 1.0 if current == state else 0.0)
            yield circuit


class EventFollower:
    """Feeds :class:`Metrics` with the event rows added since it started."""

    def __init__(
        self,
        store: ServerStore,
        metrics: Metrics,
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 1.0,
        batch: int = 5000,
        settle: float = 10.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.gaps = GapWatch(settle)
        self.position: int | None = None

    def step(self) -> int:
        """Read and count what is new; returns the rows read (synchronous: run it on a thread)."""
        if self.position is None:
            self.position = self.store.last_event_id()
            return 0
        total = 0
        while True:
            read = self.store.events_after(self.position, self.batch)
            rows = self.gaps.settled(read, self.position, self.clock.time())
            if not rows:
                return total
            self.metrics.observe(rows)
            self.position = rows[-1].id
            total += len(rows)
            if len(rows) < self.batch:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.step)
            except Exception as exc:
                logger.warning("reading events for metrics failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
