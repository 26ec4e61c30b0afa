"""``/healthz`` (the process answers), ``/readyz`` (the store answers), ``/metrics``."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from smsgate.errors import SmsgateError
from smsgate.server.metrics import CONTENT_TYPE
from smsgate.server.models import Health
from smsgate.server.services import Svc

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The server is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "the store does not answer"}},
    summary="The server can take traffic (its store answers)",
)
async def readyz(svc: Svc) -> Response:
    try:
        await anyio.to_thread.run_sync(svc.store.check)
    except Exception as exc:
        # Our own errors say what to run (smsgate db upgrade); others could carry connection
        # details, so only their kind is shown.
        detail = exc.message if isinstance(exc, SmsgateError) else type(exc).__name__
        body = Health(status="unavailable", store=detail, worker=svc.worker_state)
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ready", store="ok", worker=svc.worker_state).model_dump())


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(svc: Svc) -> Response:
    body = await anyio.to_thread.run_sync(svc.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
