"""``/v1/inbound`` and ``/v1/suppressions``: what people sent us, and who opted out."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Response

from smsgate.errors import InvalidRecipient
from smsgate.ids import good_id
from smsgate.outbox.store import to_datetime
from smsgate.outbox.suppressions import ALL_NUMBERS, number_key
from smsgate.outbox.tables.server import InboundRecord, Suppression
from smsgate.server.errors import ApiError
from smsgate.server.inbound import suppression_event
from smsgate.server.models import (
    E164,
    OURS_PATTERN,
    ErrorOut,
    Id,
    InboundOut,
    InboundPage,
    Removed,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)
from smsgate.server.services import Svc
from smsgate.server.submit import check_number
from smsgate.server.webhooks_out import make_event

router = APIRouter(prefix="/v1", tags=["inbound and opt-outs"])


@router.get("/inbound", response_model=InboundPage, summary="Messages people sent us, newest first")
async def list_inbound(
    svc: Svc,
    sender: Annotated[E164 | None, Query(alias="from")] = None,
    to: Annotated[E164 | None, Query(description="one of our numbers")] = None,
    cursor: Annotated[Id | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InboundPage:
    if cursor is not None and not good_id(cursor):
        raise ApiError(
            422,
            "invalid_request",
            "cursor is not one this API returned",
            field="cursor",
            fix="pass next_cursor from the previous page",
        )
    rows = await anyio.to_thread.run_sync(
        lambda: svc.store.list_inbound(
            sender=None if sender is None else _number(sender, "from"),
            to=None if to is None else _number(to, "to"),
            before_id=cursor,
            limit=limit + 1,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return InboundPage(
        items=[inbound_out(row) for row in rows],
        next_cursor=rows[-1].id if more and rows else None,
    )


def inbound_out(row: InboundRecord) -> InboundOut:
    return InboundOut(
        id=row.id,
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        sender=row.sender,
        to=row.to,
        body=row.body,
        media=list(row.media),
        action=row.action,
        received_at=to_datetime(row.received_at),
    )


@router.get("/suppressions", response_model=SuppressionPage, summary="Opted-out recipients")
async def list_suppressions(
    svc: Svc,
    recipient: Annotated[E164 | None, Query()] = None,
    cursor: Annotated[
        str | None,
        Query(
            description="next_cursor of the previous page",
            json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": 300},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SuppressionPage:
    number = None if recipient is None else _number(recipient, "recipient")
    after = None if cursor is None else _decode_cursor(cursor)
    rows = await anyio.to_thread.run_sync(
        lambda: svc.store.list_suppressions(number, after, limit + 1)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return SuppressionPage(
        items=[suppression_out(row) for row in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


@router.post(
    "/suppressions",
    status_code=201,
    response_model=SuppressionOut,
    responses={
        200: {"model": SuppressionOut, "description": "already suppressed"},
        422: {"model": ErrorOut},
    },
    summary="Suppress a recipient (for one number of ours, or all)",
)
async def add_suppression(body: SuppressionIn, response: Response, svc: Svc) -> SuppressionOut:
    item = Suppression(
        recipient=_number(body.recipient, "recipient"),
        our_number=ALL_NUMBERS if body.our_number is None else _ours(body.our_number),
        source="api",
        keyword=None,
        reason=body.reason,
        created_at=svc.clock.time(),
    )
    created = await anyio.to_thread.run_sync(
        lambda: svc.store.add_suppression(item, [suppression_event(item)])
    )
    if not created:
        response.status_code = 200
        existing = await anyio.to_thread.run_sync(
            lambda: svc.store.list_suppressions(item.recipient, None, 1000)
        )
        item = next((s for s in existing if s.our_number == item.our_number), item)
    svc.dispatcher.wake()
    return suppression_out(item)


@router.delete(
    "/suppressions",
    response_model=Removed,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Lift a recipient's suppression",
)
async def remove_suppression(
    svc: Svc,
    recipient: Annotated[E164, Query()],
    our_number: Annotated[
        str | None,
        Query(
            description='one number of ours, "*" for the all-numbers entry; '
            "omitted: every entry of the recipient",
            json_schema_extra={"pattern": OURS_PATTERN, "minLength": 1, "maxLength": 64},
        ),
    ] = None,
) -> Removed:
    number = _number(recipient, "recipient")
    numbers = None if our_number is None else [_ours(our_number)]
    now = svc.clock.time()
    event = make_event(
        "suppression.removed",
        {"recipient": number, "our_numbers": numbers, "source": "api", "keyword": None},
        now,
    )
    removed = await anyio.to_thread.run_sync(
        lambda: svc.store.remove_suppressions(number, numbers, [event], now)
    )
    if not removed:
        raise ApiError(
            404,
            "not_found",
            f"{number} is not suppressed" + (f" for {numbers[0]}" if numbers else ""),
            field="recipient",
            fix="list suppressions with GET /v1/suppressions?recipient=...",
        )
    svc.dispatcher.wake()
    return Removed(removed=removed)


def suppression_out(row: Suppression) -> SuppressionOut:
    return SuppressionOut(
        recipient=row.recipient,
        our_number=row.our_number,
        source=row.source,
        keyword=row.keyword,
        reason=row.reason,
        created_at=to_datetime(row.created_at),
    )


def _number(text: str, field: str) -> str:
    try:
        return check_number(text, field)
    except InvalidRecipient as exc:
        message, _, fix = exc.message.partition("; ")
        raise ApiError(422, "invalid_recipient", message, field=field, fix=fix or None) from None


def _ours(text: str) -> str:
    """One of our numbers or sender ids, or ``*``, as the suppression list writes it."""
    if len(text) > 64 or _OURS.fullmatch(text) is None:
        raise ApiError(
            422,
            "invalid_request",
            "our_number is empty, longer than 64 characters or has control characters",
            field="our_number",
            fix="give one of our numbers or sender ids, or *",
        )
    return number_key(text)


#: a cursor is base64url text; any such text is a position in the order (recipient, number)
CURSOR_PATTERN = r"^(?:[A-Za-z0-9_\-]{4})+(?:[A-Za-z0-9_\-]{2}==|[A-Za-z0-9_\-]{3}=)?$"
_CURSOR = re.compile(CURSOR_PATTERN)
_OURS = re.compile(OURS_PATTERN)


def _encode_cursor(row: Suppression) -> str:
    return base64.urlsafe_b64encode(f"{row.recipient}\n{row.our_number}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    """The position a cursor names. Any base64url text is one (the page after it in the order);
    what does not decode to text is refused, as is anything outside the schema's pattern."""
    if len(cursor) > 300 or _CURSOR.fullmatch(cursor) is None:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor.encode())
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    text = raw.decode("utf-8", "replace").replace("\x00", "")
    recipient, _, ours = text.partition("\n")
    return recipient, ours


def _bad_cursor() -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        "cursor is not one this API returned",
        field="cursor",
        fix="pass next_cursor from the previous page",
    )
