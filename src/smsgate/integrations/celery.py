"""A ready Celery task that sends one text, once, even when a worker dies mid-task.

>>> from smsgate.integrations.celery import send_sms
>>> send_sms.delay("+15555550100", "Your appointment is tomorrow at 10")
>>> send_sms.apply_async(args=["+15555550100", "Reminder"], kwargs={"send_at": when})  # eta
>>> send_sms.delay_on_commit("+15555550100", "Order shipped")   # Django: after COMMIT only

Settings (``app.conf``): ``smsgate`` (a mapping of ``smsgate.toml`` keys or its path; default:
``SMSGATE_CONFIG``) and ``smsgate_ledger_url`` (a Redis URL; default: the result backend's or
the broker's when they are Redis).

The task is ``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-task leaves its
message on the broker, which delivers it again. Sending twice is then prevented by a ledger in
Redis keyed by an idempotency key derived from the task (``celery:<task id>``, or the
``idempotency_key`` you pass): before sending, the task claims the key (``SET NX``); after, it
records the result. A redelivered task finding the result returns it without sending. One finding
only the claim (the previous worker died between claiming and recording) cannot know whether the
provider got the message, and resolves it as the outbox resolves an ambiguous send: a provider
that drops repeated keys (smsroute, Telnyx) is asked again with the same key; one that can look
messages up (Twilio) is asked whether it has it, and only a "no" sends; any other stops with status
``unknown`` rather than risk a second text. A claim younger than ``smsgate_claim_timeout``
(default 120 s) may belong to a worker still sending: the task retries later instead.

Retries: :class:`~smsgate.TransientError` (the request did not take effect) and
:class:`~smsgate.RateLimited` (waiting at least its ``retry_after``) are retried with the
config's retry policy (``[retry]``: attempts, base delay, jitter); other errors fail the task.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import datetime
from typing import Any

from celery import Task, shared_task

from smsgate.errors import (
    AmbiguousSend,
    ConfigError,
    InvalidMessage,
    RateLimited,
    SmsgateError,
    TransientError,
)
from smsgate.message import Message, SendResult, Status

LEDGER_PREFIX = "smsgate:celery:"
#: how long a ledger entry is kept (a redelivery later than this could send again)
LEDGER_TTL = 7 * 24 * 3600
DEFAULT_CLAIM_TIMEOUT = 120.0

_lock = threading.Lock()
_built: dict[int, tuple[Any, Any, Any]] = {}


class Ledger:
    """The Redis entries that make a redelivered task idempotent (see the module docstring)."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)

    def claim(self, key: str) -> tuple[str, dict[str, Any] | None, float]:
        """(``new``, None, now) when this call claimed ``key``; else the entry found:
        (``sending``, None, claimed_at) or (``done``, result, claimed_at)."""
        now = time.time()
        entry = json.dumps({"state": "sending", "at": now})
        if self.client.set(LEDGER_PREFIX + key, entry, nx=True, ex=LEDGER_TTL):
            return "new", None, now
        raw = self.client.get(LEDGER_PREFIX + key)
        if raw is None:  # released in between: try once more
            return self.claim(key)
        found = json.loads(raw)
        return str(found["state"]), found.get("result"), float(found["at"])

    def complete(self, key: str, result: dict[str, Any]) -> None:
        entry = json.dumps({"state": "done", "at": time.time(), "result": result})
        self.client.set(LEDGER_PREFIX + key, entry, ex=LEDGER_TTL)

    def release(self, key: str) -> None:
        """Forget a claim whose send certainly did not happen (a transient error)."""
        self.client.delete(LEDGER_PREFIX + key)


def _ledger_url(app: Any) -> str:
    url = app.conf.get("smsgate_ledger_url")
    if url:
        return str(url)
    for candidate in (app.conf.result_backend, app.conf.broker_url):
        if isinstance(candidate, str) and candidate.startswith(("redis://", "rediss://")):
            return candidate
    raise ConfigError(
        "smsgate's Celery task needs Redis for its idempotency ledger: set "
        "app.conf.smsgate_ledger_url = 'redis://127.0.0.1:6379/0' (or use a Redis broker)",
        field="smsgate_ledger_url",
    )


