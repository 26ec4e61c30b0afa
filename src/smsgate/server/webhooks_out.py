"""User webhooks: normalized events, signed the Standard Webhooks way, from a durable queue.

Each delivery is a POST of ``{"id", "type", "timestamp", "data"}`` with three headers:

- ``webhook-id``: the event id (the same on every retry: receivers dedupe on it);
- ``webhook-timestamp``: seconds since the epoch of this attempt;
- ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` keyed
  with the base64-decoded part of the subscription secret (``whsec_...``).

Any 2xx answer is success. Anything else (other statuses, redirects, timeouts, refused
connections) is retried with exponential backoff and jitter until the retry horizon (24 hours by
default) has passed since the event was queued; the last attempt happens at the horizon, and a
delivery that fails it becomes a dead letter, listed by the API and re-queued on request.
Deliveries are rows of the store, so they survive restarts, and they are jobs of the store's one
lease queue (as messages are): each attempt is made under a lease, so that several servers on one
store never make the same attempt twice, and a server that dies mid-attempt leaves the delivery
to be taken over once its lease expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio.to_thread

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import SmsgateError, WebhookVerificationError
from smsgate.ids import new_id
from smsgate.outbox.store import dumps
from smsgate.outbox.tables.server import ClaimedDelivery, OutboundEvent, ServerStore
from smsgate.providers.transport import (
    HttpRequest,
    HttpTransport,
    Limits,
    Timeout,
    TransportOptions,
)
from smsgate.retry import RetryPolicy

logger = logging.getLogger("smsgate.server.webhooks")

SECRET_PREFIX = "whsec_"
#: how far a receiver should trust a timestamp (Standard Webhooks' recommendation)
DEFAULT_TOLERANCE = 300.0


# -- signing -----------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the webhook secret is not whsec_<base64>") from None


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Check a delivery as a receiver would; raises :class:`WebhookVerificationError`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    event_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not event_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a whole number") from None
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now (a replay?)")
    expected = sign(secret, event_id, timestamp, body)
    # The header may carry several space-separated signatures (during a secret rotation).
    if not any(hmac.compare_digest(expected, given) for given in signatures.split()):
        raise WebhookVerificationError("webhook-signature does not match")


# -- events ------------------------------------------------------------------------------------


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def make_event(
    event_type: str, data: Mapping[str, Any], at: float, event_id: str | None = None
) -> OutboundEvent:
    """A normalized event; ``event_id`` defaults to a new unique id."""
    ident = event_id or new_id("evt")
    body = {"id": ident, "type": event_type, "timestamp": iso(at), "data": dict(data)}
    return OutboundEvent(ident, event_type, dumps(body))


EVENT_TYPES: tuple[str, ...] = (
    "message.queued",
    "message.scheduled",
    "message.sending",
    "message.sent",
    "message.delivered",
    "message.undelivered",
    "message.failed",
    "message.rejected",
    "message.expired",
    "message.canceled",
    "message.unknown",
    "inbound.received",
    "suppression.added",
    "suppression.removed",
    "verify.blocked",
)


# -- the retry schedule ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Backoff between attempts, capped, until ``horizon`` seconds after the event was queued."""

    horizon: float = 24 * 3600.0
    backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=1_000, base_delay=5.0, max_delay=3600.0, jitter="equal"
        )
    )

    def next_attempt(
        self, created_at: float, attempts: int, now: float, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after ``attempts`` failed attempts, or None: dead letter."""
        deadline = created_at + self.horizon
        if now >= deadline:
            return None
        return min(now + self.backoff.delay(attempts, rng), deadline)


# -- the dispatcher ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status: int | None
    error: str | None


class WebhookDispatcher:
    """Sends due deliveries: :meth:`run_once` for one pass, :meth:`run` until stopped."""

    def __init__(
        self,
        store: ServerStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        schedule: RetrySchedule | None = None,
        timeout: float = 10.0,
        batch: int = 50,
        poll_interval: float = 0.5,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        #: whose leases this dispatcher's claims are (one per process, like a worker's id)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self.schedule = schedule or RetrySchedule()
        self.timeout = timeout
        self.batch = batch
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()
        # smsgate's one HTTP client: proxies from the environment, redirects returned (and so
        # failed attempts), the whole attempt bounded by ``timeout``. Absolute URLs only.
        self._http = HttpTransport(
            None,
            provider="the webhook receiver",
            options=TransportOptions(
                timeout=Timeout(connect=timeout, read=timeout, write=timeout, total=timeout),
                limits=Limits(max_connections=batch, max_response_bytes=1_000_000),
            ),
        )
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Start the next pass now (new deliveries were queued)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every due delivery (up to ``batch``); returns how many were attempted."""
        now = self.clock.time()
        # The lease outlives the attempt's timeout, so no other server takes it meanwhile.
        lease_until = now + self.timeout * 3 + 30
        claimed = await anyio.to_thread.run_sync(
            self.store.claim_deliveries, self.owner, self.batch, now, lease_until
        )
        if claimed:
            await asyncio.gather(*(self._attempt(item) for item in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                attempted = await self.run_once()
            except Exception:
                logger.exception("webhook dispatch pass failed; retrying")
                attempted = 0
            if attempted >= self.batch:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
            await asyncio.wait(
                waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()

    async def _attempt(self, item: ClaimedDelivery) -> None:
        delivery = item.delivery
        result = await self.post(item)
        now = self.clock.time()
        attempts = delivery.attempts + 1
        if result.ok:
            state, next_at = "delivered", None
        else:
            next_at = self.schedule.next_attempt(delivery.created_at, attempts, now, self._rng)
            state = "pending" if next_at is not None else "dead"
            logger.info(
                "webhook %s to %s failed (attempt %d): %s%s",
                delivery.event_id,
                item.url,
                attempts,
                result.error or result.status,
                "; dead-lettered" if state == "dead" else "",
            )
        await anyio.to_thread.run_sync(
            lambda: self.store.finish_delivery(
                delivery.id,
                state=state,
                status=result.status,
                error=result.error,
                next_attempt_at=next_at,
                now=now,
            )
        )

    async def post(self, item: ClaimedDelivery) -> AttemptResult:
        body = item.delivery.payload.encode()
        headers = signed_headers(item.secret, item.delivery.event_id, int(self.clock.time()), body)
        headers["user-agent"] = "smsgate-webhooks"
        url, auth = _split_credentials(item.url)
        try:
            response = await self._http.request(
                HttpRequest("POST", url, data=body, headers=headers, auth=auth)
            )
        except SmsgateError as exc:
            # The transport's messages name no URL part that may hold a secret.
            return AttemptResult(False, None, exc.message[:500])
        except ValueError as exc:
            return AttemptResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        ok = response.ok
        return AttemptResult(ok, response.status, None if ok else f"HTTP {response.status}")

    async def aclose(self) -> None:
        await self._http.aclose()


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without ``user:password@`` and those credentials as Basic auth, if any."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


def subscriptions_for(patterns: Sequence[str]) -> list[str]:
    """Check event type patterns a user subscribes to; returns them de-duplicated."""
    known = set(EVENT_TYPES)
    families = {t.split(".", 1)[0] + ".*" for t in EVENT_TYPES}
    result: list[str] = []
    for pattern in patterns:
        if pattern != "*" and pattern not in known and pattern not in families:
            raise ValueError(
                f"unknown event type {pattern!r}; use '*', a family such as 'message.*', "
                f"or one of {', '.join(EVENT_TYPES)}"
            )
        if pattern not in result:
            result.append(pattern)
    return result
