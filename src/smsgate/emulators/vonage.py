"""A Vonage SMS API emulator: ``POST /sms/json`` and signed receipts, one per part.

Run it with ``smsgate emulate vonage``. What it speaks:

- ``/sms/json`` as a form POST, a JSON POST or a GET with query parameters, authenticated by
  ``api_key`` + ``api_secret`` (as parameters or as HTTP Basic auth, which the official SDKs
  send) or by a signed request (``api_key``, ``timestamp``, ``sig``);
- the always-200 answer: ``message-count`` and one ``messages[]`` entry per part, values as
  strings, refusals as a non-zero ``status`` with ``error-text`` (4 bad credentials, 2 missing and
  3 invalid parameters, 14 invalid signature, 32 signature and secret together, 9 out of credit
  with ``--option balance=EUR``);
- Twilio's magic numbers as Vonage's statuses: invalid number 6, unreachable 33, region not
  enabled 29 (demo account), opted out 7 (Number Barred), not mobile 6, invalid or foreign
  sender 15, sender queue full 1 (Throttled); an injected 429 is also status 1 (the SMS API has
  no 429) with the ``Retry-After`` header the fault settings ask for;
- receipts to ``callback``, one per part with the part's own ``messageId``, signed with ``sig``
  (``--option signature_method=md5hash|md5|sha1|sha256|sha512``, ``--option signature_secret=S``;
  a random secret is made at start when none is given) and sent as ``--option
  webhook_method=POST`` (form, the default), ``JSON`` or ``GET``;
- inbound messages (``POST /_emulator/inbound``) signed the same way. An inbound STOP (or END,
  QUIT, CANCEL, UNSUBSCRIBE, STOPALL) from a number bars later sends to it from that sender the
  way Vonage does: accepted, then failed receipts with ``err-code`` 9; START or UNSTOP lifts it.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from smsgate.emulators.base import (
    EmulatedMessage,
    Emulator,
    possible_number,
    request_fields,
)
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.vonage import SIGNATURE_METHODS, vonage_signature

PART_PRICE = "0.03330000"
NETWORK = "310090"
WEBHOOK_METHODS = ("POST", "JSON", "GET")

_MAGIC: dict[Outcome, tuple[str, str]] = {
    Outcome.INVALID_TO: ("6", "Invalid Message"),
    Outcome.NOT_MOBILE: ("6", "Invalid Message"),
    Outcome.UNREACHABLE: ("33", "Number De-activated"),
    Outcome.REGION_NOT_ENABLED: ("29", "Non-Whitelisted Destination"),
    Outcome.OPTED_OUT: ("7", "Number Barred"),
    Outcome.INVALID_FROM: ("15", "Illegal Sender Address - rejected"),
    Outcome.FROM_NOT_OWNED: ("15", "Illegal Sender Address - rejected"),
    Outcome.FROM_QUEUE_FULL: ("1", "Throttled"),
}
#: emulator outcome -> (receipt status, err-code)
_RECEIPTS: dict[str, tuple[str, str]] = {
    "delivered": ("delivered", "0"),
    "undelivered": ("failed", "2"),
    "failed": ("rejected", "99"),
    "expired": ("expired", "1"),
    "opted_out": ("failed", "9"),
}


def refusal(code: str, text: str, to: str = "") -> web.Response:
    entry = {"status": code, "error-text": text}
    if to:
        entry["to"] = to
    return web.json_response({"message-count": "1", "messages": [entry]})


class VonageEmulator(Emulator):
    name = "vonage"
    default_credentials = "abcd1234:emulator-api-secret"
    default_sender = "+15005550006"
    outcome_names = tuple(_RECEIPTS)
    stop_words = frozenset({"stop", "stopall", "end", "quit", "cancel", "unsubscribe"})
    start_words = frozenset({"start", "unstop", "yes"})

    def __init__(
        self,
        *,
        signature_secret: str | None = None,
        signature_method: str = "sha256",
        webhook_method: str = "POST",
        balance: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        method = signature_method.lower()
        if method not in SIGNATURE_METHODS:
            raise ValueError(f"signature_method must be one of {', '.join(SIGNATURE_METHODS)}")
        if webhook_method.upper() not in WEBHOOK_METHODS:
            raise ValueError(f"webhook_method must be one of {', '.join(WEBHOOK_METHODS)}")
        self.signature_secret = signature_secret or secrets.token_urlsafe(24)
        self.signature_method = method
        self.webhook_method = webhook_method.upper()
        self.balance = float(balance) if balance is not None and balance != "" else None

    @property
    def api_key(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def api_secret(self) -> str:
        return self.credentials.partition(":")[2]

    def provider_url(self) -> str:
        # base_url stays as typed so it can be read (and replaced) in the printed URL.
        signing = urlencode(
            {"signature_secret": self.signature_secret, "signature_method": self.signature_method},
            quote_via=quote,
        )
        return f"vonage://{self.credentials}@{self.default_sender}?base_url={self.url}&{signing}"

    def describe(self) -> list[str]:
        return [
            *super().describe(),
            f"signed webhooks: {self.signature_method} with secret {self.signature_secret}, "
            f"sent as {self.webhook_method}",
        ]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/json", self.send)
        app.router.add_get("/sms/json", self.send)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            # The SMS API never answers 429: throttling is status 1 inside an HTTP 200.
            return refusal("1", "Throttled")
        return web.json_response(
            {
                "type": "https://developer.vonage.com/api-errors#service-unavailable",
                "title": "Service Unavailable",
                "detail": "The service is temporarily unavailable",
            },
            status=status,
        )

    # -- the API ------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST":
            # A body that is not a JSON object adds nothing: the answer is then "Missing … param".
            body = await request_fields(request) or {}
            params.update({key: str(value) for key, value in body.items()})
        # The real API also takes the key and secret as HTTP Basic auth, as the official SDKs
        # send them; parameters in the request win.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic" and token:
            try:
                key, colon, secret = base64.b64decode(token, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return params  # unreadable: the answer is "Missing api_key param" or bad creds
            if colon:
                params.setdefault("api_key", key)
                params.setdefault("api_secret", secret)
        return params

    def _authenticate(self, params: Mapping[str, str]) -> web.Response | None:
        key_ok = secrets.compare_digest(params.get("api_key", "").encode(), self.api_key.encode())
        if "sig" in params:
            if "api_secret" in params:
                return refusal("32", "Signature And API Secret Disallowed")
            expected = vonage_signature(params, self.signature_secret, self.signature_method)
            fresh = abs(time.time() - float(params.get("timestamp") or 0)) <= 300
            if (
                not key_ok
                or not fresh
                or not secrets.compare_digest(expected.encode(), params["sig"].lower().encode())
            ):
                return refusal("14", "Invalid Signature")
            return None
        secret_ok = secrets.compare_digest(
            params.get("api_secret", "").encode(), self.api_secret.encode()
        )
        if not (key_ok and secret_ok):
            return refusal("4", "Bad Credentials")
        return None

    async def send(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        for name in ("api_key", "from", "to"):
            if not params.get(name):
                return refusal("2", f"Missing {name} param")
        if (denied := self._authenticate(params)) is not None:
            return denied
        to, sender = params["to"].strip(), params["from"].strip()
        kind = params.get("type", "text")
        text = params.get("text", "")
        if kind not in ("text", "unicode", "binary"):
            return refusal("3", "Invalid type param", to)
        if not text:
            return refusal("2", "Missing text param", to)
        if not possible_number(to):
            return refusal("3", "Invalid to address", to)
        if len(text) > 1600:
            return refusal("12", "Message Too Long", to)
        outcome = magic_outcome(to, sender)
        if outcome is not None:
            code, error_text = _MAGIC[outcome]
            return refusal(code, error_text, to)
        from smsgate.encoding import segments

        count = max(1, segments(text).segments)
        cost = count * float(PART_PRICE)
        if self.balance is not None:
            if self.balance < cost:
                return refusal("9", "Partner Quota Exceeded", to)
            self.balance -= cost
        digits = to.lstrip("+")
        part_ids = [str(uuid.uuid4()) for _ in range(count)]
        self.record(
            EmulatedMessage(
                id=part_ids[0],
                to=digits,
                sender=sender,
                body=text,
                status="accepted",
                created_at=time.time(),
                reference=params.get("client-ref") or None,
                callback_url=params.get("callback") or None,
                segments=count,
                fields={
                    **{k: v for k, v in params.items() if k not in ("api_secret", "sig")},
                    "part_ids": part_ids,
                    "barred": self.has_opted_out(digits, sender),
                },
            )
        )
        remaining = "" if self.balance is None else f"{self.balance:.8f}"
        entries = []
        for part_id in part_ids:
            entry = {
                "to": digits,
                "message-id": part_id,
                "status": "0",
                "remaining-balance": remaining or "10.00000000",
                "message-price": PART_PRICE,
                "network": NETWORK,
            }
            if params.get("client-ref"):
                entry["client-ref"] = params["client-ref"]
            entries.append(entry)
        return web.json_response({"message-count": str(count), "messages": entries})

    # -- webhooks -----------------------------------------------------------------------------

    def sign(self, params: dict[str, str], *, timestamp: float | None = None) -> dict[str, str]:
        """``params`` with ``timestamp``, ``nonce`` and ``sig`` added, as Vonage signs webhooks."""
        signed = {k: v for k, v in params.items() if k not in ("sig", "timestamp", "nonce")}
        signed["timestamp"] = str(int(time.time() if timestamp is None else timestamp))
        signed["nonce"] = str(uuid.uuid4())
        signed["sig"] = vonage_signature(signed, self.signature_secret, self.signature_method)
        return signed

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        if message.fields.get("barred"):
            outcome = "opted_out"
        status, code = _RECEIPTS.get(outcome, _RECEIPTS["undelivered"])
        message.status = status
        now = time.gmtime()
        for part_id in message.fields["part_ids"]:
            params = {
                "msisdn": message.to,
                "to": message.sender.lstrip("+"),
                "network-code": NETWORK,
                "messageId": part_id,
                "price": PART_PRICE,
                "status": status,
                "scts": time.strftime("%y%m%d%H%M", now),
                "err-code": code,
                "api-key": self.api_key,
                "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", now),
            }
            if message.reference:
                params["client-ref"] = message.reference
            await self.send_webhook(message.callback_url, params)

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        status = 200
        for params in self.inbound_parts(sender, to, body):
            answer = await self.send_webhook(url, params)
            status = answer if status < 300 else status
        return status

    def inbound_parts(self, sender: str, to: str, body: str) -> list[dict[str, str]]:
        """The inbound webhooks (unsigned) Vonage sends for ``body``: one, or for a text longer
        than one SMS, one per part with ``concat``, ``concat-ref``, ``concat-total`` and
        ``concat-part`` (each part has its own messageId, as on the real API)."""
        ascii_text = body.isascii()
        single, size = (160, 153) if ascii_text else (70, 67)
        chunks = (
            [body]
            if len(body) <= single
            else [body[i : i + size] for i in range(0, len(body), size)]
        )
        common = {
            "msisdn": sender.lstrip("+"),
            "to": to.lstrip("+"),
            "type": "text" if ascii_text else "unicode",
            "keyword": (body.split() or [""])[0].upper(),
            "api-key": self.api_key,
            "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        reference = str(self._rng.randrange(256))
        parts = []
        for number, chunk in enumerate(chunks, 1):
            params = {**common, "messageId": str(uuid.uuid4()), "text": chunk}
            if len(chunks) > 1:
                params.update(
                    {
                        "concat": "true",
                        "concat-ref": reference,
                        "concat-total": str(len(chunks)),
                        "concat-part": str(number),
                    }
                )
            parts.append(params)
        return parts

    async def send_webhook(self, url: str, params: dict[str, str]) -> int:
        """Send one signed webhook the way the dashboard's method setting says."""
        signed = self.sign(params)
        if self.webhook_method == "JSON":
            return await self.post(url, json=signed)
        if self.webhook_method == "POST":
            return await self.post(url, data=signed)
        return await self.get(
            url + ("&" if "?" in url else "?") + urlencode(signed, quote_via=quote)
        )
