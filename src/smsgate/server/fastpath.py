"""``POST /v1/messages``, ``POST /v1/messages/batch`` and providers' ``POST
/webhooks/{provider}/status`` without FastAPI's routing, dependency and serialization layers.

The submit endpoints are the ones a busy client calls thousands of times a second (or with
10,000 messages at once), and on a small machine FastAPI's per-request machinery costs more than
storing a message: it parses a batch into Python objects and validates those, where pydantic
validates the JSON bytes directly. This ASGI middleware answers exactly those methods and paths
with the same functions the FastAPI routes use (:func:`smsgate.server.submit.accept` and
:func:`~smsgate.server.submit.accept_batch`, the same models and error shapes), so the OpenAPI
schema, which FastAPI generates from the routes, describes them exactly. Everything else passes
through. It sits inside :class:`~smsgate.server.auth.ApiKeyMiddleware`, which has already
checked the key. :class:`FastReceipts` does the same for delivery receipts (see its docstring).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgate.errors import SmsgateError
from smsgate.providers.base import WebhookRequest
from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, from_smsgate, problems_error, send_json_bytes
from smsgate.server.models import MESSAGE_IN
from smsgate.server.routes.providers import MAX_BODY as WEBHOOK_MAX_BODY
from smsgate.server.routes.providers import body_too_large, public_url_of, record_status
from smsgate.server.services import Services
from smsgate.server.submit import Submitter, accept, accept_batch

logger = logging.getLogger("smsgate.server")

PATH = "/v1/messages"
BATCH_PATH = "/v1/messages/batch"
#: a message body is at most 1,600 characters; anything this large is not a message
MAX_BODY = 256 * 1024
#: 10,000 messages of 1,600 characters and their fields fit many times over
MAX_BATCH_BODY = 64 * 1024 * 1024


class FastSubmit:
    def __init__(self, app: ASGIApp, submitter: Submitter) -> None:
        self.app = app
        self.submitter = submitter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path not in (PATH, BATCH_PATH) or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        try:
            if path == PATH:
                status, payload, headers = await self._single(scope, receive)
            else:
                status = 200
                raw = await _read_body(
                    receive, MAX_BATCH_BODY, _too_large("64 MiB", "send fewer messages")
                )
                payload = await accept_batch(self.submitter, key_of(_State(scope)), raw)
        except ApiError as exc:
            status, payload, headers = exc.status, exc.json(), exc.headers or {}
        except Exception as exc:  # the store is down, or a bug: logged, never a traceback
            logger.error("POST %s failed: %s", path, exc, exc_info=exc)
            error = ApiError(
                503,
                "unavailable",
                "the server could not store the message(s)",
                fix="retry later with the same Idempotency-Key (or idempotency_key per message)",
                headers={"Retry-After": "1"},
            )
            status, payload, headers = error.status, error.json(), error.headers or {}
        await send_json_bytes(send, status, payload, headers)

    async def _single(self, scope: Scope, receive: Receive) -> tuple[int, bytes, dict[str, str]]:
        idempotency = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                idempotency = value.decode("latin-1")
        raw = await _read_body(
            receive,
            MAX_BODY,
            _too_large("256 KiB", "send one message per request, or use " + BATCH_PATH),
        )
        try:
            message = MESSAGE_IN.validate_json(raw)
        except ValidationError as exc:
            raise problems_error(exc.errors()) from None
        accepted = await accept(self.submitter, key_of(_State(scope)), message, idempotency)
        return accepted.status_code, accepted.body.model_dump_json().encode(), accepted.headers


class _State:
    """``request.state`` for a bare scope (the key the auth middleware stored)."""

    def __init__(self, scope: Scope) -> None:
        self.api_key = scope.get("state", {}).get("api_key")


def _too_large(size_text: str, fix: str) -> Callable[[], ApiError]:
    return lambda: ApiError(413, "too_large", f"the request body is over {size_text}", fix=fix)


async def _read_body(receive: Receive, limit: int, too_large: Callable[[], ApiError]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "disconnected", "the client went away before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastReceipts:
    """``POST /webhooks/{provider}/status`` without FastAPI's routing, dependency and response
    layers: providers call it once or twice for every message sent, as often as clients submit.

    It answers only for a configured provider, with the route's own function
    (:func:`smsgate.server.routes.providers.record_status`: verify, parse, record durably, then
    answer) and the same answers and error shapes; anything else (GET callbacks, inbound
    webhooks, unknown providers) passes through to the routes.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        impl = None
        if scope["type"] == "http" and scope["method"] == "POST":
            name = status_webhook_provider(scope["path"])
            if name is not None:
                impl = self.services.providers.get(name)
        if impl is None:
            await self.app(scope, receive, send)
            return
        svc = self.services
        headers: dict[str, str] = {}
        try:
            body = await _read_body(receive, WEBHOOK_MAX_BODY, body_too_large)
            webhook = WebhookRequest(
                url=public_url_of(URL(scope=scope), svc.settings.public_url),
                method="POST",
                headers=_headers(scope),
                body=body,
            )
            received, stored = await record_status(svc, impl, webhook)
            status = 200
            payload = b'{"received":%d,"stored":%d}' % (received, stored)
        except ApiError as exc:
            status, payload, headers = exc.status, exc.json(), exc.headers or {}
        except SmsgateError as exc:
            error = from_smsgate(exc)
            status, payload, headers = error.status, error.json(), error.headers or {}
        except Exception as exc:  # the store is down, or a bug: logged, never a traceback
            logger.error("POST %s failed: %s", scope["path"], exc, exc_info=exc)
            error = ApiError(
                503,
                "unavailable",
                "the server could not complete the request; it was logged",
                fix="retry later; if it persists, check the server log and the store",
                headers={"Retry-After": "1"},
            )
            status, payload, headers = error.status, error.json(), error.headers or {}
        await send_json_bytes(send, status, payload, headers)


def status_webhook_provider(path: str) -> str | None:
    """NAME for /webhooks/NAME/status (as the route's ``{provider}`` matches it), else None."""
    if not (path.startswith("/webhooks/") and path.endswith("/status")):
        return None
    name = path[len("/webhooks/") : -len("/status")]
    return name if name and "/" not in name else None


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers as the route's ``dict(request.headers)`` has them: names in lower
    case, the first value of a repeated one."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers
