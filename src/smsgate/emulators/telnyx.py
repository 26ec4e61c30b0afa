"""A Telnyx Messaging v2 emulator: ``POST /v2/messages``, ``GET /v2/messages/{id}``, webhooks.

Run it with ``smsgate emulate telnyx``. It makes an Ed25519 key pair at start and prints the
public key to configure (``public_key=`` in the telnyx:// URL; ``provider_url()`` includes it);
``--option signing_key=BASE64`` (a 32-byte private seed) keeps the key across restarts.
What it speaks:

- ``Authorization: Bearer KEY`` (401 with code 10009 otherwise), a JSON body with ``from``,
  ``to`` (one +E.164 number), ``text``, ``media_urls``, ``messaging_profile_id``, ``webhook_url``;
  200 ``{"data": {...message record...}}``;
- ``Idempotency-Key``: a key seen before is answered with the first answer and nothing is sent
  again (``duplicates`` stays 0, ``idempotent_replays`` counts them);
- Telnyx's error bodies ``{"errors": [{"code", "title", "detail", "source"}]}``; Twilio's magic
  numbers as Telnyx codes: invalid 10002 (422), unreachable 10001 (422), not mobile 40310 (400),
  region not enabled 10010 (403), opted out 40300 (409), invalid or foreign sender 40305 (400),
  sender queue full 10011 (429); injected 429 and 503 with Telnyx's bodies;
- an inbound STOP (``POST /_emulator/inbound``) blocks later sends to that number from that
  sender with 40300, as Telnyx's opt-out rules do; START or UNSTOP lifts it;
- signed webhooks to ``webhook_url`` (or ``--option webhook_url=``): ``message.sent``, then
  ``message.finalized``; ``message.received`` for inbound messages.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smsgate.emulators.base import EmulatedMessage, Emulator
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.telnyx import SIGNATURE_HEADER, TIMESTAMP_HEADER, telnyx_signed_message

STOP_WORDS = frozenset({"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit"})
START_WORDS = frozenset({"start", "unstop"})
PART_COST = "0.0040"

_MAGIC: dict[Outcome, tuple[int, str, str, str, str]] = {
    # outcome: (HTTP status, code, title, detail, pointer)
    Outcome.INVALID_TO: (
        422,
        "10002",
        "Invalid phone number",
        "The phone number is invalid.",
        "/to",
    ),
    Outcome.UNREACHABLE: (
        422,
        "10001",
        "Inactive phone number",
        "The phone number is inactive.",
        "/to",
    ),
    Outcome.NOT_MOBILE: (
        400,
        "40310",
        "Invalid 'to' address",
        "The 'to' address should be a single valid mobile number.",
        "/to",
    ),
    Outcome.REGION_NOT_ENABLED: (
        403,
        "10010",
        "Authorization failed",
        "The messaging profile may not send to this destination region.",
        "/to",
    ),
    Outcome.OPTED_OUT: (
        409,
        "40300",
        "Blocked due to STOP message",
        "Messages cannot be sent from '{sender}' to '{to}' due to an existing block rule.",
        "/to",
    ),
    Outcome.INVALID_FROM: (
        400,
        "40305",
        "Invalid 'from' address",
        "The 'from' address should be a valid number on your account.",
        "/from",
    ),
    Outcome.FROM_NOT_OWNED: (
        400,
        "40305",
        "Invalid 'from' address",
        "The 'from' address should be a valid number on your account.",
        "/from",
    ),
    Outcome.FROM_QUEUE_FULL: (
        429,
        "10011",
        "Too many requests",
        "You have exceeded the maximum number of allowed requests.",
        "/from",
    ),
}
#: emulator outcome -> (final to[].status, error code, error title)
_FINALS: dict[str, tuple[str, str | None, str | None]] = {
    "delivered": ("delivered", None, None),
    "undelivered": ("delivery_failed", "40008", "Undeliverable"),
    "failed": ("sending_failed", "40004", "Rejected by destination"),
    "expired": ("expired", "40005", "Message expired during transmission"),
}

#: Telnyx sends at most this many parts of one SMS and refuses longer texts (40302)
MAX_PARTS = 10
#: what Telnyx takes as an Idempotency-Key
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_:-]{1,255}")


def telnyx_error(
    status: int, code: str, title: str, detail: str, pointer: str | None = None
) -> web.Response:
    error: dict[str, Any] = {
        "code": code,
        "title": title,
        "detail": detail,
        "meta": {"url": f"https://developers.telnyx.com/api/errors/{code}"},
    }
    if pointer:
        error["source"] = {"pointer": pointer}
    return web.json_response({"errors": [error]}, status=status)


def _now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="milliseconds")


class TelnyxEmulator(Emulator):
    name = "telnyx"
    default_credentials = "KEYEMULATOR0000000000000000000000000_emulatorsecret"
    default_sender = "+15005550006"
    default_profile = "40017c2f-5a3b-4c3e-9a7f-000000000001"
    outcome_names = tuple(_FINALS)

    def __init__(
        self,
        *,
        signing_key: str | None = None,
        profile: str | None = None,
        webhook_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if signing_key:
            seed = base64.b64decode(signing_key.replace(" ", "+"))
            self._private_key = Ed25519PrivateKey.from_private_bytes(seed)
        else:
            self._private_key = Ed25519PrivateKey.generate()
        self.profile = profile or self.default_profile
        self.webhook_url = webhook_url
        #: Idempotency-Key -> the first answer's body
        self._answers: dict[str, dict[str, Any]] = {}
        self.idempotent_replays = 0
        #: (recipient, sender) pairs blocked by an inbound STOP
        self.blocked: set[tuple[str, str]] = set()

    @property
    def public_key(self) -> str:
        raw = self._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def provider_url(self) -> str:
        return (
            f"telnyx://{self.credentials}@{self.default_sender}?base_url={self.url}"
            f"&profile={self.profile}&public_key={quote(self.public_key, safe='')}"
        )

    def describe(self) -> list[str]:
        return [*super().describe(), f"webhook public key (public_key=): {self.public_key}"]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/messages", self.create)
        app.router.add_get("/v2/messages/{id}", self.fetch)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return telnyx_error(
                429,
                "10011",
                "Too many requests",
                "You have exceeded the maximum number of allowed requests.",
            )
        return telnyx_error(status, "10007", "Unexpected error", "An unexpected error occured.")

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "idempotent_replays": self.idempotent_replays}

    def reset(self) -> None:
        super().reset()
        self._answers.clear()
        self.idempotent_replays = 0

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not secrets.compare_digest(header.encode(), f"Bearer {self.credentials}".encode()):
            return telnyx_error(
                401,
                "10009",
                "Authentication failed",
                "The required authentication headers were either invalid or not "
                "included in the request.",
            )
        return None

    def _record(self, m: EmulatedMessage) -> dict[str, Any]:
        errors = m.fields.get("errors", [])
        final = m.status in ("delivered", "delivery_failed", "sending_failed", "expired")
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": m.id,
            "type": "MMS" if m.media else "SMS",
            "messaging_profile_id": m.fields.get("messaging_profile_id") or self.profile,
            "from": {"phone_number": m.sender, "carrier": "Telnyx", "line_type": "Wireless"},
            "to": [
                {
                    "phone_number": m.to,
                    "status": m.status,
                    "carrier": "Emulated Wireless",
                    "line_type": "Wireless",
                }
            ],
            "text": m.body,
            "media": [
                {"url": url, "content_type": None, "sha256": None, "size": None} for url in m.media
            ],
            "webhook_url": m.callback_url,
            "encoding": m.fields.get("encoding", "GSM-7"),
            "parts": m.segments,
            "tags": [],
            "cost": {"amount": f"{m.segments * float(PART_COST):.4f}", "currency": "USD"},
            "received_at": _now_iso(m.created_at),
            "sent_at": _now_iso() if m.status not in ("queued",) else None,
            "completed_at": _now_iso() if final else None,
            "valid_until": _now_iso(m.created_at + 14400),
            "errors": errors,
        }

    # -- the API ------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return telnyx_error(400, "10015", "Bad Request", "The request body is not JSON.")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            return telnyx_error(
                422,
                "10015",
                "Bad Request",
                "The Idempotency-Key header must match ^[A-Za-z0-9_:-]{1,255}$.",
                "/Idempotency-Key",
            )
        if key and key in self._answers:
            self.idempotent_replays += 1
            return web.json_response(self._answers[key])
        to, sender = body.get("to"), str(body.get("from") or "")
        if isinstance(to, list):
            if len(to) != 1:
                return telnyx_error(
                    400,
                    "40310",
                    "Invalid 'to' address",
                    "Multi-destination messages are not currently supported.",
                    "/to",
                )
            to = to[0]
        if not to:
            return telnyx_error(
                422, "10004", "Missing required parameter", "The 'to' parameter is required.", "/to"
            )
        to = str(to)
        if not sender:
            return telnyx_error(
                422,
                "10004",
                "Missing required parameter",
                "The 'from' parameter is required.",
                "/from",
            )
        text = str(body.get("text") or "")
        media = body.get("media_urls") or []
        if not text and not media:
            return telnyx_error(
                422,
                "10004",
                "Missing required parameter",
                "Either 'text' or 'media_urls' is required.",
                "/text",
            )
        if not isinstance(media, list) or len(media) > 10:
            return telnyx_error(
                422,
                "10015",
                "Bad Request",
                "'media_urls' must be a list of at most 10 URLs.",
                "/media_urls",
            )
        if not to.startswith("+") or not _possible(to):
            return telnyx_error(
                422,
                "10016",
                "Phone number must be in +E.164 format",
                "The specified phone number parameter must be in +E.164 format.",
                "/to",
            )
        outcome = magic_outcome(to, sender)
        if outcome is None and (to, sender) in self.blocked:
            outcome = Outcome.OPTED_OUT
        if outcome is not None:
            status, code, title, detail, pointer = _MAGIC[outcome]
            return telnyx_error(status, code, title, detail.format(to=to, sender=sender), pointer)
        from smsgate.encoding import segments

        info = segments(text) if text else None
        if info is not None and not media and info.segments > MAX_PARTS:
            return telnyx_error(
                400,
                "40302",
                "Message too large",
                f"The message is {info.segments} parts; at most {MAX_PARTS} can be sent.",
                "/text",
            )
        callback = body.get("webhook_url") or self.webhook_url
        message = self.record(
            EmulatedMessage(
                id=str(uuid.uuid4()),
                to=to,
                sender=sender,
                body=text,
                media=[str(url) for url in media],
                status="queued",
                created_at=time.time(),
                reference=key,
                callback_url=str(callback) if callback else None,
                segments=max(1, info.segments) if info else 1,
                fields={
                    "messaging_profile_id": body.get("messaging_profile_id") or self.profile,
                    "encoding": info.encoding if info else "GSM-7",
                    "idempotency_key": key,
                },
            )
        )
        answer = {"data": self._record(message)}
        if key:
            self._answers[key] = answer
        return web.json_response(answer)

    async def fetch(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        message = self.by_id.get(request.match_info["id"])
        if message is None:
            return telnyx_error(
                404,
                "10005",
                "Resource not found",
                "The requested resource or URL could not be found.",
            )
        return web.json_response({"data": self._record(message)})

    # -- webhooks -----------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
        """The signature headers Telnyx sends with ``body``."""
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self._private_key.sign(telnyx_signed_message(stamp, body))
        return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}

    async def _event(self, url: str, event_type: str, payload: dict[str, Any]) -> int:
        event = {
            "data": {
                "event_type": event_type,
                "id": str(uuid.uuid4()),
                "occurred_at": _now_iso(),
                "payload": payload,
                "record_type": "event",
            },
            "meta": {"attempt": 1, "delivered_to": url},
        }
        body = json.dumps(event).encode()
        headers = {**self.sign(body), "Content-Type": "application/json"}
        return await self.post(url, data=body, headers=headers)

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        final, code, title = _FINALS.get(outcome, _FINALS["undelivered"])
        if final != "sending_failed":
            message.status = "sent"
            await self._event(message.callback_url, "message.sent", self._record(message))
        message.status = final
        if code:
            message.fields["errors"] = [
                {"code": code, "title": title, "detail": f"{title} (emulated outcome {outcome!r})"}
            ]
        await self._event(message.callback_url, "message.finalized", self._record(message))

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        word = body.strip().lower()
        if word in STOP_WORDS:
            self.blocked.add((sender, to))
        elif word in START_WORDS:
            self.blocked.discard((sender, to))
        payload = {
            "record_type": "message",
            "direction": "inbound",
            "id": str(uuid.uuid4()),
            "type": "MMS" if media else "SMS",
            "messaging_profile_id": self.profile,
            "from": {
                "phone_number": sender,
                "carrier": "Emulated Wireless",
                "line_type": "Wireless",
            },
            "to": [
                {
                    "phone_number": to,
                    "status": "webhook_delivered",
                    "carrier": "Telnyx",
                    "line_type": "Wireless",
                }
            ],
            "text": body,
            "media": [{"url": item, "content_type": "image/jpeg"} for item in media],
            "received_at": _now_iso(),
            "parts": 1,
            "errors": [],
        }
        return await self._event(url, "message.received", payload)


def _possible(number: str) -> bool:
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import normalize

    try:
        normalize(number, strict=False)
    except InvalidRecipient:
        return False
    return True
