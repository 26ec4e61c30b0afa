"""``/v1/segments`` and ``/v1/lookup``: what a body costs and what a number is, without sending."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from smsgate.encoding import segments
from smsgate.phone import lookup
from smsgate.server.models import E164, ErrorOut, LookupOut, SegmentsOut
from smsgate.server.submit import check_number

router = APIRouter(prefix="/v1", tags=["tools"])


@router.get("/segments", response_model=SegmentsOut, summary="Encoding and parts of a body")
async def get_segments(
    text: Annotated[str, Query(max_length=10_000, description="the message body")],
    smart: Annotated[
        bool, Query(description="replace look-alike characters when that saves parts")
    ] = False,
) -> SegmentsOut:
    info = segments(text, smart=smart)
    return SegmentsOut(
        encoding=info.encoding,
        units=info.units,
        segments=info.segments,
        parts=list(info.parts),
        part_units=list(info.part_units),
        ucs2_chars=list(info.ucs2_chars),
        replacements=[list(pair) for pair in info.replacements],
        text=info.text,
    )


@router.get(
    "/lookup/{number}",
    response_model=LookupOut,
    responses={422: {"model": ErrorOut}},
    summary="What libphonenumber knows about a number (offline)",
)
async def get_lookup(
    number: Annotated[E164, Path()],
) -> LookupOut:
    info = lookup(check_number(number, "number"))
    return LookupOut(**info.to_dict())
