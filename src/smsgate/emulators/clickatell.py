"""A Clickatell Platform emulator: ``POST /messages``, status callbacks, inbound messages.

Run it with ``smsgate emulate clickatell --option webhook_url=https://.../status?smsgate_token=S``
(the callback URL is the integration's, set in Clickatell's portal, never in a request). What it
speaks:

- ``Authorization: API_KEY`` (401 with top-level ``errorCode`` 1 "Invalid or missing Integration
  API Key" otherwise); JSON ``{"to": [...], "content", "from", "clientMessageId"}``; 202 with one
  ``messages`` entry per recipient;
- refusals per recipient inside that 202 (``accepted: false``): Twilio's magic numbers as 105
  invalid destination, 114 cannot route, 121 destination blocked (opted out, also after an
  inbound STOP); whole-request refusals as top-level codes: 106 invalid source address (400),
  101 missing parameters (400), 429 for a full sender queue and injected throttling;
- status callbacks (3 ``DELIVERED_TO_GATEWAY``, then 4 ``RECEIVED_BY_RECIPIENT``, 7
  ``ERROR_DELIVERING`` or 10 ``EXPIRED``) to ``webhook_url``; Clickatell signs none.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from aiohttp import web

from smsgate.emulators.base import EmulatedMessage, Emulator, possible_number
from smsgate.emulators.magic import Outcome, magic_outcome

_REFUSALS: dict[Outcome, tuple[int, str, str]] = {
    Outcome.INVALID_TO: (105, "Invalid destination address", "Invalid destination address."),
    Outcome.NOT_MOBILE: (105, "Invalid destination address", "Invalid destination address."),
    Outcome.UNREACHABLE: (114, "Cannot route message", "Cannot route message."),
    Outcome.REGION_NOT_ENABLED: (114, "Cannot route message", "Cannot route message."),
    Outcome.OPTED_OUT: (121, "Destination mobile number blocked", "Number opted out."),
}
_FINALS: dict[str, tuple[int, str, str]] = {
    "delivered": (4, "RECEIVED_BY_RECIPIENT", "Received by recipient"),
    "undelivered": (7, "ERROR_DELIVERING", "Error delivering message"),
    "expired": (10, "EXPIRED", "Message expired"),
}
_NO_ERROR = {"errorCode": None, "error": None, "errorDescription": None}


def clickatell_error(status: int, code: int, error: str, description: str) -> web.Response:
    return web.json_response(
        {"messages": [], "errorCode": code, "error": error, "errorDescription": description},
        status=status,
    )


class ClickatellEmulator(Emulator):
    name = "clickatell"
    default_credentials = "Xq3emulatorKeyClickatell00000000"
    default_sender = "+15005550006"
    outcome_names = tuple(_FINALS)
    stop_words = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
    start_words = frozenset({"start", "unstop"})

    def __init__(self, *, webhook_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: the integration's status callback URL (Clickatell's portal setting)
        self.webhook_url = webhook_url

    @property
    def webhook_token(self) -> str:
        """The token ``provider_url`` configures (derived from the key, so it differs with it)."""
        import hashlib

        return "tok" + hashlib.sha256(self.credentials.encode()).hexdigest()[:24]

    def provider_url(self) -> str:
        return (
            f"clickatell://{self.credentials}@{self.default_sender}?base_url={self.url}"
            f"&webhook_token={self.webhook_token}"
        )

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/messages", self.create)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return clickatell_error(429, 429, "Too many requests", "Throughput exceeded.")
        return clickatell_error(status, 901, "Internal error", "Internal error, please retry.")

    async def create(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), self.credentials.encode()):
            return clickatell_error(
                401, 1, "Invalid or missing Integration API Key", "Authentication failed."
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return clickatell_error(400, 100, "Data malformed", "The JSON data is invalid.")
        recipients, text = body.get("to"), body.get("content")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not isinstance(recipients, list) or not recipients or not text:
            return clickatell_error(
                400, 101, "Invalid or missing parameters", "to and content are required."
            )
        sender = str(body.get("from") or "")
        outcomes = {magic_outcome(str(to), sender) for to in recipients}
        if outcomes & {Outcome.INVALID_FROM, Outcome.FROM_NOT_OWNED}:
            return clickatell_error(
                400, 106, "Invalid source address", "The from number is not on this account."
            )
        if Outcome.FROM_QUEUE_FULL in outcomes:
            return clickatell_error(429, 429, "Too many requests", "Throughput exceeded.")
        entries = [self._accept(str(to), sender, str(text), body) for to in recipients]
        return web.json_response({"messages": entries, **_NO_ERROR}, status=202)

    def _accept(self, to: str, sender: str, text: str, body: dict[str, Any]) -> dict[str, Any]:
        outcome = magic_outcome(to, sender)
        refusal = _REFUSALS.get(outcome) if outcome is not None else None
        if refusal is None and not possible_number(to):
            refusal = _REFUSALS[Outcome.INVALID_TO]
        if refusal is None and self.has_opted_out(to, sender):
            refusal = _REFUSALS[Outcome.OPTED_OUT]
        if refusal is not None:
            code, error, description = refusal
            return {
                "apiMessageId": None,
                "accepted": False,
                "to": to,
                "errorCode": code,
                "error": error,
                "errorDescription": description,
            }
        from smsgate.encoding import segments

        message = self.record(
            EmulatedMessage(
                id=uuid.uuid4().hex,
                to=to,
                sender=sender,
                body=text,
                status="RECEIVED_BY_GATEWAY",
                created_at=time.time(),
                callback_url=self.webhook_url,
                segments=max(1, segments(text).segments),
                fields={"client_message_id": body.get("clientMessageId")},
            )
        )
        return {"apiMessageId": message.id, "accepted": True, "to": to, **_NO_ERROR}

    def _callback(self, m: EmulatedMessage, code: int, status: str, text: str) -> dict[str, Any]:
        m.status = status
        return {
            "integrationName": "smsgate emulator",
            "messageId": m.id,
            "requestId": m.id,
            "clientMessageId": m.fields.get("client_message_id"),
            "to": m.to,
            "from": m.sender,
            "statusCode": code,
            "status": status,
            "statusDescription": text,
            "timestamp": int(time.time() * 1000),
        }

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        gateway = self._callback(message, 3, "DELIVERED_TO_GATEWAY", "Delivered to gateway")
        await self.post(message.callback_url, json=gateway)
        code, status, text = _FINALS.get(outcome, _FINALS["undelivered"])
        await self.post(message.callback_url, json=self._callback(message, code, status, text))

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        words = body.split()
        payload = {
            "integrationId": "emulator",
            "messageId": uuid.uuid4().hex,
            "fromNumber": sender.removeprefix("+"),
            "toNumber": to.removeprefix("+"),
            "text": body,
            "charset": "UTF-8",
            "keyword": words[0].upper() if words else "",
            "timestamp": int(time.time() * 1000),
        }
        if "smsgate_token=" not in url:
            # The portal's inbound URL carries the token the way a user configures it there.
            url = f"{url}{'&' if '?' in url else '?'}smsgate_token={self.webhook_token}"
        return await self.post(url, json=payload)
