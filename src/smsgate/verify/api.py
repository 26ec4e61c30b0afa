"""``/v1/verifications`` and ``/v1/verify/blocks``: the verify API, mounted by the server.

The server builds one :class:`~smsgate.verify.Verify` when the config has a ``[verify]`` table
and keeps it on ``app.state.verify``; without one these endpoints answer 404 ``not_configured`` with the fix. An API
key may use them when it is unrestricted or lists the ``verify`` scope (``smsgate keys create
NAME --purpose verify``); a key limited to ``verify`` alone can use no other endpoint (the
texts in the outbox carry live codes).

The client's IP (for the guard's per-IP buckets) is the connection's peer, or, when the peer is
one of ``[verify] trusted_proxies``, the address ``client_ip_header`` names: for
``X-Forwarded-For``, the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from smsgate.clock import Clock
from smsgate.config import Config
from smsgate.errors import SmsgateError
from smsgate.outbox import Outbox
from smsgate.outbox.store import dumps
from smsgate.outbox.tables.server import ServerStore
from smsgate.phone import normalize
from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, from_smsgate, problems_error, send_json_bytes
from smsgate.server.metrics import Metrics
from smsgate.server.models import E164, ErrorOut
from smsgate.server.webhooks_out import make_event
from smsgate.verify.models import Block, VerificationBlocked, VerificationNotFound
from smsgate.verify.service import ID_PREFIX, Verify
from smsgate.verify.settings import VerifySettings

SCOPE = "verify"
logger = logging.getLogger("smsgate.verify")


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """While the server runs, concurrent starts and checks share transactions (group commit)."""
    verify: Verify | None = getattr(app.state, "verify", None)
    if verify is not None:
        verify.start_grouping()
    try:
        yield
    finally:
        if verify is not None:
            await verify.stop_grouping()


router = APIRouter(prefix="/v1", tags=["verify"], lifespan=_lifespan)


#: a locale tag: en, de-AT, pt_BR
_LOCALE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
#: printable text with {code} once or more and no placeholder but {code}, {app}, {minutes}
_PIECE = r"(?:[^{}\x00-\x09\x0b-\x1f\x7f]|\{\{|\}\}|\{(?:code|app|minutes)\})"
_TEMPLATE = rf"^{_PIECE}*\{{code\}}{_PIECE}*$"


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: E164
    channel: Literal["sms"] = "sms"
    code_length: int | None = Field(None, ge=4, le=10)
    ttl: int | None = Field(None, ge=30, le=86400, description="seconds the code is valid")
    locale: str | None = Field(
        None, max_length=16, pattern=_LOCALE, description="language of the text: en, de-AT"
    )
    template: str | None = Field(
        None,
        max_length=600,
        pattern=_TEMPLATE,
        description="custom text with {code} (and {app}, {minutes})",
    )


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        max_length=64,
        description="what the user typed; spaces, dashes and full-width digits are accepted",
    )


class CheckByNumberIn(CheckIn):
    to: E164


class VerificationOut(BaseModel):
    id: str
    to: str
    channel: str
    status: str = Field(description="pending, approved, canceled, expired, max_attempts, blocked")
    valid: bool = Field(description="true only in the answer of the check that approved it")
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    attempts_left: int
    sends: int
    max_sends: int
    locale: str | None
    country: str | None
    reason: str | None


class BlockOut(BaseModel):
    id: str
    prefix: str
    level: int
    reason: str
    started: int
    approved: int
    created_at: float
    blocked_until: float
    lifted_at: float | None
    lifted_by: str | None


class BlockList(BaseModel):
    items: list[BlockOut]


_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorOut,
        "description": "the key lacks the verify scope, or the guard "
        "refused (blocked prefix, denied country): the answer names the reason",
    },
    404: {
        "model": ErrorOut,
        "description": "no such verification, or verify is not configured ([verify] secret)",
    },
}


def _verify(state: Any, app: Any) -> Verify:
    """The server's :class:`Verify`, for a key allowed to use it (else an :class:`ApiError`)."""
    key = key_of(state)
    allowed = key.record.purposes
    if allowed is not None and SCOPE not in allowed:
        raise ApiError(
            403,
            "forbidden",
            f"API key {key.name!r} may not use verify",
            field="authorization",
            fix="use a key created with --purpose verify, or one without purpose limits",
        )
    found: Verify | None = getattr(app.state, "verify", None)
    if found is None:
        raise ApiError(
            404,
            "not_configured",
            "verify is not configured on this server",
            fix='add [verify] with secret = "${SMSGATE_VERIFY_SECRET}" to smsgate.toml and restart',
        )
    return found


