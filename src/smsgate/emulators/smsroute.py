"""An smsroute emulator: single and bulk sends, HLR lookups, idempotency, signed webhooks.

Run it with ``smsgate emulate smsroute``; with no flags seed 003's snippets work against it
unchanged but for the host (``SMSROUTE_API_KEY`` = the printed key). What it speaks:

- ``Authorization: Bearer KEY`` on every API route; anything else is 401 ``unauthorized``.
- ``POST /v1/send`` ``{to, from, message}`` (``text`` and ``body`` are accepted for ``message``;
  optional ``callback_url`` or ``status_callback``, ``reference``, ``validity``) → 200
  ``{message_id, status: "queued", to, from, segments, encoding, price, currency, created_at,
  reference}``. ``to`` must be strict E.164 (seed 003: ``555-555-0100`` fails).
- ``Idempotency-Key`` header: a repeat of a key returns the first message with
  ``Idempotent-Replayed: true``; it is counted as a duplicate attempt (``duplicates`` in
  ``GET /_emulator/messages``, ``fields.attempts`` on the message), never as a new message. The
  same key with a different ``to``/``from``/``message`` is 409 ``idempotency_key_reused``.
- ``POST /v1/send/bulk`` ``{from, message, recipients}``: recipients are numbers (as in the seed)
  or objects ``{to, reference, idempotency_key}`` (each dedupes like the header), at most 1000.
  200 ``{batch_id, accepted, rejected, results}``, one result per recipient in input order:
  ``{to, message_id, status, …}`` or ``{to, error: {code, message, field}}``.
- ``GET /v1/hlr/{number}`` → ``{number, status: live|absent|dead, live, reachable, ported,
  network: {name, mcc, mnc}, original_network, country, type}``.
- Errors are ``{"error": {"code", "message", "field"?}}``: 400 ``invalid_request``,
  ``missing_field``, ``invalid_number``, ``invalid_sender``, ``message_too_long``,
  ``too_many_recipients``; 401 ``unauthorized``; 402 ``insufficient_funds``; 403
  ``recipient_opted_out``, ``region_not_enabled``, ``sender_not_allowed``; 409
  ``idempotency_key_reused``; 422 ``unreachable_number``, ``not_mobile``; 429 ``rate_limited``
  (``Retry-After`` seconds); 503 ``service_unavailable``.
- Twilio's magic numbers fail with the codes above (+15005550001 ``invalid_number``, +15005550004
  ``recipient_opted_out``, …); in HLR lookups +15005550001 is ``dead`` (unknown subscriber),
  +15005550002 ``absent`` (handset off), +15005550009 a landline, and numbers ending in 77 are
  ported.
- Delivery receipts go to the message's ``callback_url`` (or ``--option webhook_url=``), signed
  ``X-SmsRoute-Signature: t=,v1=`` with ``--option webhook_secret=`` (printed at start):
  ``{message_id, status, delivered_at, error_code, to, reference}``, ``error_code`` 0 when
  delivered, 27 (absent subscriber) when undelivered, 1 (unknown subscriber) when failed.
  ``POST /_emulator/inbound`` posts ``{event: "message.received", message_id, from, to, message,
  received_at}`` signed the same way.
- ``--option balance=N``: the account's credit in SMS parts (unlimited by default).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import web

from smsgate.emulators.base import EmulatedMessage, Emulator
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.smsroute import SIGNATURE_HEADER, smsroute_signature_header

DEFAULT_WEBHOOK_SECRET = "emulator-webhook-secret"
MAX_BULK = 1000
MAX_MESSAGE = 1600
PRICE_PER_PART = Decimal("0.0075")
HLR_NETWORK = {"name": "Emulated Mobile", "mcc": "001", "mnc": "01"}
HLR_ORIGINAL_NETWORK = {"name": "Emulated Original Mobile", "mcc": "001", "mnc": "02"}

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_SENDER = re.compile(r"[A-Za-z0-9 .\-_&]{1,11}|\+?\d{3,15}")

_OUTCOMES: dict[Outcome, tuple[int, str, str]] = {
    Outcome.INVALID_TO: (400, "invalid_number", "{to} is not a valid phone number"),
    Outcome.UNREACHABLE: (422, "unreachable_number", "{to} is not reachable"),
    Outcome.REGION_NOT_ENABLED: (
        403,
        "region_not_enabled",
        "sending to {to}'s country is not enabled on this account",
    ),
    Outcome.OPTED_OUT: (403, "recipient_opted_out", "{to} has opted out (replied STOP)"),
    Outcome.NOT_MOBILE: (422, "not_mobile", "{to} is not a mobile number"),
    Outcome.INVALID_FROM: (400, "invalid_sender", "sender {sender} is not a valid sender id"),
    Outcome.FROM_NOT_OWNED: (403, "sender_not_allowed", "sender {sender} is not on this account"),
    Outcome.FROM_QUEUE_FULL: (429, "rate_limited", "sender {sender} has too many queued messages"),
}
_CALLBACK_CODES = {"delivered": 0, "undelivered": 27, "failed": 1}


class ApiError(Exception):
    """An smsroute error answer: HTTP status, code, message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}

    def response(self) -> web.Response:
        response = web.json_response(self.body(), status=self.status)
        if self.status == 429:
            response.headers["Retry-After"] = "1"
        return response