def resources(app: Any) -> tuple[Any, Any, Any]:
    """(settings, gateway, ledger) of ``app`` in this worker process, built on first use."""
    with _lock:
        found = _built.get(id(app))
        if found is None:
            from smsgate.gateway import Gateway
            from smsgate.integrations import core

            settings = core.load_settings(app.conf.get("smsgate"), setting="app.conf.smsgate")
            providers = core.build_providers(settings.config)
            if not providers:
                raise ConfigError(
                    "app.conf.smsgate has no providers: add a providers table with a url",
                    field="providers",
                )
            found = (settings, Gateway(list(providers.values())), Ledger(_ledger_url(app)))
            _built[id(app)] = found
        return found


def result_dict(result: SendResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "to": result.to,
        "status": result.status.value,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "segments": result.segments,
        "error": str(result.error) if result.error else None,
    }


def _as_eta(value: Any) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidMessage(
            f"send_at: {value!r} needs a time zone (e.g. 2026-03-01T09:00:00+00:00)",
            field="send_at",
        )
    return when


class SmsTask(Task):  # type: ignore[misc]
    """``acks_late`` and requeued when the worker is lost; ``send_at`` becomes ``eta``."""

    acks_late = True
    reject_on_worker_lost = True
    max_retries = None  # the config's retry policy decides

    def apply_async(
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:  # the broker holds the message until send_at
        kwargs = dict(kwargs or {})
        send_at = kwargs.pop("send_at", None)
        if send_at is not None:
            options.setdefault("eta", _as_eta(send_at))
        return super().apply_async(args, kwargs, **options)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``delay`` once Django's current transaction commits (nothing if it rolls back)."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(self, *args: Any, **kwargs: Any) -> None:
        from django.db import transaction

        transaction.on_commit(functools.partial(self.apply_async, *args, **kwargs))


@shared_task(bind=True, base=SmsTask, name="smsgate.send_sms")  # type: ignore[untyped-decorator]
def send_sms(self: Any, to: str, body: str = "", **fields: Any) -> dict[str, Any]:
    """Send one text; returns the result as a dict (``status``, ``provider_message_id``...)."""
    settings, gateway, ledger = resources(self.app)
    key = fields.pop("idempotency_key", None) or f"celery:{self.request.id}"
    message = Message(to=to, body=body, idempotency_key=key, **fields)
    state, done, claimed_at = ledger.claim(key)
    if state == "done":
        assert done is not None
        return dict(done)
    if state == "sending":
        timeout = float(self.app.conf.get("smsgate_claim_timeout", DEFAULT_CLAIM_TIMEOUT))
        young = time.time() - claimed_at
        if young < timeout:
            raise self.retry(countdown=timeout - young)
        resolved = _resolve_interrupted(gateway, message, claimed_at)
        if resolved is not None:
            ledger.complete(key, resolved)
            return resolved
    policy = settings.config.retry
    try:
        result = gateway.send(message)
    except (TransientError, RateLimited) as exc:
        ledger.release(key)  # the provider did not take it: sending again is safe
        attempt = self.request.retries + 1
        if not policy.allows_retry(attempt):
            raise
        raise self.retry(exc=exc, countdown=policy.delay(attempt, error=exc)) from None
    except AmbiguousSend as exc:
        # Keep the claim: the next run asks the provider before sending again.
        attempt = self.request.retries + 1
        if not policy.allows_retry(attempt):
            ledger.complete(key, _unknown(message, str(exc)))
            raise
        raise self.retry(exc=exc, countdown=policy.delay(attempt, error=exc)) from None
    except SmsgateError as exc:
        ledger.complete(key, {**_unknown(message, str(exc)), "status": Status.FAILED.value})
        raise
    outcome = result_dict(result)
    ledger.complete(key, outcome)
    return outcome


def _unknown(message: Message, reason: str) -> dict[str, Any]:
    return {
        "id": message.id,
        "to": message.to,
        "status": Status.UNKNOWN.value,
        "provider": None,
        "provider_message_id": None,
        "segments": None,
        "error": reason,
    }


def _resolve_interrupted(
    gateway: Any, message: Message, claimed_at: float
) -> dict[str, Any] | None:
    """A previous run claimed the key and died: the result to record without sending, or None
    when sending is safe (the provider dedupes on our key, or says it never got the message)."""
    from smsgate.gateway import run_sync

    provider = next(iter(gateway.providers.values()))
    if provider.capabilities.dedupes:
        return None
    if provider.capabilities.reconcile:
        found = run_sync(provider.areconcile(message, since=claimed_at - 1))
        return None if found is None else result_dict(found)
    return _unknown(
        message,
        f"a worker died while sending, and {provider.display_name} can neither drop a repeat "
        "nor be asked whether it has the message: not sent again",
    )