def client_ip(
    peer: str | None, header: Callable[[str], str | None], settings: VerifySettings
) -> str | None:
    """The caller's address: the peer's, or a trusted proxy's header (see the module)."""
    name = settings.client_ip_header
    if not name or peer is None or not _trusted(peer, settings):
        return peer
    value = header(name)
    if not value:
        return peer
    hops = [part.strip() for part in value.split(",") if part.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            return _address(hop) or peer
    return (_address(hops[0]) or peer) if hops else peer


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _trusted(address: str, settings: VerifySettings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxies)


def _not_found(error: VerificationNotFound) -> ApiError:
    message, _, fix = error.message.partition("; ")
    return ApiError(404, "not_found", message, field=error.field, fix=fix or None)


# -- what the routes and the fast path share ------------------------------------------------------


async def do_start(verify: Verify, key_id: str, ip: str | None, body: StartIn) -> tuple[int, Any]:
    """``POST /v1/verifications``: (status, answer); a refusal by the guard is a 403 whose answer
    carries the blocked verification."""
    try:
        made = await verify.astart(
            body.to,
            channel=body.channel,
            code_length=body.code_length,
            ttl=body.ttl,
            locale=body.locale,
            template=body.template,
            client_ip=ip,
            key=key_id,
        )
    except VerificationBlocked as exc:
        answer = from_smsgate(exc).body()
        answer["verification"] = exc.verification.to_dict()
        return 403, answer
    return 201, made.to_dict()


async def do_check(
    verify: Verify, key_id: str, ip: str | None, code: str, *, ident: str | None, to: str | None
) -> tuple[int, Any]:
    """``POST /v1/verifications/{id}/check`` (``ident``) and ``/v1/verifications/check``
    (``to``)."""
    if ident is not None:
        if not ident.startswith(ID_PREFIX + "_"):
            raise _not_found(
                VerificationNotFound(f"no verification {ident!r}; check the id", field="id")
            )
        target = ident
    else:
        assert to is not None
        target = normalize(to, strict=False, field="to")
    try:
        done = await verify.acheck(target, code, client_ip=ip, key=key_id)
    except VerificationNotFound as exc:
        raise _not_found(exc) from None
    return 200, done.to_dict()


def _caller(request: Request) -> tuple[Verify, str, str | None]:
    """The server's :class:`Verify`, the calling key's id and the client's IP (per the trusted
    proxy settings), for the endpoints that send or check codes."""
    verify = _verify(request.state, request.app)
    peer = request.client.host if request.client else None
    return verify, key_of(request.state).id, client_ip(peer, request.headers.get, verify.settings)


@router.post(
    "/verifications",
    status_code=201,
    response_model=VerificationOut,
    summary="Send a one-time code (a resend when the number has one pending)",
    responses=_ERRORS,
)
async def start(request: Request, body: StartIn) -> Any:
    verify, key_id, ip = _caller(request)
    status, answer = await do_start(verify, key_id, ip, body)
    return JSONResponse(answer, status_code=status)


@router.get(
    "/verifications/{verification_id}",
    response_model=VerificationOut,
    summary="A verification and its state",
    responses=_ERRORS,
)
async def get(
    request: Request, verification_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    verify = _verify(request.state, request.app)
    try:
        return (await verify.aget(verification_id)).to_dict()
    except VerificationNotFound as exc:
        raise _not_found(exc) from None


@router.post(
    "/verifications/check",
    response_model=VerificationOut,
    summary="Check a code against the number's pending verification",
    responses=_ERRORS,
)
async def check_by_number(request: Request, body: CheckByNumberIn) -> Any:
    verify, key_id, ip = _caller(request)
    status, answer = await do_check(verify, key_id, ip, body.code, ident=None, to=body.to)
    return JSONResponse(answer, status_code=status)


@router.post(
    "/verifications/{verification_id}/check",
    response_model=VerificationOut,
    summary="Check a code; valid is true once, in the answer that approved it",
    responses=_ERRORS,
)
async def check(
    request: Request, verification_id: Annotated[str, Path(max_length=64)], body: CheckIn
) -> Any:
    verify, key_id, ip = _caller(request)
    status, answer = await do_check(verify, key_id, ip, body.code, ident=verification_id, to=None)
    return JSONResponse(answer, status_code=status)


@router.post(
    "/verifications/{verification_id}/cancel",
    response_model=VerificationOut,
    summary="Cancel a pending verification (its code stops working)",
    responses=_ERRORS,
)
async def cancel(
    request: Request, verification_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    verify = _verify(request.state, request.app)
    try:
        return (await verify.acancel(verification_id)).to_dict()
    except VerificationNotFound as exc:
        raise _not_found(exc) from None


@router.get(
    "/verify/blocks",
    response_model=BlockList,
    summary="Prefixes the pumping detector blocked",
    responses=_ERRORS,
)
async def blocks(
    request: Request,
    all_blocks: Annotated[bool, Query(alias="all", description="lifted and expired too")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    verify = _verify(request.state, request.app)
    found = await verify.ablocks(active=not all_blocks, limit=limit)
    return {"items": [b.to_dict() for b in found]}


@router.delete(
    "/verify/blocks/{prefix}",
    response_model=BlockList,
    summary="Lift the block of a prefix (URL-encode the +: %2B44...)",
    responses=_ERRORS,
)
async def unblock(
    request: Request, prefix: Annotated[str, Path(pattern=r"^\+[1-9][0-9]{0,14}$")]
) -> dict[str, Any]:
    verify = _verify(request.state, request.app)
    lifted = await verify.aunblock(prefix, by=f"api key {key_of(request.state).name}")
    if not lifted:
        raise ApiError(
            404,
            "not_found",
            f"prefix {prefix!r} is not blocked",
            field="prefix",
            fix="see GET /v1/verify/blocks",
        )
    return {"items": [b.to_dict() for b in lifted]}


# -- wiring into the server ----------------------------------------------------------------------


class VerifyCollector(Collector):
    """``smsgate_verify_decisions_total{action,outcome}`` (this process's decisions),
    ``smsgate_verify_blocks_total`` (blocks this process made) and
    ``smsgate_verify_blocked_prefixes`` (active blocks in the store, read at scrape). Never a code,
    a hash or a number: prefixes appear only as a count."""

    def __init__(self, verify: Verify) -> None:
        self.verify = verify
        self.blocks_made = 0

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        decisions = CounterMetricFamily(
            "smsgate_verify_decisions",
            "Verify guard decisions by action (start, resend, check, cancel) and outcome.",
            labels=["action", "outcome"],
        )
        for (action, outcome), count in sorted(self.verify.counters.items()):
            decisions.add_metric([action, outcome], count)
        yield decisions
        yield CounterMetricFamily(
            "smsgate_verify_blocks",
            "Prefixes the pumping detector blocked.",
            value=self.blocks_made,
        )
        active = GaugeMetricFamily(
            "smsgate_verify_blocked_prefixes", "Prefixes blocked now (the whole store)."
        )
        try:
            active.add_metric([], len(self.verify.blocks(limit=10_000)))
        except Exception as exc:  # the store is down: the other metrics say so
            logger.warning("verify blocks unavailable: %s", exc)
        yield active


def mount(
    app: FastAPI,
    config: Config,
    outbox: Outbox,
    store: ServerStore,
    metrics: Metrics,
    clock: Clock,
    on_block: Callable[[], None] | None = None,
) -> Verify | None:
    """Build the server's :class:`Verify` (None without a ``[verify]`` table), announce blocks as
    ``verify.blocked`` webhooks through the user-webhook queue, export metrics, add the routes."""
    app.include_router(router)
    # added before the server's own middlewares, so it runs inside the API-key check
    app.add_middleware(VerifyFastPath)
    if not config.verify:
        app.state.verify = None
        return None
    collector: VerifyCollector | None = None

    def announce(block: Block) -> None:
        store.enqueue(
            [make_event("verify.blocked", block.to_dict(), block.created_at)], clock.time()
        )
        if collector is not None:
            collector.blocks_made += 1
        if on_block is not None:
            on_block()

    verify = Verify(outbox, VerifySettings.from_config(config), clock=clock, on_block=announce)
    collector = VerifyCollector(verify)
    metrics.registry.register(collector)
    app.state.verify = verify
    return verify


class VerifyFastPath:
    """The three busy endpoints (start, check by id, check by number) without FastAPI's routing,
    dependency and serialization layers, which cost more per request than the verification
    itself. Same models (pydantic validates the JSON bytes), same functions (:func:`do_start`,
    :func:`do_check`), same answers and error shapes as the routes, which still define the
    OpenAPI schema; every other path passes through. It sits inside the API-key middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" else ""
        if path.startswith("/v1/") and not path.startswith(_OURS) and _verify_only(scope):
            # a key limited to verify does nothing else: not even read messages, whose texts
            # carry the codes of pending verifications
            error = ApiError(
                403,
                "forbidden",
                "this API key is limited to verify",
                field="authorization",
                fix="use /v1/verifications and /v1/verify, or a key with more purposes",
            )
            await send_json_bytes(send, error.status, error.json(), {})
            return
        if scope.get("method") != "POST" or not path.startswith(_BASE):
            await self.app(scope, receive, send)
            return
        rest = path[len(_BASE) :]
        if rest == "":
            kind, ident = "start", None
        elif rest == "/check":
            kind, ident = "check_to", None
        elif rest.startswith("/") and rest.endswith("/check") and rest.count("/") == 2:
            kind, ident = "check_id", rest[1 : -len("/check")]
        else:
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        try:
            status, answer = await self._handle(scope, receive, kind, ident)
            payload = dumps(answer).encode()
        except ApiError as exc:
            status, payload, headers = exc.status, exc.json(), exc.headers or {}
        except SmsgateError as exc:
            error = from_smsgate(exc)
            status, payload, headers = error.status, error.json(), error.headers or {}
        except Exception as exc:  # the store is down, or a bug: logged, never a traceback
            logger.error("POST %s failed: %s", path, exc, exc_info=exc)
            error = ApiError(
                503,
                "unavailable",
                "the server could not complete the request; it was logged",
                fix="retry later; if it persists, check the server log and the store",
                headers={"Retry-After": "1"},
            )
            status, payload, headers = error.status, error.json(), error.headers or {}
        await send_json_bytes(send, status, payload, headers)

    async def _handle(
        self, scope: Scope, receive: Receive, kind: str, ident: str | None
    ) -> tuple[int, Any]:
        state = _ScopeState(scope)
        verify = _verify(state, scope["app"])
        raw = await _body(receive)
        client = scope.get("client")
        raw_headers = scope["headers"]

        def header(name: str) -> str | None:
            wanted = name.lower().encode("latin-1")
            for key, value in raw_headers:
                if key == wanted:
                    return str(value.decode("latin-1"))
            return None

        ip = client_ip(client[0] if client else None, header, verify.settings)
        key_id = key_of(state).id
        try:
            if kind == "start":
                return await do_start(verify, key_id, ip, StartIn.model_validate_json(raw))
            if kind == "check_to":
                by_number = CheckByNumberIn.model_validate_json(raw)
                return await do_check(
                    verify, key_id, ip, by_number.code, ident=None, to=by_number.to
                )
            body = CheckIn.model_validate_json(raw)
        except ValidationError as exc:
            raise problems_error(exc.errors()) from None
        if ident is None or len(ident) > 64:
            raise _not_found(VerificationNotFound(f"no verification {ident!r}", field="id"))
        return await do_check(verify, key_id, ip, body.code, ident=ident, to=None)


_BASE = "/v1/verifications"
_OURS = ("/v1/verifications", "/v1/verify/")


def _verify_only(scope: Scope) -> bool:
    key = scope.get("state", {}).get("api_key")
    purposes = None if key is None else key.record.purposes
    return purposes is not None and set(purposes) == {SCOPE}


#: start and check bodies are a few fields; a template is at most 600 characters
_MAX_BODY = 16 * 1024


class _ScopeState:
    """``request.state`` for a bare scope (the key the API-key middleware stored)."""

    def __init__(self, scope: Scope) -> None:
        self.api_key = scope.get("state", {}).get("api_key")


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "disconnected", "the client went away before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise ApiError(
                413,
                "too_large",
                "the request body is over 16 KiB",
                fix="send the documented fields only",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