class SmsrouteEmulator(Emulator):
    name = "smsroute"
    default_credentials = "emulator-api-key"
    default_sender = "MyApp"

    def __init__(
        self,
        *,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        balance: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not webhook_secret:
            raise ValueError("webhook_secret must not be empty")
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url or None
        self.balance = None if balance in (None, "") else int(balance)
        #: Idempotency-Key -> (what it was used for, the message it created)
        self._keys: dict[str, tuple[tuple[str, str, str], str]] = {}
        self.replays = 0

    @property
    def api_key(self) -> str:
        return self.credentials

    def provider_url(self) -> str:
        secret = quote(self.webhook_secret, safe="")
        return (
            f"smsroute://{quote(self.api_key, safe='')}@{self.default_sender}"
            f"?base_url={self.url}&webhook_secret={secret}"
        )

    def describe(self) -> list[str]:
        return [
            *super().describe(),
            f"webhook secret: {self.webhook_secret}",
            f"seed 003: export SMSROUTE_API_KEY={self.api_key} and use {self.url}",
        ]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/send", self.send)
        app.router.add_post("/v1/send/bulk", self.send_bulk)
        app.router.add_get("/v1/hlr/{number}", self.hlr)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            error = ApiError(429, "rate_limited", "too many requests; wait Retry-After seconds")
            return web.json_response(error.body(), status=429)
        error = ApiError(status, "service_unavailable", "smsroute is temporarily unavailable")
        return web.json_response(error.body(), status=status)

    # -- shared state ---------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        self._keys.clear()
        self.replays = 0

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        # Only the Idempotency-Key dedupes on smsroute: a replay is a duplicate attempt.
        summary["duplicates"] += self.replays
        summary["replays"] = self.replays
        return summary

    # -- the API --------------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.api_key}"
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise ApiError(
                401, "unauthorized", "missing or invalid API key: send Authorization: Bearer <key>"
            )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "invalid_request", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return body

    async def send(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
            body = await self._json(request)
            to = _required(body, "to")
            sender, text = self._sender_and_text(body)
            key = request.headers.get("Idempotency-Key") or None
            replay = self._replay(key, (to, sender, text))
            if replay is not None:
                self._count_replay(replay)
                return self._answer(replay, replayed=True)
            _check_recipient(to, sender)
            self._charge(text, 1)
            message = self._store(to, sender, text, body, key, str(body.get("reference") or ""))
            return self._answer(message)
        except ApiError as error:
            return error.response()

    async def send_bulk(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
            body = await self._json(request)
            sender, text = self._sender_and_text(body)
            recipients = body.get("recipients")
            if not isinstance(recipients, list) or not recipients:
                raise ApiError(
                    400, "missing_field", "recipients must be a non-empty list", "recipients"
                )
            if len(recipients) > MAX_BULK:
                raise ApiError(
                    400,
                    "too_many_recipients",
                    f"at most {MAX_BULK} recipients per request",
                    "recipients",
                )
            items = [_recipient_item(item, i) for i, item in enumerate(recipients)]
            checks = [self._bulk_check(to, key, sender, text) for to, _, key in items]
            self._charge(text, sum(c is None for c in checks))
            batch_id = "bat_" + secrets.token_hex(12)
            results: list[dict[str, Any]] = []
            for (to, reference, key), check in zip(items, checks, strict=True):
                if isinstance(check, ApiError):
                    results.append({"to": to, **check.body()})
                elif isinstance(check, EmulatedMessage):
                    self._count_replay(check)
                    results.append(self._resource(check))
                else:
                    message = self._store(to, sender, text, body, key, reference, batch_id)
                    results.append(self._resource(message))
            accepted = sum("error" not in r for r in results)
            return web.json_response(
                {
                    "batch_id": batch_id,
                    "accepted": accepted,
                    "rejected": len(results) - accepted,
                    "results": results,
                }
            )
        except ApiError as error:
            return error.response()

    def _bulk_check(
        self, to: str, key: str | None, sender: str, text: str
    ) -> ApiError | EmulatedMessage | None:
        """A recipient's refusal, its replayed message, or None when it is to be sent."""
        try:
            replay = self._replay(key, (to, sender, text))
            if replay is not None:
                return replay
            _check_recipient(to, sender)
        except ApiError as error:
            if error.code in ("rate_limited", "invalid_sender", "sender_not_allowed"):
                raise  # about the whole request, not this recipient
            return error
        return None

    async def hlr(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
            number = request.match_info["number"].strip()
            _check_e164(number, "number")
            return web.json_response(_hlr_answer(number))
        except ApiError as error:
            return error.response()

    # -- helpers --------------------------------------------------------------------------------

    def _sender_and_text(self, body: dict[str, Any]) -> tuple[str, str]:
        sender = _required(body, "from")
        if not _SENDER.fullmatch(sender):
            raise ApiError(
                400,
                "invalid_sender",
                f"from {sender!r} must be an alphanumeric id of at most 11 characters or a number",
                "from",
            )
        text = next((body[k] for k in ("message", "text", "body") if body.get(k)), None)
        if not isinstance(text, str) or not text:
            raise ApiError(
                400, "missing_field", "message is required (the text to send)", "message"
            )
        if len(text) > MAX_MESSAGE:
            raise ApiError(
                400,
                "message_too_long",
                f"message is {len(text)} characters; at most {MAX_MESSAGE}",
                "message",
            )
        return sender, text

    def _replay(self, key: str | None, fingerprint: tuple[str, str, str]) -> EmulatedMessage | None:
        if key is None or key not in self._keys:
            return None
        used_for, message_id = self._keys[key]
        if used_for != fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different message",
                "Idempotency-Key",
            )
        return self.by_id[message_id]

    def _count_replay(self, message: EmulatedMessage) -> None:
        message.fields["attempts"] = int(message.fields.get("attempts", 1)) + 1
        self.replays += 1

    def _charge(self, text: str, recipients: int) -> None:
        if self.balance is None or recipients == 0:
            return
        from smsgate.encoding import segments

        cost = segments(text).segments * recipients
        if cost > self.balance:
            raise ApiError(
                402,
                "insufficient_funds",
                f"this send needs {cost} credits and the balance is {self.balance}",
            )
        self.balance -= cost

    def _store(
        self,
        to: str,
        sender: str,
        text: str,
        body: dict[str, Any],
        key: str | None,
        reference: str,
        batch_id: str | None = None,
    ) -> EmulatedMessage:
        from smsgate.encoding import segments

        info = segments(text)
        callback = body.get("callback_url") or body.get("status_callback") or self.webhook_url
        message_id = "msg_" + secrets.token_hex(12)
        message = self.record(
            EmulatedMessage(
                id=message_id,
                to=to,
                sender=sender,
                body=text,
                status="queued",
                created_at=time.time(),
                # Only the Idempotency-Key dedupes; a message without one is always new.
                reference=key or message_id,
                callback_url=str(callback) if callback else None,
                segments=info.segments,
                fields={
                    "attempts": 1,
                    "idempotency_key": key,
                    "reference": reference or None,
                    "encoding": info.encoding,
                    "validity": body.get("validity"),
                    "batch_id": batch_id,
                },
            )
        )
        if key is not None:
            self._keys[key] = ((to, sender, text), message.id)
        return message

    def _resource(self, message: EmulatedMessage) -> dict[str, Any]:
        return {
            "message_id": message.id,
            "status": message.status,
            "to": message.to,
            "from": message.sender,
            "segments": message.segments,
            "encoding": message.fields.get("encoding"),
            "price": str(PRICE_PER_PART * message.segments),
            "currency": "USD",
            "created_at": _iso(message.created_at),
            "reference": message.fields.get("reference"),
        }

    def _answer(self, message: EmulatedMessage, *, replayed: bool = False) -> web.Response:
        response = web.json_response(self._resource(message))
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    # -- webhooks -------------------------------------------------------------------------------

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        message.status = outcome
        payload = {
            "message_id": message.id,
            "status": outcome,
            "delivered_at": _iso(time.time()) if outcome == "delivered" else None,
            "error_code": _CALLBACK_CODES.get(outcome, 1),
            "to": message.to,
            "reference": message.fields.get("reference"),
        }
        await self._signed_post(message.callback_url, payload)

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        payload: dict[str, Any] = {
            "event": "message.received",
            "message_id": "in_" + secrets.token_hex(12),
            "from": sender,
            "to": to,
            "message": body,
            "received_at": _iso(time.time()),
        }
        if media:
            payload["media"] = media
        return await self._signed_post(url, payload)

    async def _signed_post(self, url: str, payload: dict[str, Any]) -> int:
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: smsroute_signature_header(self.webhook_secret, int(time.time()), raw),
        }
        return await self.post(url, data=raw, headers=headers)


def _required(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "missing_field", f"{field} is required", field)
    return value.strip()


def _recipient_item(item: Any, index: int) -> tuple[str, str, str | None]:
    """(to, reference, idempotency key) of one bulk recipient: a number or an object."""
    if isinstance(item, str):
        return item.strip(), "", None
    if isinstance(item, dict) and isinstance(item.get("to"), str):
        key = item.get("idempotency_key")
        return item["to"].strip(), str(item.get("reference") or ""), str(key) if key else None
    raise ApiError(
        400,
        "invalid_request",
        f"recipients[{index}] must be a number or an object with 'to'",
        f"recipients[{index}]",
    )


def _check_e164(number: str, field: str) -> None:
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import normalize

    if not _E164.fullmatch(number):
        raise ApiError(
            400,
            "invalid_number",
            f"{field} {number!r} is not E.164: a leading +, the country code and the number, "
            "no spaces, dashes or parentheses (e.g. +15555550100)",
            field,
        )
    try:
        normalize(number, strict=False)
    except InvalidRecipient:
        raise ApiError(
            400, "invalid_number", f"{field} {number} is not a possible number", field
        ) from None


def _check_recipient(to: str, sender: str) -> None:
    _check_e164(to, "to")
    outcome = magic_outcome(to, sender)
    if outcome is not None:
        status, code, text = _OUTCOMES[outcome]
        field = "from" if outcome in (Outcome.INVALID_FROM, Outcome.FROM_NOT_OWNED) else "to"
        raise ApiError(status, code, text.format(to=to, sender=sender), field)


def _hlr_answer(number: str) -> dict[str, Any]:
    from smsgate.phone import region_of

    outcome = magic_outcome(number, "")
    status, kind = "live", "mobile"
    if outcome is Outcome.INVALID_TO:
        status = "dead"
    elif outcome is Outcome.UNREACHABLE:
        status = "absent"
    elif outcome is Outcome.NOT_MOBILE:
        status, kind = "dead", "landline"
    ported = status != "dead" and number.endswith("77")
    return {
        "number": number,
        "status": status,
        "live": status != "dead",
        "reachable": status == "live",
        "ported": ported,
        "network": dict(HLR_NETWORK) if status != "dead" else None,
        "original_network": dict(HLR_ORIGINAL_NETWORK) if ported else None,
        "country": region_of(number),
        "type": kind,
        "price": "0.0010",
        "currency": "USD",
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
