"""``/v1/verifications`` and ``/v1/verify/blocks``: the verify API, mounted by the server.

The server builds one :class:`~smsgate.verify.Verify` when the config has a ``[verify]`` table
and keeps it on ``app.state.verify``; without one these endpoints answer 501 with the fix. An API
key may use them when it is unrestricted or lists the ``verify`` scope (``smsgate keys create
NAME --purpose verify``); a key limited to ``verify`` alone can send no other message.

The client's IP (for the guard's per-IP buckets) is the connection's peer, or, when the peer is
one of ``[verify] trusted_proxies``, the address ``client_ip_header`` names: for
``X-Forwarded-For``, the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from smsgate.clock import Clock
from smsgate.config import Config
from smsgate.outbox import Outbox
from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, from_smsgate
from smsgate.server.metrics import Metrics
from smsgate.server.models import ErrorOut
from smsgate.server.store import ServerStore
from smsgate.server.webhooks_out import make_event
from smsgate.verify.models import Block, VerificationBlocked, VerificationNotFound
from smsgate.verify.service import Verify
from smsgate.verify.settings import VerifySettings

SCOPE = "verify"
logger = logging.getLogger("smsgate.verify")

router = APIRouter(prefix="/v1", tags=["verify"])


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=64, description="the number to verify, E.164 (+14155552671)")
    channel: str = Field("sms", max_length=16)
    code_length: int | None = Field(None, ge=4, le=10)
    ttl: str | float | None = Field(None, description='how long the code is valid, e.g. "10m"')
    locale: str | None = Field(None, max_length=16, description="language of the text: en, de ...")
    template: str | None = Field(
        None, max_length=600, description="custom text with {code} (and {app}, {minutes})"
    )


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        max_length=64,
        description="what the user typed; spaces, dashes and full-width digits are accepted",
    )


class CheckByNumberIn(CheckIn):
    to: str = Field(max_length=64, description="the number whose pending verification to check")


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
    404: {"model": ErrorOut, "description": "no such verification"},
    501: {"model": ErrorOut, "description": "verify is not configured ([verify] secret)"},
}


def _verify(request: Request) -> Verify:
    key = key_of(request.state)
    allowed = key.record.purposes
    if allowed is not None and SCOPE not in allowed:
        raise ApiError(
            403,
            "forbidden",
            f"API key {key.name!r} may not use verify",
            field="authorization",
            fix="use a key created with --purpose verify, or one without purpose limits",
        )
    found: Verify | None = getattr(request.app.state, "verify", None)
    if found is None:
        raise ApiError(
            501,
            "not_configured",
            "verify is not configured on this server",
            fix='add [verify] with secret = "${SMSGATE_VERIFY_SECRET}" to smsgate.toml and restart',
        )
    return found


def client_ip(request: Request, settings: VerifySettings) -> str | None:
    """The caller's address: the peer's, or a trusted proxy's header (see the module)."""
    peer = request.client.host if request.client else None
    header = settings.client_ip_header
    if not header or peer is None or not _trusted(peer, settings):
        return peer
    value = request.headers.get(header)
    if not value:
        return peer
    hops = [part.strip() for part in value.split(",") if part.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            return _address(hop) or peer
    return _address(hops[0]) or peer if hops else peer


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


def _blocked(error: VerificationBlocked) -> JSONResponse:
    body = from_smsgate(error).body()
    body["verification"] = error.verification.to_dict()
    return JSONResponse(body, status_code=403)


def _not_found(error: VerificationNotFound) -> ApiError:
    message, _, fix = error.message.partition("; ")
    return ApiError(404, "not_found", message, field=error.field, fix=fix or None)


@router.post(
    "/verifications",
    status_code=201,
    response_model=VerificationOut,
    summary="Send a one-time code (a resend when the number has one pending)",
    responses=_ERRORS,
)
async def start(request: Request, body: StartIn) -> Any:
    verify = _verify(request)
    try:
        made = await verify.astart(
            body.to,
            channel=body.channel,
            code_length=body.code_length,
            ttl=body.ttl,
            locale=body.locale,
            template=body.template,
            client_ip=client_ip(request, verify.settings),
            key=key_of(request.state).id,
        )
    except VerificationBlocked as exc:
        return _blocked(exc)
    return made.to_dict()


@router.get(
    "/verifications/{verification_id}",
    response_model=VerificationOut,
    summary="A verification and its state",
    responses=_ERRORS,
)
async def get(
    request: Request, verification_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    verify = _verify(request)
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
async def check_by_number(request: Request, body: CheckByNumberIn) -> dict[str, Any]:
    verify = _verify(request)
    try:
        done = await verify.acheck(
            body.to,
            body.code,
            client_ip=client_ip(request, verify.settings),
            key=key_of(request.state).id,
        )
    except VerificationNotFound as exc:
        raise _not_found(exc) from None
    return done.to_dict()


@router.post(
    "/verifications/{verification_id}/check",
    response_model=VerificationOut,
    summary="Check a code; valid is true once, in the answer that approved it",
    responses=_ERRORS,
)
async def check(
    request: Request, verification_id: Annotated[str, Path(max_length=64)], body: CheckIn
) -> dict[str, Any]:
    verify = _verify(request)
    if not verification_id.startswith("ver_"):
        raise _not_found(
            VerificationNotFound(f"no verification {verification_id!r}; check the id", field="id")
        )
    try:
        done = await verify.acheck(
            verification_id,
            body.code,
            client_ip=client_ip(request, verify.settings),
            key=key_of(request.state).id,
        )
    except VerificationNotFound as exc:
        raise _not_found(exc) from None
    return done.to_dict()


@router.post(
    "/verifications/{verification_id}/cancel",
    response_model=VerificationOut,
    summary="Cancel a pending verification (its code stops working)",
    responses=_ERRORS,
)
async def cancel(
    request: Request, verification_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    verify = _verify(request)
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
    verify = _verify(request)
    found = await verify.ablocks(active=not all_blocks, limit=limit)
    return {"items": [b.to_dict() for b in found]}


@router.delete(
    "/verify/blocks/{prefix}",
    response_model=BlockList,
    summary="Lift the block of a prefix (URL-encode the +: %2B44...)",
    responses=_ERRORS,
)
async def unblock(request: Request, prefix: Annotated[str, Path(max_length=20)]) -> dict[str, Any]:
    verify = _verify(request)
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
