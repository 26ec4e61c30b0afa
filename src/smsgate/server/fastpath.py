"""``POST /v1/messages`` and ``POST /v1/messages/batch`` without FastAPI's routing, dependency and
serialization layers.

The submit endpoints are the ones a busy client calls thousands of times a second (or with
10,000 messages at once), and on a small machine FastAPI's per-request machinery costs more than
storing a message: it parses a batch into Python objects and validates those, where pydantic
validates the JSON bytes directly. This ASGI middleware answers exactly those methods and paths
with the same functions the FastAPI routes use (:func:`smsgate.server.submit.accept` and
:func:`~smsgate.server.submit.accept_batch`, the same models and error shapes), so the OpenAPI
schema, which FastAPI generates from the routes, describes them exactly. Everything else passes
through. It sits inside :class:`~smsgate.server.auth.ApiKeyMiddleware`, which has already
checked the key.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, problems_error, send_json_bytes
from smsgate.server.models import MESSAGE_IN
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
                raw = await _read_body(receive, MAX_BATCH_BODY, "64 MiB", "send fewer messages")
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
            receive, MAX_BODY, "256 KiB", "send one message per request, or use " + BATCH_PATH
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


async def _read_body(receive: Receive, limit: int, size_text: str, fix: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "disconnected", "the client went away before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request body is over {size_text}", fix=fix)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
