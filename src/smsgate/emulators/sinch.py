"""A Sinch SMS REST API (XMS) emulator: batches, delivery reports, signed callbacks.

Run it with ``smsgate emulate sinch``. It signs callbacks with a secret it makes at start
(``webhook_secret=`` in the sinch:// URL; ``provider_url()`` includes it); ``--option
webhook_secret=S`` keeps it across restarts. What it speaks:

- ``POST /xms/v1/{service_plan_id}/batches`` with ``Authorization: Bearer TOKEN`` (401
  ``{"code": "unauthorized", "text": ...}`` otherwise, or for another plan id); a JSON body with
  ``from``, ``to`` (a list), ``body``, ``delivery_report``, ``callback_url``,
  ``client_reference``; 201 with the batch (``"type": "mt_text"``). A batch to many recipients
  is accepted as one batch; each recipient gets its own reports;
- Sinch's ``{"code", "text"}`` refusals: Twilio's magic numbers as 400
  ``syntax_invalid_parameter_format`` for an invalid recipient or sender, 429
  ``too_many_requests`` for a full sender queue; injected 429 and 503 likewise;
- an opted-out recipient (the magic number, or a number that texted STOP) is accepted and then
  reported ``Failed`` with code 418, as Sinch reports a recipient that blocked the sender;
- ``GET /xms/v1/{plan}/batches/{id}`` and ``.../delivery_report?type=full``;
- ``GET /xms/v1/{plan}/batches`` lists batches (filters ``client_reference``, ``from``,
  ``start_date``, ``end_date``; ``page`` from 0, ``page_size`` at most 100; ``count``);
- per-recipient callbacks (``Dispatched`` code 401, then ``Delivered`` code 0 or ``Failed``),
  signed with HMAC-SHA256 over ``body.nonce.timestamp``; inbound ``mo_text``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from smsgate.emulators.base import EmulatedMessage, Emulator, possible_number
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.sinch import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sinch_signature,
)

#: emulator outcome -> (final status, code)
_FINALS: dict[str, tuple[str, int]] = {
    "delivered": ("Delivered", 0),
    "undelivered": ("Failed", 404),
    "failed": ("Rejected", 408),
    "expired": ("Expired", 406),
}
OPTED_OUT = ("Failed", 418)


def sinch_error(status: int, code: str, text: str) -> web.Response:
    return web.json_response({"code": code, "text": text}, status=status)


def _iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class SinchEmulator(Emulator):
    name = "sinch"
    max_page_size = 100
    default_credentials = "e2ef5b7c0a8d4c3bb0f1a2b3c4d5e6f7:emulatorapitoken00000000000000"
    default_sender = "+15005550006"
    outcome_names = tuple(_FINALS)
    stop_words = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
    start_words = frozenset({"start", "unstop"})

    def __init__(
        self, *, webhook_secret: str | None = None, webhook_url: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(24)
        self.webhook_url = webhook_url
        self.service_plan_id, _, self.token = self.credentials.partition(":")

    def provider_url(self) -> str:
        return (
            f"sinch://{self.credentials}@{self.default_sender}?base_url={self.url}"
            f"&webhook_secret={self.webhook_secret}"
        )

    def describe(self) -> list[str]:
        return [*super().describe(), f"callback signing secret: {self.webhook_secret}"]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/xms/v1/{plan}/batches", self.create)
        app.router.add_get("/xms/v1/{plan}/batches", self.list_batches)
        app.router.add_get("/xms/v1/{plan}/batches/{id}", self.fetch)
        app.router.add_get("/xms/v1/{plan}/batches/{id}/delivery_report", self.report)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return sinch_error(429, "too_many_requests", "Too many requests")
        return sinch_error(status, "internal_error", "Internal error, please try again")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        good = secrets.compare_digest(header.encode(), f"Bearer {self.token}".encode())
        if not good or request.match_info["plan"] != self.service_plan_id:
            return sinch_error(401, "unauthorized", "Unauthorized")
        return None

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return sinch_error(400, "syntax_invalid_json", "The JSON body is invalid")
        sender, recipients = str(body.get("from") or ""), body.get("to")
        text = body.get("body")
        if not isinstance(recipients, list) or not recipients or not isinstance(text, str):
            return sinch_error(
                400, "syntax_constraint_violation", "to must be a non-empty list and body a string"
            )
        level = body.get("delivery_report", "none")
        if level not in ("none", "summary", "full", "per_recipient", "per_recipient_final"):
            return sinch_error(
                400, "syntax_invalid_parameter_format", f"Invalid delivery_report: {level}"
            )
        for to in recipients:
            outcome = magic_outcome(str(to), sender)
            if outcome in (Outcome.INVALID_FROM, Outcome.FROM_NOT_OWNED):
                return sinch_error(
                    400, "syntax_invalid_parameter_format", f"Invalid from address: {sender}"
                )
            if outcome is Outcome.FROM_QUEUE_FULL:
                return sinch_error(429, "too_many_requests", "Too many requests")
            if outcome in (Outcome.INVALID_TO, Outcome.NOT_MOBILE, Outcome.UNREACHABLE) or (
                not possible_number(str(to))
            ):
                return sinch_error(400, "syntax_invalid_parameter_format", f"Invalid number: {to}")
        from smsgate.encoding import segments

        batch_id = uuid.uuid4().hex.upper()[:26]
        callback = body.get("callback_url") or self.webhook_url
        per_recipient = level in ("per_recipient", "per_recipient_final")
        for to in recipients:
            self.record(
                EmulatedMessage(
                    id=batch_id,
                    to=str(to),
                    sender=sender,
                    body=text,
                    status="Queued",
                    created_at=time.time(),
                    reference=None,
                    callback_url=str(callback) if callback and per_recipient else None,
                    segments=max(1, segments(text).segments) if text else 1,
                    fields={
                        "client_reference": body.get("client_reference"),
                        "level": level,
                        "blocked": magic_outcome(str(to), sender) is Outcome.OPTED_OUT
                        or self.has_opted_out(str(to), sender),
                    },
                )
            )
        return web.json_response(self._batch(batch_id, body), status=201)

    def _batch(self, batch_id: str, body: dict[str, Any]) -> dict[str, Any]:
        now = _iso()
        return {
            "id": batch_id,
            "to": body.get("to"),
            "from": body.get("from"),
            "canceled": False,
            "body": body.get("body"),
            "type": "mt_text",
            "created_at": now,
            "modified_at": now,
            "delivery_report": body.get("delivery_report", "none"),
            "expire_at": body.get("expire_at") or _iso(time.time() + 3 * 86400),
            "client_reference": body.get("client_reference"),
            "flash_message": False,
        }

    def _members(self, batch_id: str) -> list[EmulatedMessage]:
        return [m for m in self.messages if m.id == batch_id]

    async def fetch(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        members = self._members(request.match_info["id"])
        if not members:
            return sinch_error(404, "not_found", "Batch not found")
        first = members[0]
        return web.json_response(
            self._batch(
                first.id,
                {
                    "to": [m.to for m in members],
                    "from": first.sender,
                    "body": first.body,
                    "client_reference": first.fields.get("client_reference"),
                },
            )
        )

    async def list_batches(self, request: web.Request) -> web.Response:
        """Batches as Sinch lists them: newest first, ``client_reference``, ``from`` and
        ``start_date``/``end_date`` (ISO 8601) filters, ``page`` from 0 and ``page_size`` (at
        most 100), with ``count``, the number of batches that match."""
        if (denied := self._check_auth(request)) is not None:
            return denied
        if (failed := self.list_request(request)) is not None:
            return failed
        query = request.query
        try:
            page = max(int(query.get("page", "0")), 0)
            size = min(max(int(query.get("page_size", "30")), 1), self.max_page_size)
            start = _epoch(query.get("start_date"))
            end = _epoch(query.get("end_date"))
        except ValueError as exc:
            return sinch_error(400, "syntax_invalid_parameter_format", f"Invalid filter: {exc}")
        senders = {s for v in query.getall("from", []) for s in v.split(",")}
        reference = query.get("client_reference")
        batches: dict[str, list[EmulatedMessage]] = {}
        for m in reversed(self.messages):
            if reference is not None and m.fields.get("client_reference") != reference:
                continue
            if senders and m.sender not in senders:
                continue
            if (start is not None and m.created_at < start) or (
                end is not None and m.created_at > end
            ):
                continue
            batches.setdefault(m.id, []).append(m)
        chunk = list(batches.values())[page * size : (page + 1) * size]
        return web.json_response(
            {
                "count": len(batches),
                "page": page,
                "page_size": len(chunk),
                "batches": [self._listed(members) for members in chunk],
            }
        )

    def _listed(self, members: list[EmulatedMessage]) -> dict[str, Any]:
        first = members[0]
        batch = self._batch(
            first.id,
            {
                "to": [m.to for m in reversed(members)],
                "from": first.sender,
                "body": first.body,
                "client_reference": first.fields.get("client_reference"),
            },
        )
        batch["created_at"] = _iso(first.created_at)
        return batch

    async def report(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        members = self._members(request.match_info["id"])
        if not members:
            return sinch_error(404, "not_found", "Batch not found")
        groups: dict[tuple[str, int], list[str]] = {}
        for m in members:
            groups.setdefault((m.status, int(m.fields.get("code", 400))), []).append(m.to)
        return web.json_response(
            {
                "batch_id": members[0].id,
                "statuses": [
                    {"code": code, "status": status, "count": len(to), "recipients": to}
                    for (status, code), to in groups.items()
                ],
                "total_message_count": len(members),
                "type": "delivery_report_sms",
                "client_reference": members[0].fields.get("client_reference"),
            }
        )

    # -- callbacks ----------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
        """The signature headers Sinch sends with ``body``."""
        nonce = secrets.token_urlsafe(16)
        stamp = str(int(time.time() if timestamp is None else timestamp))
        return {
            SIGNATURE_HEADER: sinch_signature(self.webhook_secret, body, nonce, stamp),
            NONCE_HEADER: nonce,
            TIMESTAMP_HEADER: stamp,
            "x-sinch-webhook-signature-algorithm": "HmacSHA256",
        }

    async def _signed_post(self, url: str, payload: dict[str, Any]) -> int:
        body = json.dumps(payload).encode()
        headers = {**self.sign(body), "Content-Type": "application/json"}
        return await self.post(url, data=body, headers=headers)

    def _report(self, m: EmulatedMessage, status: str, code: int) -> dict[str, Any]:
        m.status, m.fields["code"] = status, code
        report: dict[str, Any] = {
            "type": "recipient_delivery_report_sms",
            "batch_id": m.id,
            "recipient": m.to,
            "code": code,
            "status": status,
            "at": _iso(),
            "operator_status_at": _iso(),
            "applied_originator": m.sender,
            "number_of_message_parts": m.segments,
            "encoding": "GSM",
        }
        if m.fields.get("client_reference"):
            report["client_reference"] = m.fields["client_reference"]
        return report

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        if message.fields.get("blocked"):
            status, code = OPTED_OUT
        else:
            status, code = _FINALS.get(outcome, _FINALS["undelivered"])
        if message.fields.get("level") == "per_recipient" and status != "Rejected":
            await self._signed_post(message.callback_url, self._report(message, "Dispatched", 401))
        await self._signed_post(message.callback_url, self._report(message, status, code))

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        payload = {
            "type": "mo_text",
            "id": uuid.uuid4().hex.upper()[:26],
            "from": sender.removeprefix("+"),
            "to": to.removeprefix("+"),
            "body": body,
            "received_at": _iso(),
            "operator_id": "00101",
        }
        return await self._signed_post(url, payload)
