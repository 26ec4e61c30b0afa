"""API keys: created once, stored hashed, checked in constant time, limited per key.

A key reads ``sgk_<id>_<secret>``. The id finds the row; only the SHA-256 of the secret is stored
(the secret has 256 random bits, so a fast hash is as strong as a slow one and costs microseconds
per request). :class:`ApiKeyMiddleware` guards every ``/v1`` path: a request without a valid key
gets 401 and nothing else, a key over its rate gets 429 with ``Retry-After``. What a key may do
(purposes, senders, quota) is checked where messages are submitted (``submit.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.message import Purpose
from smsgate.outbox.tables.server import ApiKeyRecord, ServerStore
from smsgate.ratelimit import Rate, TokenBucket, parse_rate
from smsgate.server.errors import send_json

KEY_PREFIX = "sgk"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret or len(key) > 200:
        return None
    if not key_id.isalnum() or not key_id.isascii():
        return None
    return key_id, secret


def parse_quota(text: str) -> Rate:
    """``"10000/d"``: messages per fixed window (``s``, ``min``, ``h`` or ``d``)."""
    if "/" not in text:
        raise ConfigError(
            f"quota {text!r} needs a window: write COUNT/UNIT, e.g. 10000/d or 500/h",
            field="quota",
        )
    quota = parse_rate(text, "quota")
    if quota.count != int(quota.count):
        raise ConfigError(f"quota {text!r}: the count must be a whole number", field="quota")
    return quota


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: ``key`` is the only time the secret is seen."""

    key: str
    record: ApiKeyRecord


def create_key(
    store: ServerStore,
    name: str,
    *,
    purposes: Sequence[str] = (),
    senders: Sequence[str] = (),
    rate: str | None = None,
    burst: int | None = None,
    quota: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> NewKey:
    """Validate the restrictions, store the key hashed and return it (print it once)."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ConfigError("the key name must be 1-100 printable characters", field="name")
    # "verify": the scope of /v1/verifications; a key limited to it sends no other message
    allowed = [*(p.value for p in Purpose), "verify"]
    for purpose in purposes:
        if purpose not in allowed:
            raise ConfigError(
                f"purpose {purpose!r} is not one of {', '.join(allowed)}", field="purpose"
            )
    for sender in senders:
        if not sender.strip() or not sender.isprintable():
            raise ConfigError(f"sender {sender!r} is not a sender id or number", field="sender")
    if rate is not None:
        parse_rate(rate, "rate")
    if burst is not None and (rate is None or burst < 1):
        raise ConfigError("burst must be at least 1 and needs a rate", field="burst")
    if quota is not None:
        parse_quota(quota)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        id=key_id,
        name=name,
        secret_hash=hash_secret(secret),
        purposes=tuple(dict.fromkeys(purposes)) or None,
        senders=tuple(dict.fromkeys(s.strip() for s in senders)) or None,
        rate=rate,
        burst=burst,
        quota=quota,
        created_at=clock.time(),
    )
    store.add_key(record)
    return NewKey(f"{KEY_PREFIX}_{key_id}_{secret}", record)


@dataclass(slots=True)
class ApiKey:
    """A verified key as a request sees it, with its in-process rate bucket."""

    record: ApiKeyRecord
    bucket: TokenBucket | None = None
    quota: Rate | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name


@dataclass(slots=True)
class _Cached:
    key: ApiKey | None
    loaded_at: float


@dataclass(slots=True)
class Authenticator:
    """Finds and verifies keys, caching rows for ``ttl`` seconds (a revoke takes effect within
    that time) and keeping one token bucket per key in this process."""

    store: ServerStore
    clock: Clock = SYSTEM_CLOCK
    ttl: float = 5.0
    max_cached: int = 10_000
    _cache: OrderedDict[str, _Cached] = field(default_factory=OrderedDict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def authenticate(self, header: str | None) -> ApiKey | None:
        """The key of an ``Authorization: Bearer ...`` header, or None when it is not valid."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        parts = split_key(token.strip())
        if parts is None:
            hmac.compare_digest(_DUMMY_HASH, hash_secret(token))
            return None
        key_id, secret = parts
        key = await self._find(key_id)
        expected = _DUMMY_HASH if key is None else key.record.secret_hash
        if not hmac.compare_digest(expected, hash_secret(secret)) or key is None:
            return None
        return key

    async def _find(self, key_id: str) -> ApiKey | None:
        now = self.clock.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached.loaded_at < self.ttl:
            return cached.key
        record = await anyio.to_thread.run_sync(self.store.get_key, key_id)
        key = None if record is None or record.revoked_at is not None else self._key(record)
        with self._lock:
            self._cache[key_id] = _Cached(key, now)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return key

    def _key(self, record: ApiKeyRecord) -> ApiKey:
        bucket = None
        if record.rate is not None:
            rate = parse_rate(record.rate, "rate")
            burst = record.burst or max(1, math.ceil(rate.count))
            bucket = self._buckets.get(record.id)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = TokenBucket(rate, burst, clock=self.clock)
                self._buckets[record.id] = bucket
        quota = None if record.quota is None else parse_quota(record.quota)
        return ApiKey(record, bucket, quota)

    def forget(self, key_id: str) -> None:
        """Drop a cached row (after a revoke in this process)."""
        with self._lock:
            self._cache.pop(key_id, None)


class ApiKeyMiddleware:
    """Guards paths under ``prefix``: 401 without a valid key, 429 over the key's rate.

    The key is put in ``scope["state"]["api_key"]`` for the endpoints. It runs before routing and
    body parsing, so an unauthenticated request learns nothing, not even whether its body or
    path is valid.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, prefix: str = "/v1/") -> None:
        self.app = app
        self.authenticator = authenticator
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (
            scope["path"].startswith(self.prefix) or scope["path"] == self.prefix.rstrip("/")
        ):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        key = await self.authenticator.authenticate(header)
        if key is None:
            await _deny(
                send,
                401,
                "unauthorized",
                "a valid API key is required",
                "send Authorization: Bearer sgk_... (smsgate keys create NAME makes one)",
                {"WWW-Authenticate": 'Bearer realm="smsgate"'},
            )
            return
        if key.bucket is not None:
            wait = key.bucket.try_acquire()
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                await _deny(
                    send,
                    429,
                    "rate_limited",
                    f"API key {key.name!r} is over its rate of {key.bucket.rate}",
                    f"retry after {seconds} s or ask for a higher rate",
                    {"Retry-After": str(seconds)},
                )
                return
        scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)


async def _deny(
    send: Send, status: int, error: str, message: str, fix: str, headers: dict[str, str]
) -> None:
    """Answer with the API's JSON error shape, before any routing happened."""
    body = {"error": error, "message": message, "field": None, "fix": fix}
    await send_json(send, status, body, headers)


def key_of(state: Any) -> ApiKey:
    """The key the middleware verified for this request."""
    key = getattr(state, "api_key", None)
    if not isinstance(key, ApiKey):
        raise RuntimeError("no API key on this request: is ApiKeyMiddleware installed?")
    return key
