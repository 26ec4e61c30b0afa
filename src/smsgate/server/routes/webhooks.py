"""``/v1/webhooks``: subscriptions to events, and the dead letters of failed deliveries."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Response

from smsgate.ids import good_id, new_id
from smsgate.outbox.store import to_datetime
from smsgate.outbox.tables.server import Delivery, Subscription
from smsgate.server.errors import ApiError, not_found
from smsgate.server.models import (
    DeliveryOut,
    DeliveryPage,
    ErrorOut,
    Id,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
)
from smsgate.server.services import Services, Svc
from smsgate.server.webhooks_out import new_secret, subscriptions_for

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses={422: {"model": ErrorOut}},
    summary="Subscribe a URL to events",
    description="Deliveries are signed (Standard Webhooks: webhook-id, webhook-timestamp, "
    "webhook-signature) with the secret in this answer, which is not shown again.",
)
async def create_webhook(body: WebhookIn, svc: Svc) -> WebhookCreated:
    try:
        events = subscriptions_for(body.events)
    except ValueError as exc:
        raise ApiError(
            422,
            "invalid_request",
            str(exc),
            field="events",
            fix='use "*", "message.*", "inbound.*", "suppression.*" or exact types',
        ) from None
    sub = Subscription(
        id=new_id("whk"),
        url=str(body.url),
        events=tuple(events),
        secret=new_secret(),
        description=body.description,
        created_at=svc.clock.time(),
    )
    await anyio.to_thread.run_sync(svc.store.add_subscription, sub)
    return WebhookCreated(**_out(sub).model_dump(), secret=sub.secret)


@router.get("", response_model=list[WebhookOut], summary="Subscriptions (without secrets)")
async def list_webhooks(svc: Svc) -> list[WebhookOut]:
    subs = await anyio.to_thread.run_sync(svc.store.list_subscriptions)
    return [_out(sub) for sub in subs]


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    summary="Deliveries, newest first; state=dead lists the dead letters",
)
async def list_deliveries(
    svc: Svc,
    state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
    subscription: Annotated[Id | None, Query()] = None,
    cursor: Annotated[Id | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryPage:
    return await _page(svc, state, subscription, cursor, limit)


@router.get(
    "/dead-letters",
    response_model=DeliveryPage,
    summary="Deliveries that failed for the whole retry horizon",
)
async def list_dead_letters(
    svc: Svc,
    subscription: Annotated[Id | None, Query()] = None,
    cursor: Annotated[Id | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryPage:
    return await _page(svc, "dead", subscription, cursor, limit)


@router.post(
    "/dead-letters/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses={404: {"model": ErrorOut}},
    summary="Queue a dead letter again (with a fresh retry horizon)",
)
async def retry_dead_letter(delivery_id: Annotated[Id, Path()], svc: Svc) -> DeliveryOut:
    delivery = (
        await anyio.to_thread.run_sync(svc.store.redeliver, delivery_id, svc.clock.time())
        if good_id(delivery_id)
        else None
    )
    if delivery is None:
        raise not_found("dead letter", delivery_id)
    svc.dispatcher.wake()
    return delivery_out(delivery)


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    responses={404: {"model": ErrorOut}},
    summary="One subscription",
)
async def get_webhook(webhook_id: Annotated[Id, Path()], svc: Svc) -> WebhookOut:
    sub = (
        await anyio.to_thread.run_sync(svc.store.get_subscription, webhook_id)
        if good_id(webhook_id)
        else None
    )
    if sub is None:
        raise not_found("webhook", webhook_id)
    return _out(sub)


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": ErrorOut}},
    summary="Unsubscribe (pending deliveries are dropped; dead letters stay listed)",
)
async def delete_webhook(webhook_id: Annotated[Id, Path()], svc: Svc) -> Response:
    if not good_id(webhook_id) or not await anyio.to_thread.run_sync(
        svc.store.delete_subscription, webhook_id
    ):
        raise not_found("webhook", webhook_id)
    return Response(status_code=204)


async def _page(
    svc: Services, state: str | None, subscription: str | None, cursor: str | None, limit: int
) -> DeliveryPage:
    for name, value in (("subscription", subscription), ("cursor", cursor)):
        if value is not None and not good_id(value):
            raise ApiError(
                422,
                "invalid_request",
                f"{name} is not an id",
                field=name,
                fix="pass an id (or next_cursor) this API returned",
            )
    rows = await anyio.to_thread.run_sync(
        lambda: svc.store.list_deliveries(
            state=state, subscription_id=subscription, before_id=cursor, limit=limit + 1
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[delivery_out(row) for row in rows],
        next_cursor=rows[-1].id if more and rows else None,
    )


def _out(sub: Subscription) -> WebhookOut:
    return WebhookOut(
        id=sub.id,
        url=sub.url,
        events=list(sub.events),
        description=sub.description,
        created_at=to_datetime(sub.created_at),
    )


def delivery_out(row: Delivery) -> DeliveryOut:
    payload: dict[str, Any] = json.loads(row.payload)
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        subscription_id=row.subscription_id,
        event_type=row.event_type,
        state=row.state,  # type: ignore[arg-type]
        attempts=row.attempts,
        next_attempt_at=None if row.next_attempt_at is None else to_datetime(row.next_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=to_datetime(row.created_at),
        updated_at=to_datetime(row.updated_at),
        payload=payload,
    )
