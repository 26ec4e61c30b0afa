"""``/webhooks/{provider}/status`` and ``/webhooks/{provider}/inbound``: what providers call.

``provider`` is the name of a ``[providers.NAME]`` table; the provider's own verify-and-parse
functions decide. A request that does not verify gets 403 and nothing is stored; a body the
provider cannot parse gets 400; a provider we do not have, or one without that kind of webhook,
gets 404. A receipt is recorded once (the same event id twice is a duplicate) and moves a message
forward only; receipts arriving together share a transaction
(:class:`~smsgate.server.receipts.ReceiptRecorder`), and each is answered once it is committed.
With ``[server] fast_submit`` (the default) POST status webhooks are answered by
:class:`~smsgate.server.fastpath.FastReceipts` with :func:`record_status`, as here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import URL

from smsgate.errors import SmsgateError, UnsupportedFeature, WebhookVerificationError
from smsgate.message import DeliveryEvent
from smsgate.outbox import ReceiptOutcome
from smsgate.providers.base import Provider, WebhookRequest
from smsgate.server.errors import ApiError
from smsgate.server.models import ErrorOut, WebhookReceipt
from smsgate.server.services import Services, Svc

logger = logging.getLogger("smsgate.server.webhooks")
router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])
T = TypeVar("T")
MAX_BODY = 1024 * 1024

_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "the body is not this provider's webhook"},
    403: {"model": ErrorOut, "description": "the signature does not verify; nothing stored"},
    404: {"model": ErrorOut, "description": "no such provider, or no such webhook for it"},
}


@router.post(
    "/{provider}/status",
    response_model=WebhookReceipt,
    responses=_RESPONSES,
    summary="A provider's delivery receipt",
)
@router.get(
    "/{provider}/status",
    response_model=WebhookReceipt,
    responses=_RESPONSES,
    summary="A provider's delivery receipt (providers that call back with GET)",
    operation_id="status_webhook_get",
)
async def status_webhook(provider: str, request: Request, svc: Svc) -> JSONResponse:
    impl = _provider(svc, provider)
    webhook = await _webhook_request(svc, request)
    received, stored = await record_status(svc, impl, webhook)
    return JSONResponse(WebhookReceipt(received=received, stored=stored).model_dump())


async def record_status(svc: Services, impl: Provider, webhook: WebhookRequest) -> tuple[int, int]:
    """Verify and record a status webhook: (receipts received, receipts stored). Each stored
    receipt is durable when this returns. Raises :class:`ApiError` for the 4xx answers.
    :class:`~smsgate.server.fastpath.FastReceipts` calls this too."""
    events = _verified(svc, impl, "status", lambda: impl.handle_status_webhook(webhook))
    stored = await record_events(svc, impl, events)
    svc.metrics.webhooks.labels(impl.name, "status", "stored" if stored else "duplicate").inc()
    return len(events), stored


async def record_events(svc: Services, impl: Provider, events: Sequence[DeliveryEvent]) -> int:
    """Record verified receipts (from a webhook, or pushed by the provider over its own
    connection); returns how many were new. Each is durable when this returns."""
    stored = 0
    for event in events:
        result = await svc.receipts.record(event)
        if result.outcome is ReceiptOutcome.DUPLICATE:
            continue
        stored += 1
        if event.opted_out and event.to:
            await _suppress(svc, impl, event, result.message_id)
    return stored


@router.post(
    "/{provider}/inbound",
    response_model=WebhookReceipt,
    responses=_RESPONSES,
    summary="A message a person sent to one of our numbers",
)
@router.get(
    "/{provider}/inbound",
    response_model=WebhookReceipt,
    responses=_RESPONSES,
    summary="A message a person sent to one of our numbers (GET callbacks)",
    operation_id="inbound_webhook_get",
)
async def inbound_webhook(provider: str, request: Request, svc: Svc) -> JSONResponse:
    impl = _provider(svc, provider)
    webhook = await _webhook_request(svc, request)
    messages = _verified(svc, impl, "inbound", lambda: impl.handle_inbound_webhook(webhook))
    stored = await svc.inbound.handle(messages)
    if stored:
        svc.dispatcher.wake()
    svc.metrics.webhooks.labels(impl.name, "inbound", "stored" if stored else "duplicate").inc()
    return JSONResponse(WebhookReceipt(received=len(messages), stored=stored).model_dump())


async def _suppress(
    svc: Services, impl: Provider, event: DeliveryEvent, message_id: str | None
) -> None:
    """The provider says the recipient unsubscribed: refuse further sends from that number."""
    record = None
    if message_id is not None:
        record = await anyio.to_thread.run_sync(svc.outbox.get, message_id)
    ours = (record.sender if record is not None else None) or impl.sender
    assert event.to is not None
    if await anyio.to_thread.run_sync(
        svc.inbound.provider_opt_out, event.to, ours, impl.name, event.reason
    ):
        svc.dispatcher.wake()


def _provider(svc: Services, name: str) -> Provider:
    impl = svc.providers.get(name)
    if impl is None:
        raise ApiError(
            404,
            "not_found",
            f"no provider named {name!r} is configured",
            field="provider",
            fix="use the name of a [providers.NAME] table",
        )
    return impl


async def _webhook_request(svc: Services, request: Request) -> WebhookRequest:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise body_too_large()
    return WebhookRequest(
        url=public_url_of(request.url, svc.settings.public_url),
        method=request.method,
        headers=dict(request.headers),
        body=body,
    )


def body_too_large() -> ApiError:
    return ApiError(
        413,
        "too_large",
        "the webhook body is over 1 MiB",
        fix="providers send small bodies: check the caller",
    )


def public_url_of(url: URL, public_url: str | None) -> str:
    """The URL the provider called: behind a proxy, the configured public URL with this path."""
    if public_url is None:
        return str(url)
    path_qs = url.path + (f"?{url.query}" if url.query else "")
    return public_url.rstrip("/") + path_qs


def _verified(svc: Services, impl: Provider, kind: str, handle: Callable[[], T]) -> T:
    try:
        return handle()
    except WebhookVerificationError as exc:
        svc.metrics.webhooks.labels(impl.name, kind, "refused").inc()
        logger.info("%s %s webhook refused: %s", impl.name, kind, exc.message)
        raise ApiError(
            403,
            "webhook_verification",
            exc.message,
            fix="check the provider's credentials and the public_url setting",
        ) from None
    except UnsupportedFeature:
        raise ApiError(
            404, "not_found", f"{impl.display_name} sends no {kind} webhooks", field="provider"
        ) from None
    except (SmsgateError, ValueError, KeyError, TypeError, AttributeError) as exc:
        svc.metrics.webhooks.labels(impl.name, kind, "malformed").inc()
        raise ApiError(
            400,
            "malformed_webhook",
            f"not a {impl.display_name} {kind} webhook: {type(exc).__name__}",
            fix="check the caller",
        ) from None
