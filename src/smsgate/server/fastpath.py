"""``POST /v1/messages`` without FastAPI's routing, dependency and serialization layers.

The submit endpoint is the one a busy client calls thousands of times a second, and on a small
machine FastAPI's per-request machinery costs more than storing the message. This ASGI
middleware answers exactly that method and path with the same functions the FastAPI route uses
(:func:`smsgate.server.submit.accept`, the same models and error shapes), so the OpenAPI schema,
which FastAPI generates from the route, describes it exactly. Everything else passes through.
It sits inside :class:`~smsgate.server.auth.ApiKeyMiddleware`, which has already checked the key.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, problems_error, send_json
from smsgate.server.models import MessageIn
from smsgate.server.submit import Submitter, accept

logger = logging.getLogger("smsgate.server")

PATH = "/v1/messages"
#: a message body is at most 1,600 characters; anything this large is not a message
MAX_BODY = 256 * 1024


class FastSubmit:
    def __init__(self, app: ASGIApp, submitter: Submitter) -> None:
        self.app = app
        self.submitter = submitter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers = await self._handle(scope, receive)
        except ApiError as exc:
            status, body, headers = exc.status, exc.body(), exc.headers or {}
        except Exception as exc:  # the store is down, or a bug: logged, never a traceback
            logger.error("POST %s failed: %s", PATH, exc, exc_info=exc)
            error = ApiError(
                503,
                "unavailable",
                "the server could not store the message",
                fix="retry later with the same Idempotency-Key",
                headers={"Retry-After": "1"},
            )
            status, body, headers = error.status, error.body(), error.headers or {}
        await send_json(send, status, body, headers)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, Any, dict[str, str]]:
        idempotency = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                idempotency = value.decode("latin-1")
        raw = await _read_body(receive)
        try:
            message = MessageIn.model_validate_json(raw)
        except ValidationError as exc:
            raise problems_error(exc.errors()) from None
        accepted = await accept(self.submitter, key_of(_State(scope)), message, idempotency)
        return accepted.status_code, accepted.body.model_dump(mode="json"), accepted.headers


class _State:
    """``request.state`` for a bare scope (the key the auth middleware stored)."""

    def __init__(self, scope: Scope) -> None:
        self.api_key = scope.get("state", {}).get("api_key")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "disconnected", "the client went away before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(
                413,
                "too_large",
                "the request body is over 256 KiB",
                fix="send one message per request, or use /v1/messages/batch",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
