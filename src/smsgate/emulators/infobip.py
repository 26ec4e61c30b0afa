"""An Infobip SMS API v3 emulator: ``POST /sms/3/messages``, ``GET /sms/3/logs``, webhooks.

Run it with ``smsgate emulate infobip``. What it speaks:

- ``Authorization: App KEY`` (401 ``{"requestError": {"serviceException": {"messageId":
  "UNAUTHORIZED", "text": "Invalid login details"}}}`` otherwise); a JSON body ``{"messages":
  [{"sender", "destinations": [{"to", "messageId"}], "content": {"text"}, "webhooks":
  {"delivery": {"url"}}}]}``; 200 ``{"bulkId", "messages": [{"messageId", "status",
  "destination", "details": {"messageCount"}}]}``, one entry per destination;
- a destination it will not send to is answered in that 200 with Infobip's ``REJECTED`` group
  statuses, as Infobip does: Twilio's magic numbers as invalid 14 ``REJECTED_DESTINATION``,
  unreachable or region 6 ``REJECTED_NETWORK``, opted out 10 ``REJECTED_DND``, bad sender 13
  ``REJECTED_SENDER``; a sender whose queue is full gets the whole request refused with 429
  ``TOO_MANY_REQUESTS``; injected 429 and 503 carry the same ``requestError`` bodies;
- an inbound STOP (``POST /_emulator/inbound``) puts that number on the sender's do-not-disturb
  list (later sends are ``REJECTED_DND``); START lifts it;
- ``GET /sms/3/logs`` (``messageId``, ``destination``, ``sentSince``, ``sentUntil``, ``limit``
  at most 1,000), newest first;
- delivery reports ``{"results": [...]}`` to each message's ``webhooks.delivery.url`` (or
  ``--option webhook_url=``). Infobip signs none; the URL smsgate gives carries its token.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from smsgate.emulators.base import EmulatedMessage, Emulator, possible_number
from smsgate.emulators.magic import Outcome, magic_outcome

PART_PRICE = 0.0075

PENDING = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 26,
    "name": "PENDING_ACCEPTED",
    "description": "Message sent to next instance",
}
_REJECTED: dict[str, tuple[int, str]] = {
    "REJECTED_NETWORK": (6, "Network is forbidden"),
    "REJECTED_DND": (10, "Destination is on do-not-disturb list"),
    "REJECTED_SENDER": (13, "Sender is rejected"),
    "REJECTED_DESTINATION": (14, "Destination address is rejected"),
}
_MAGIC: dict[Outcome, str] = {
    Outcome.INVALID_TO: "REJECTED_DESTINATION",
    Outcome.NOT_MOBILE: "REJECTED_DESTINATION",
    Outcome.UNREACHABLE: "REJECTED_NETWORK",
    Outcome.REGION_NOT_ENABLED: "REJECTED_NETWORK",
    Outcome.OPTED_OUT: "REJECTED_DND",
    Outcome.INVALID_FROM: "REJECTED_SENDER",
    Outcome.FROM_NOT_OWNED: "REJECTED_SENDER",
}
#: emulator outcome -> (final status, error)
_NO_ERROR = {
    "groupId": 0,
    "groupName": "OK",
    "id": 0,
    "name": "NO_ERROR",
    "description": "No Error",
    "permanent": False,
}
_FINALS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "delivered": (
        {
            "groupId": 3,
            "groupName": "DELIVERED",
            "id": 5,
            "name": "DELIVERED_TO_HANDSET",
            "description": "Message delivered to handset",
        },
        _NO_ERROR,
    ),
    "undelivered": (
        {
            "groupId": 2,
            "groupName": "UNDELIVERABLE",
            "id": 9,
            "name": "UNDELIVERABLE_NOT_DELIVERED",
            "description": "Message sent not delivered",
        },
        {
            "groupId": 1,
            "groupName": "HANDSET_ERRORS",
            "id": 27,
            "name": "EC_ABSENT_SUBSCRIBER",
            "description": "Absent Subscriber",
            "permanent": False,
        },
    ),
    "expired": (
        {
            "groupId": 4,
            "groupName": "EXPIRED",
            "id": 15,
            "name": "EXPIRED_EXPIRED",
            "description": "Message expired",
        },
        _NO_ERROR,
    ),
}


def request_error(status: int, code: str, text: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"requestError": {"serviceException": {"messageId": code, "text": text, **extra}}},
        status=status,
    )


def _stamp(at: float | None = None) -> str:
    """Infobip's time format, ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _parse_stamp(value: str | None) -> float | None:
    """An Infobip time (``2024-05-01T12:00:00.000+0000``) as epoch seconds."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _rejected(name: str) -> dict[str, Any]:
    status_id, description = _REJECTED[name]
    return {
        "groupId": 5,
        "groupName": "REJECTED",
        "id": status_id,
        "name": name,
        "description": description,
    }


class InfobipEmulator(Emulator):
    name = "infobip"
    default_credentials = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-emulator-00000000-0000-0000"
    default_sender = "InfoSMS"
    outcome_names = tuple(_FINALS)
    stop_words = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
    start_words = frozenset({"start", "unstop"})

    def __init__(self, *, webhook_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook_url = webhook_url

    def provider_url(self) -> str:
        return (
            f"infobip://{self.credentials}@{self.default_sender}?base_url={self.url}"
            f"&webhook_token={self.webhook_token}"
        )

    @property
    def webhook_token(self) -> str:
        """The token ``provider_url`` configures (derived from the key, so it differs with it)."""
        import hashlib

        return "tok" + hashlib.sha256(self.credentials.encode()).hexdigest()[:24]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/3/messages", self.create)
        app.router.add_get("/sms/3/logs", self.logs)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return request_error(429, "TOO_MANY_REQUESTS", "Too many requests")
        return request_error(status, "GENERAL_ERROR", "Something went wrong. Please try again.")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        import secrets

        header = request.headers.get("Authorization", "")
        if not secrets.compare_digest(header.encode(), f"App {self.credentials}".encode()):
            return request_error(401, "UNAUTHORIZED", "Invalid login details")
        return None

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return request_error(
                400,
                "BAD_REQUEST",
                "Bad request",
                validationErrors={"messages": ["must not be empty"]},
            )
        bulk_id = str(uuid.uuid4())
        answers: list[dict[str, Any]] = []
        for entry in messages:
            if not isinstance(entry, dict):
                return request_error(400, "BAD_REQUEST", "Bad request")
            sender = str(entry.get("sender") or "")
            text = str((entry.get("content") or {}).get("text") or "")
            destinations = entry.get("destinations")
            if not text or not isinstance(destinations, list) or not destinations:
                field = "content.text" if not text else "destinations"
                return request_error(
                    400,
                    "BAD_REQUEST",
                    "Bad request",
                    validationErrors={f"messages[0].{field}": ["must not be empty"]},
                )
            for destination in destinations:
                to = str((destination or {}).get("to") or "")
                if magic_outcome(to, sender) is Outcome.FROM_QUEUE_FULL:
                    return request_error(429, "TOO_MANY_REQUESTS", "Too many requests")
            callback = ((entry.get("webhooks") or {}).get("delivery") or {}).get("url")
            for destination in destinations:
                answers.append(
                    self._accept(destination, sender, text, callback or self.webhook_url, bulk_id)
                )
        return web.json_response({"bulkId": bulk_id, "messages": answers})

    def _accept(
        self,
        destination: dict[str, Any],
        sender: str,
        text: str,
        callback: str | None,
        bulk_id: str,
    ) -> dict[str, Any]:
        to = str(destination.get("to") or "")
        message_id = str(destination.get("messageId") or uuid.uuid4())
        outcome = magic_outcome(to, sender)
        rejection = _MAGIC.get(outcome) if outcome is not None else None
        if rejection is None and not possible_number(to):
            rejection = "REJECTED_DESTINATION"
        if rejection is None and self.has_opted_out(to, sender):
            rejection = "REJECTED_DND"
        if rejection is not None:
            return {
                "messageId": message_id,
                "status": _rejected(rejection),
                "destination": to,
                "details": {"messageCount": 0},
            }
        from smsgate.encoding import segments

        parts = max(1, segments(text).segments)
        self.record(
            EmulatedMessage(
                id=message_id,
                to=to,
                sender=sender,
                body=text,
                status="PENDING_ACCEPTED",
                created_at=time.time(),
                callback_url=str(callback) if callback else None,
                segments=parts,
                fields={"bulk_id": bulk_id},
            )
        )
        return {
            "messageId": message_id,
            "status": PENDING,
            "destination": to,
            "details": {"messageCount": parts},
        }

    async def logs(self, request: web.Request) -> web.Response:
        """Message logs, newest first: ``messageId`` (repeatable), ``destination``,
        ``sentSince`` and ``sentUntil`` filters and ``limit`` (at most 1,000), Infobip's way of
        paging (by time)."""
        if (denied := self._check_auth(request)) is not None:
            return denied
        if (failed := self.list_request(request)) is not None:
            return failed
        query = request.query
        wanted = query.getall("messageId", [])
        destination = query.get("destination")
        try:
            since = _parse_stamp(query.get("sentSince"))
            until = _parse_stamp(query.get("sentUntil"))
            limit = min(max(int(query.get("limit", "50")), 1), self.max_page_size)
        except ValueError as exc:
            return request_error(400, "BAD_REQUEST", f"Bad request: {exc}")
        found = [
            m
            for m in reversed(self.messages)
            if (not wanted or m.id in wanted)
            and (destination is None or m.to.lstrip("+") == destination.lstrip("+"))
            and (since is None or m.created_at >= since)
            and (until is None or m.created_at < until)
        ]
        return web.json_response({"results": [self._log(m) for m in found[:limit]]})

    def _log(self, m: EmulatedMessage) -> dict[str, Any]:
        status, error = m.fields.get("final", (PENDING, _NO_ERROR))
        return {
            "sender": m.sender,
            "destination": m.to,
            "bulkId": m.fields.get("bulk_id"),
            "messageId": m.id,
            "sentAt": _stamp(m.created_at),
            "doneAt": _stamp(),
            "messageCount": m.segments,
            "price": {"pricePerMessage": PART_PRICE * m.segments, "currency": "EUR"},
            "status": status,
            "error": error,
            "content": {"text": m.body},
        }

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        status, error = _FINALS.get(outcome, _FINALS["undelivered"])
        message.status = str(status["name"])
        message.fields["final"] = (status, error)
        report = {
            "bulkId": message.fields.get("bulk_id"),
            "messageId": message.id,
            "to": message.to,
            "sender": message.sender,
            "sentAt": _stamp(message.created_at),
            "doneAt": _stamp(),
            "messageCount": message.segments,
            "mccMnc": "00101",
            "price": {"pricePerMessage": PART_PRICE * message.segments, "currency": "EUR"},
            "status": status,
            "error": error,
        }
        await self.post(message.callback_url, json={"results": [report]})

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        words = body.split()
        item = {
            "messageId": str(uuid.uuid4()),
            "from": sender.removeprefix("+"),
            "to": to.removeprefix("+"),
            "text": body,
            "cleanText": " ".join(words[1:]),
            "keyword": words[0].upper() if words else "",
            "receivedAt": _stamp(),
            "smsCount": 1,
            "price": {"pricePerMessage": 0, "currency": "EUR"},
        }
        token_url = url
        if "smsgate_token=" not in url:
            joiner = "&" if "?" in url else "?"
            token_url = f"{url}{joiner}smsgate_token={self.webhook_token}"
        # The inbound URL is configured in Infobip's portal; the emulator adds its token the way
        # a user configures it there.
        return await self.post(
            token_url,
            json={"results": [item], "messageCount": 1, "pendingMessageCount": 0},
        )
