"""Every error the API answers is JSON that names the field and the fix; never a traceback.

``{"error": "invalid_recipient", "message": "...", "field": "to", "fix": "..."}``, with
``errors`` listing every problem when a request body had several.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from smsgate.errors import (
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    RateLimited,
    SmsgateError,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.outbox.store import dumps

logger = logging.getLogger("smsgate.server")

#: HTTP status per error kind (anything else an endpoint lets through is a 503: a dependency,
#: usually the store or a provider, is not available)
_STATUS: dict[type[SmsgateError], int] = {
    InvalidRecipient: 422,
    InvalidMessage: 422,
    OptedOut: 422,
    UnsupportedFeature: 422,
    RateLimited: 429,
    WebhookVerificationError: 403,
}


class ApiError(Exception):
    """An error answer: ``raise ApiError(404, "not_found", "no message msg_...")``."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        headers: dict[str, str] | None = None,
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.fix = fix
        self.headers = headers
        self.problems = problems

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.error,
            "message": self.message,
            "field": self.field,
            "fix": self.fix,
        }
        if self.problems:
            body["errors"] = self.problems
        return body

    def json(self) -> bytes:
        return dumps(self.body()).encode()

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    """Answer a bare ASGI request with JSON (for the middlewares that answer before routing)."""
    payload = dumps(body).encode()
    await send_json_bytes(send, status, payload, headers)


async def send_json_bytes(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    """Answer a bare ASGI request with ``payload``, JSON already encoded."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw.extend((name.lower().encode(), value.encode()) for name, value in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def not_found(what: str, ident: str, field: str = "id") -> ApiError:
    return ApiError(
        404, "not_found", f"no {what} {ident!r}", field=field, fix=f"check the {what} id"
    )


def from_smsgate(error: SmsgateError) -> ApiError:
    """The API answer for an error of the taxonomy (the message already says what to do)."""
    status = next((code for cls, code in _STATUS.items() if isinstance(error, cls)), 400)
    message, _, fix = error.message.partition("; ")
    headers = None
    if isinstance(error, RateLimited) and error.retry_after is not None:
        headers = {"Retry-After": str(max(1, round(error.retry_after)))}
    return ApiError(
        status, error.kind, message, field=error.field, fix=fix or None, headers=headers
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method the API answers on this path, from its OpenAPI schema. Starlette's 405
    names only the first route that matched the path, and a path such as ``/v1/messages`` has
    one route per method."""
    # OpenAPI's rule: a concrete path (/v1/webhooks/deliveries) wins over a template that
    # also matches it (/v1/webhooks/{webhook_id})
    matches: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            matches.append((template.count("{"), {method.upper() for method in operations}))
    fewest = min((params for params, _ in matches), default=0)
    methods = set().union(*(found for params, found in matches if params == fewest))
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def problems_error(items: Sequence[Any], *, located: bool = False) -> ApiError:
    """422 for pydantic's validation errors: the first names the field, all are listed.

    ``located``: FastAPI's errors, whose location starts with where the value was (body,
    query, header, path); that part is not the field's name.
    """
    problems = [_problem(item, located) for item in items]
    first = problems[0] if problems else {"field": None, "message": "the request is not valid"}
    return ApiError(
        422,
        "invalid_request",
        str(first["message"]),
        field=first["field"],
        fix=_fix(items[0]) if items else None,
        problems=problems,
    )


def _problem(item: Any, located: bool) -> dict[str, Any]:
    location = [str(part) for part in item.get("loc", ())]
    if located and location and location[0] in ("body", "query", "header", "path", "cookie"):
        location = location[1:]
    field = ".".join(location) or None
    message = str(item.get("msg", "invalid value"))
    return {"field": field, "message": f"{field}: {message}" if field else message}


def _fix(item: Any) -> str | None:
    kind = str(item.get("type", ""))
    if kind == "missing":
        return "add the field"
    if kind == "json_invalid":
        return "send a valid JSON body with Content-Type: application/json"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "send a value of the documented type (see /openapi.json)"
    if kind in ("too_long", "too_short", "less_than_equal", "greater_than_equal"):
        return "stay within the documented limits (see /openapi.json)"
    return None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def smsgate_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SmsgateError)
        return from_smsgate(exc).response()

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problems_error(exc.errors(), located=True).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        names = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        fixes = {404: "see /docs for the endpoints", 405: "see /docs for the allowed methods"}
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 400:
            # FastAPI's answer to a body that is not UTF-8 JSON: a request error like any other
            return ApiError(
                422,
                "invalid_request",
                f"the request body could not be read: {exc.detail}",
                fix="send a JSON object encoded as UTF-8",
            ).response()
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return ApiError(
            exc.status_code,
            names.get(exc.status_code, "http_error"),
            str(exc.detail),
            fix=fixes.get(exc.status_code),
            headers=headers or None,
        ).response()

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A failing dependency (the store, usually) or a bug: log it, answer without details.
        logger.error(
            "%s %s failed: %s",
            request.method,
            request.url.path,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return ApiError(
            503,
            "unavailable",
            "the server could not complete the request; it was logged",
            fix="retry later; if it persists, check the server log and the store",
            headers={"Retry-After": "1"},
        ).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(SmsgateError, smsgate_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
