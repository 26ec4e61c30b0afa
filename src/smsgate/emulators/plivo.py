"""A Plivo Messages API emulator: send (one or ``<``-joined destinations), fetch, list, callbacks.

Run it with ``smsgate emulate plivo``. What it speaks:

- ``POST /v1/Account/{auth_id}/Message/`` with HTTP Basic auth and a JSON (or form) body: ``src``
  or ``powerpack_uuid``, ``dst`` (up to 1,000 numbers joined by ``<``; ``+``, spaces, dashes, dots
  and brackets are stripped, repeats dropped), ``text``, ``type`` (``sms``/``mms``),
  ``media_urls``, ``url``, ``method``; 202 ``{"api_id", "message": "message(s) queued",
  "message_uuid": [...]}`` with one uuid per accepted destination, in ``dst`` order;
- refused destinations listed in ``invalid_number`` (Plivo's field): numbers that are not
  possible, and Twilio's magic invalid, unreachable, region-not-enabled and not-mobile numbers.
  When no destination is accepted the answer is still 202, with an empty ``message_uuid``;
- opted-out recipients accepted, as Plivo accepts them, then failed: the status callback says
  ``failed`` with ``ErrorCode`` 200. That happens to Twilio's magic opted-out number
  (+15005550004) and to numbers that texted STOP (or another of Plivo's opt-out keywords) through
  ``POST /_emulator/inbound``, until they text START;
- the magic senders as ``{"api_id", "error"}`` refusals (400, or 429 for a full queue);
  401 for wrong credentials, 404 for an unknown message, injected 429 and 503 with Plivo's body;
- ``GET .../Message/{uuid}/`` and ``GET .../Message/`` (the newest first, ``message_direction``
  and ``message_time__gte``-style filters, ``limit`` at most 20, ``offset``, ``meta.next``);
- status callbacks, one per destination and status (``sent``, then the outcome), as a form POST
  (or GET when ``method=GET``) signed with ``X-Plivo-Signature-V3`` and its nonce;
- inbound messages to ``POST /_emulator/inbound`` as Plivo's signed form POST.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from smsgate.emulators.base import (
    EmulatedMessage,
    Emulator,
    address_key,
    possible_number,
    request_fields,
)
from smsgate.emulators.magic import MAGIC_FROM, MAGIC_TO, Outcome
from smsgate.providers.plivo import MAX_DESTINATIONS, plivo_v3_signature

RATE = "0.00500"
_INVALID = frozenset(
    {Outcome.INVALID_TO, Outcome.UNREACHABLE, Outcome.REGION_NOT_ENABLED, Outcome.NOT_MOBILE}
)
#: emulator outcome -> (callback Status, ErrorCode)
_OUTCOMES: dict[str, tuple[str, str]] = {
    "delivered": ("delivered", ""),
    "undelivered": ("undelivered", "20"),
    "failed": ("failed", "10"),
    "rejected": ("rejected", "30"),
    "opted_out": ("failed", "200"),
}


def plivo_error(status: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"api_id": str(uuid.uuid4()), "error": text, **extra}, status=status)


class PlivoEmulator(Emulator):
    name = "plivo"
    default_credentials = "MAEMULATOR0000000000:emulator-auth-token"
    default_sender = "+15005550006"
    max_page_size = 20
    outcome_names = tuple(_OUTCOMES)
    stop_words = frozenset(
        {"stop", "stopall", "stop all", "end", "quit", "cancel", "unsubscribe", "unsub"}
    )
    start_words = frozenset({"start", "unstop", "yes", "resume", "go"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: how many send requests arrived (a bulk request counts once)
        self.send_requests = 0

    @property
    def auth_id(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def auth_token(self) -> str:
        return self.credentials.partition(":")[2]

    def provider_url(self) -> str:
        return f"plivo://{self.credentials}@{self.default_sender}?base_url={self.url}"

    def add_routes(self, app: web.Application) -> None:
        base = "/v1/Account/{auth_id}/Message/"
        app.router.add_post(base, self.create)
        app.router.add_get(base, self.list_messages)
        app.router.add_get(base + "{uuid}/", self.fetch)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return plivo_error(429, "too many requests")
        return plivo_error(status, "service unavailable")

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "send_requests": self.send_requests}

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if (
            not secrets.compare_digest(header.encode(), expected.encode())
            or request.match_info["auth_id"] != self.auth_id
        ):
            return plivo_error(401, "authentication failed")
        return None

    def _resource(self, m: EmulatedMessage) -> dict[str, Any]:
        return {
            "api_id": str(uuid.uuid4()),
            "message_uuid": m.id,
            "from_number": m.sender,
            "to_number": m.to,
            "message_state": m.status,
            "message_type": "mms" if m.media else "sms",
            "message_direction": "outbound",
            "units": m.segments,
            "total_rate": RATE,
            "total_amount": f"{m.segments * float(RATE):.5f}",
            "message_time": time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(m.created_at)),
            "error_code": m.fields.get("error_code", ""),
            "resource_uri": f"/v1/Account/{self.auth_id}/Message/{m.id}/",
        }

    # -- the API ------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        body = await request_fields(request)
        if body is None:
            return plivo_error(400, "invalid JSON body")
        self.send_requests += 1
        src = address_key(str(body.get("src") or ""))
        if not src and not body.get("powerpack_uuid"):
            return plivo_error(400, "Specify either powerpack_uuid or src in request params")
        kind = str(body.get("type") or "sms").lower()
        text = str(body.get("text") or "")
        media = body.get("media_urls") or []
        if kind not in ("sms", "mms"):
            return plivo_error(400, f"type {kind!r} is not one of sms, mms")
        if not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            return plivo_error(400, "media_urls must be a list of URLs")
        if kind == "sms" and not text:
            return plivo_error(400, "text parameter is required for sms")
        if kind == "mms" and not media and not text:
            return plivo_error(400, "media_urls or text is required for mms")
        if len(text) > 1600:
            return plivo_error(400, "text exceeds the limit of 1600 characters")
        destinations = _destinations(str(body.get("dst") or ""))
        if not destinations:
            return plivo_error(400, "dst parameter is required")
        if len(destinations) > MAX_DESTINATIONS:
            return plivo_error(400, f"dst holds more than {MAX_DESTINATIONS} unique numbers")
        if src and src in destinations:
            return plivo_error(400, "destination number cannot be same as source number")
        sender_outcome = MAGIC_FROM.get(f"+{src}")
        if sender_outcome is Outcome.FROM_QUEUE_FULL:
            return plivo_error(429, f"src {src} has too many messages queued")
        if sender_outcome is not None:
            return plivo_error(
                400, f"src {src} is not a Plivo number on this account or is not SMS-enabled"
            )
        invalid, uuids = [], []
        from smsgate.encoding import segments

        units = max(1, segments(text).segments) if text else 1
        for dst in destinations:
            outcome = MAGIC_TO.get(f"+{dst}")
            if outcome in _INVALID or not possible_number(dst):
                invalid.append(dst)
                continue
            message = self.record(
                EmulatedMessage(
                    id=str(uuid.uuid4()),
                    to=dst,
                    sender=src or str(body.get("powerpack_uuid")),
                    body=text,
                    media=list(media),
                    status="queued",
                    created_at=time.time(),
                    callback_url=str(body["url"]) if body.get("url") else None,
                    segments=units,
                    fields={
                        "method": str(body.get("method") or "POST").upper(),
                        # Accepted all the same: Plivo fails it afterwards, in the callback.
                        "blocked": outcome is Outcome.OPTED_OUT or self.has_opted_out(dst, src),
                        "request": {k: v for k, v in body.items() if k != "dst"},
                    },
                )
            )
            uuids.append(message.id)
        answer: dict[str, Any] = {
            "api_id": str(uuid.uuid4()),
            "message": "message(s) queued" if uuids else "no message queued",
            "message_uuid": uuids,
        }
        if invalid:
            answer["invalid_number"] = invalid
        return web.json_response(answer, status=202)

    async def fetch(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        message = self.by_id.get(request.match_info["uuid"])
        if message is None:
            return plivo_error(404, "not found")
        return web.json_response(self._resource(message))

    async def list_messages(self, request: web.Request) -> web.Response:
        """Messages as Plivo lists them: newest first, ``message_direction`` and
        ``message_time__gte``/``__gt``/``__lte``/``__lt`` filters (``YYYY-MM-DD HH:MM[:SS]``,
        UTC), ``limit`` (at most 20) and ``offset``, and ``meta.next`` to the following page."""
        if (denied := self._check_auth(request)) is not None:
            return denied
        if (failed := self.list_request(request)) is not None:
            return failed
        query = request.query
        try:
            limit = min(max(int(query.get("limit", "20")), 1), self.max_page_size)
            offset = max(int(query.get("offset", "0")), 0)
            bounds = {op: _list_time(query.get(f"message_time__{op}")) for op in _TIME_FILTERS}
        except ValueError as exc:
            return plivo_error(400, f"invalid filter: {exc}")
        direction = query.get("message_direction")
        matching = [
            m
            for m in reversed(self.messages)
            if direction in (None, "outbound")
            and all(
                bound is None or _TIME_FILTERS[op](m.created_at, bound)
                for op, bound in bounds.items()
            )
        ]
        page = matching[offset : offset + limit]
        filters = [(k, v) for k, v in query.items() if k not in ("limit", "offset")]

        def link(at: int) -> str:
            return f"{request.path}?{urlencode([*filters, ('limit', limit), ('offset', at)])}"

        return web.json_response(
            {
                "api_id": str(uuid.uuid4()),
                "meta": {
                    "limit": limit,
                    "offset": offset,
                    "total_count": len(matching),
                    "next": link(offset + limit) if offset + limit < len(matching) else None,
                    "previous": link(max(offset - limit, 0)) if offset else None,
                },
                "objects": [self._resource(m) for m in page],
            }
        )

    # -- callbacks ----------------------------------------------------------------------------

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        if message.fields.get("blocked"):
            outcome = "opted_out"
        final, code = _OUTCOMES.get(outcome, _OUTCOMES["undelivered"])
        # Plivo refuses "failed"/"rejected" messages before they reach a carrier: no "sent".
        steps = [(final, code)]
        if final not in ("failed", "rejected"):
            steps.insert(0, ("sent", ""))
        for status, error_code in steps:
            message.status = status
            message.fields["error_code"] = error_code
            fields = {
                "MessageUUID": message.id,
                "ParentMessageUUID": message.id,
                "PartInfo": f"1 of {message.segments}" if message.segments > 1 else "",
                "To": message.to,
                "From": message.sender,
                "Status": status,
                "ErrorCode": error_code,
                "Units": str(message.segments),
                "TotalRate": RATE,
                "TotalAmount": f"{message.segments * float(RATE):.5f}",
                "MessageTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            }
            await self.signed(message.callback_url, fields, method=message.fields["method"])

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        fields = {
            "From": sender.lstrip("+"),
            "To": to.lstrip("+"),
            # As the API reference shows them: an MMS's text in Body, an SMS's in Text.
            ("Body" if media else "Text"): body,
            "Type": "mms" if media else "sms",
            "MessageUUID": str(uuid.uuid4()),
            "Units": "1",
            "TotalRate": "0.00000",
            "TotalAmount": "0.00000",
            "MessageTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        if media:
            fields["MediaCount"] = str(len(media))
            fields.update({f"Media{i}": item for i, item in enumerate(media, start=1)})
        return await self.signed(url, fields)

    def sign(self, url: str, fields: dict[str, str], *, method: str = "POST") -> dict[str, str]:
        """The signature headers Plivo would send with ``fields`` to ``url``."""
        nonce = str(secrets.randbelow(10**20)).zfill(20)
        signature = plivo_v3_signature(self.auth_token, url, nonce, fields.items(), method=method)
        return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}

    async def signed(self, url: str, fields: dict[str, str], *, method: str = "POST") -> int:
        if method == "GET":
            target = url + ("&" if "?" in url else "?") + urlencode(fields)
            return await self.get(target, headers=self.sign(target, {}, method="GET"))
        headers = {**self.sign(url, fields), "Content-Type": "application/x-www-form-urlencoded"}
        return await self.post(url, data=fields, headers=headers)


#: Plivo's message_time filters: a message created at ``at`` passes ``op`` with ``bound``
_TIME_FILTERS: dict[str, Callable[[float, float], bool]] = {
    "gte": lambda at, bound: at >= bound,
    "gt": lambda at, bound: at > bound,
    "lte": lambda at, bound: at <= bound,
    "lt": lambda at, bound: at < bound,
}


def _list_time(value: str | None) -> float | None:
    """A list filter's time, ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` in UTC, as epoch seconds."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.strip().replace(" ", "T"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _destinations(dst: str) -> list[str]:
    """``dst`` split on ``<``, sanitized as Plivo does, repeats dropped, order kept."""
    seen: dict[str, None] = {}
    for item in dst.split("<"):
        number = "".join(ch for ch in item if ch not in "+-.() \t")
        if number:
            seen.setdefault(number, None)
    return list(seen)
