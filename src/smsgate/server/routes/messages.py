"""``/v1/messages``: submit one or many, read one with its history, list, cancel."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from smsgate.message import KEY_PATTERN, Status
from smsgate.outbox import MessageNotFound, MessageRecord, NotCancelable
from smsgate.server.auth import key_of
from smsgate.server.errors import ApiError, not_found
from smsgate.server.models import (
    E164,
    BatchIn,
    BatchOut,
    ErrorOut,
    EventOut,
    Id,
    MessageAccepted,
    MessageIn,
    MessageOut,
    MessagePage,
)
from smsgate.server.services import Svc
from smsgate.server.submit import accept, accept_batch, check_number

router = APIRouter(prefix="/v1/messages", tags=["messages"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="submitting the same key again returns the first message; nothing is resent",
        json_schema_extra={"pattern": KEY_PATTERN, "minLength": 1, "maxLength": 200},
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=MessageAccepted,
    responses={
        200: {"model": MessageAccepted, "description": "an earlier message had this key"},
        404: {"model": ErrorOut, "description": "in_reply_to names no inbound message"},
        409: {
            "model": ErrorOut,
            "description": "Idempotency-Key and idempotency_key differ, or in_reply_to answers "
            "someone else",
        },
        422: {"model": ErrorOut, "description": "invalid message or recipient opted out"},
    },
    summary="Submit one message",
)
async def submit_message(
    svc: Svc,
    message: Annotated[MessageIn, Body()],
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MessageAccepted:
    # Served by smsgate.server.fastpath when it is on (the default); this route is the
    # OpenAPI declaration and the path taken with [server] fast_submit = false.
    accepted = await accept(svc.submitter, key_of(request.state), message, idempotency_key)
    response.status_code = accepted.status_code
    response.headers.update(accepted.headers)
    return accepted.body


@router.post(
    "/batch",
    response_model=BatchOut,
    response_class=JSONResponse,
    summary="Submit up to 10,000 messages",
    description="Each item is validated and stored on its own: the answer has one result per "
    "item, in order, with the error of each refused one.",
)
async def submit_batch(batch: Annotated[BatchIn, Body()], request: Request, svc: Svc) -> Response:
    # Served by smsgate.server.fastpath when it is on (the default), from the raw body; this
    # route is the OpenAPI declaration and the path taken with [server] fast_submit = false.
    body = await accept_batch(svc.submitter, key_of(request.state), batch["messages"])
    return Response(body, media_type="application/json")


@router.get(
    "/{message_id}",
    response_model=MessageOut,
    responses={404: {"model": ErrorOut}},
    summary="A message, its status and its event history",
)
async def get_message(message_id: Annotated[Id, Path()], svc: Svc) -> MessageOut:
    try:
        record = await svc.outbox.astatus(message_id)
    except MessageNotFound:
        raise not_found("message", message_id) from None
    return message_out(record, events=True)


@router.get(
    "",
    response_model=MessagePage,
    summary="Messages, newest first",
    responses={422: {"model": ErrorOut}},
)
async def list_messages(
    svc: Svc,
    status: Annotated[Status | None, Query(description="only messages in this status")] = None,
    to: Annotated[E164 | None, Query(description="only this recipient")] = None,
    since: Annotated[
        str | None,
        Query(
            description="created at or after (RFC 3339, with a zone)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    cursor: Annotated[
        Id | None, Query(description="next_cursor of the previous page (a message id)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MessagePage:
    if to is not None:
        check_number(to, "to")
    page = await svc.outbox.alist(
        status=status,
        to=to,
        since=None if since is None else rfc3339(since, "since"),
        cursor=cursor,
        limit=limit,
    )
    return MessagePage(
        items=[message_out(item, events=False) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/{message_id}/cancel",
    response_model=MessageOut,
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    summary="Cancel a scheduled or queued message",
)
async def cancel_message(message_id: Annotated[Id, Path()], svc: Svc) -> MessageOut:
    try:
        record = await svc.outbox.acancel(message_id, reason="canceled through the API")
    except MessageNotFound:
        raise not_found("message", message_id) from None
    except NotCancelable as exc:
        raise ApiError(
            409,
            "not_cancelable",
            exc.message,
            field="id",
            fix="only scheduled or queued messages can be canceled",
        ) from None
    return message_out(record, events=False)


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339(text: str, field: str) -> datetime:
    """An RFC 3339 date-time (what the schema's ``format: date-time`` means), with its zone; a
    leap second reads as the second before it."""
    if _RFC3339.fullmatch(text) is not None:
        value = text.upper().replace(":60", ":59") if text[17:19] == "60" else text.upper()
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ApiError(
        422,
        "invalid_request",
        f"{field} is not an RFC 3339 time with a zone",
        field=field,
        fix="write e.g. 2024-05-01T00:00:00Z",
    )


def message_out(record: MessageRecord, *, events: bool) -> MessageOut:
    return MessageOut(
        id=record.id,
        status=record.status,
        to=record.to,
        body=record.body,
        sender=record.sender,
        media=list(record.media),
        purpose=record.purpose,
        idempotency_key=record.idempotency_key,
        metadata=record.metadata,
        attempts=record.attempts,
        route=record.route,
        provider=record.provider,
        provider_message_id=record.provider_message_id,
        send_at=record.send_at,
        next_attempt_at=record.next_attempt_at,
        last_error=record.last_error,
        created_at=record.created_at,
        updated_at=record.updated_at,
        events=[
            EventOut(
                id=e.id,
                at=e.at,
                from_status=e.from_status,
                to_status=e.to_status,
                source=e.source,
                reason=e.reason,
                provider=e.provider,
                attempt=e.attempt,
            )
            for e in record.events
        ]
        if events
        else None,
    )
