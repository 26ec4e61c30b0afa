"""Telnyx Messaging API v2 (SMS and MMS).

``telnyx://API_KEY@+14155550100?profile=MESSAGING_PROFILE_ID&public_key=BASE64``

Options: ``base_url`` (an emulator), ``profile`` (``messaging_profile_id``), ``callback`` (the
``webhook_url``; our id is added as ``smsgate_id``), ``public_key`` (the account's Ed25519 public
key, base64, from Mission Control's "Keys & Credentials"; percent-encode ``+``, ``/`` and ``=``
in the URL), ``timestamp_tolerance`` (seconds, default 300).

The wire contract, and what smsgate makes of it:

- ``POST /v2/messages`` with ``Authorization: Bearer KEY`` and JSON ``from``, ``to``, ``text``,
  ``media_urls``, ``messaging_profile_id``, ``webhook_url``; 200 ``{"data": {"id", "to":
  [{"phone_number", "status"}], "parts", "cost", ...}}``. One recipient per request.
- ``Idempotency-Key`` carries the message's idempotency key, or our message id: Telnyx answers a
  repeated key with the first result instead of sending again, so an ambiguous send may be
  retried with the same key (``dedupes``).
- Refusals are ``{"errors": [{"code", "title", "detail", "source": {"pointer"}}]}``: 10009
  authentication, 10010 authorization, 10002/10001/40310 invalid, inactive or unusable numbers
  (the ``source.pointer`` says whether ``/to`` or ``/from``), 10011 too many requests, 40300
  blocked by the recipient's STOP, 40305 invalid sender.
- Webhooks are JSON ``{"data": {"event_type", "id", "occurred_at", "payload"}}``
  (``message.sent``, ``message.finalized``, ``message.received``), signed with Ed25519:
  ``telnyx-signature-ed25519`` is the base64 signature of ``"{telnyx-timestamp}|{raw body}"``;
  a timestamp further than the tolerance from our clock is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlencode

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    SmsgateError,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import DeliveryEvent, InboundMessage, Message, SendResult, Status
from smsgate.providers.base import (
    Capabilities,
    HttpProvider,
    UrlOption,
    WebhookRequest,
    first,
    parse_iso_time,
    retry_after,
)
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

URL_FORM = "telnyx://KEY@+14155550100?profile=ID&public_key=BASE64"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
OPTED_OUT_CODE = "40300"

STATUSES: dict[str, Status] = {
    "queued": Status.QUEUED,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "delivery_failed": Status.UNDELIVERED,
    "sending_failed": Status.FAILED,
    "expired": Status.EXPIRED,
    # The carrier never confirmed delivery: the message left Telnyx, nothing more is known.
    "delivery_unconfirmed": Status.SENT,
}

_RECIPIENT_CODES = frozenset({"10001", "10002", "10016", "40310", "40001", "40012"})
_SENDER_CODES = frozenset({"40305", "40013"})
_EVENTS = frozenset({"message.sent", "message.finalized", "message.queued", "message.sending"})


#: Telnyx sends at most this many parts of one SMS (longer texts are refused with 40302)
MAX_PARTS = 10
_KEY_OK = re.compile(r"[A-Za-z0-9_:-]{1,255}")
_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_:-]")


def telnyx_idempotency_key(key: str) -> str:
    """``key`` as Telnyx takes it (``^[A-Za-z0-9_:-]{1,255}$``): unchanged when it already
    fits, else its other characters as ``_`` plus a digest of the whole key, so two keys that
    differ only in those characters stay two keys, and the same key always maps the same way."""
    if _KEY_OK.fullmatch(key):
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"{_KEY_BAD_CHARS.sub('_', key)[:200]}:{digest}"


def load_public_key(value: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 (standard or URL-safe; a ``+`` read as space is fixed)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    # A space can only be a '+' that an unencoded URL turned into one, even at either end.
    text = value.replace(" ", "+").strip()
    raw = b""
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            break
    if len(raw) != 32:
        raise ConfigError(
            "telnyx:// option public_key must be the base64 Ed25519 public key (32 bytes) from "
            "Mission Control > Keys & Credentials > Public Key",
            field="public_key",
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def telnyx_signed_message(timestamp: str, body: bytes) -> bytes:
    """What Telnyx signs: ``"{timestamp}|"`` followed by the raw request body."""
    return timestamp.encode() + b"|" + body


class TelnyxProvider(HttpProvider):
    scheme = "telnyx"
    display_name = "Telnyx"
    default_base_url = "https://api.telnyx.com"
    capabilities = Capabilities(
        mms=True,
        status_fetch=True,
        delivery_webhooks=True,
        webhook_verification="Ed25519 (telnyx-signature-ed25519) + timestamp",
        inbound=True,
        idempotency="Idempotency-Key header",
        dedupes=True,
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("profile", "text", "the messaging profile id"),
        UrlOption("messaging_profile_id", "text", "the same as profile"),
        UrlOption("public_key", "text", "the account's Ed25519 public key (base64) for webhooks"),
        UrlOption(
            "timestamp_tolerance", "number", "seconds a webhook's timestamp may be off (300)"
        ),
    )
    secret_username = True
    emulator = "smsgate.emulators.telnyx:TelnyxEmulator"

    def __init__(
        self,
        *,
        api_key: str,
        profile: str | None = None,
        public_key: str | None = None,
        timestamp_tolerance: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._api_key = api_key
        self.profile = profile
        self._public_key = load_public_key(public_key) if public_key else None
        self.timestamp_tolerance = timestamp_tolerance

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        return cls(
            name=name,
            api_key=url.require("username", URL_FORM),
            sender=url.sender(),
            profile=url.first_option("profile", "messaging_profile_id"),
            public_key=url.option("public_key"),
            timestamp_tolerance=url.number("timestamp_tolerance", 300.0),
            **cls.common_options(url),
        )

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def supported_options(self) -> frozenset[str]:
        # As declared for POST /v2/messages in Telnyx's OpenAPI (``tags`` is not).
        return frozenset({"subject", "auto_detect", "use_profile_webhooks", "webhook_failover_url"})

    def check_features(self, message: Message) -> None:
        super().check_features(message)
        if message.body and not message.media:
            from smsgate.encoding import segments

            parts = segments(message.body).segments
            if parts > MAX_PARTS:
                # Refused here so the router can fail over; Telnyx would refuse it with 40302.
                raise UnsupportedFeature(
                    f"Telnyx sends at most {MAX_PARTS} parts and this text is {parts}; shorten "
                    "it or route it to a provider that sends longer texts",
                    provider=self.name,
                    field="body",
                )

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        payload: dict[str, Any] = {"from": self.sender_for(message), "to": message.to}
        if message.body:
            payload["text"] = message.body
        if message.media:
            payload["media_urls"] = list(message.media)
            payload["type"] = "MMS"
        if self.profile:
            payload["messaging_profile_id"] = self.profile
        if self.status_callback:
            joiner = "&" if "?" in self.status_callback else "?"
            payload["webhook_url"] = (
                f"{self.status_callback}{joiner}{urlencode({'smsgate_id': message.id})}"
            )
        payload.update(self.options_for(message))
        key = telnyx_idempotency_key(message.idempotency_key or message.id)
        headers = {**self._headers, "Idempotency-Key": key}
        return HttpRequest("POST", "/v2/messages", json=payload, headers=headers)

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        data = response.json().get("data")
        return self._result_from_record(message, data if isinstance(data, dict) else {})

    def _result_from_record(self, message: Message, data: dict[str, Any]) -> SendResult:
        parts = data.get("parts")
        cost = data.get("cost") or {}
        return self.result(
            message,
            status=_record_status(data, Status.QUEUED),
            provider_message_id=data.get("id"),
            segments=parts if isinstance(parts, int) and parts > 0 else None,
            price=cost.get("amount"),
            price_unit=cost.get("currency"),
            raw=data,
        )

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors or not isinstance(errors[0], dict):
            return self.map_http_status(response)
        error = errors[0]
        code = str(error.get("code") or response.status)
        detail = str(error.get("detail") or error.get("title") or "")
        pointer = str((error.get("source") or {}).get("pointer") or "")
        text = f"{error.get('title') or 'error'}: {detail}" if detail else str(error.get("title"))
        if code == "10009" or response.status == 401:
            return AuthError(f"Telnyx refused the API key in the telnyx:// URL ({text})", code=code)
        if code == "10010" or response.status == 403:
            return UnsupportedFeature(
                f"this Telnyx key or messaging profile may not do this: {text}", code=code
            )
        if code == "10011" or response.status == 429:
            return RateLimited(
                f"Telnyx is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if code == "10036":
            # The same Idempotency-Key is still being processed: that request's outcome is not
            # known yet, and a retry with the key returns it once it is (Telnyx dedupes).
            return AmbiguousSend(
                f"Telnyx is still processing an earlier request with this Idempotency-Key "
                f"({text}); retrying with the same key returns its result",
                code=code,
            )
        if code == "40302":
            return UnsupportedFeature(
                f"Telnyx refused the text as too long ({text}); at most {MAX_PARTS} parts",
                code=code,
                field="body",
            )
        if code == OPTED_OUT_CODE:
            return OptedOut(
                f"recipient {message.to} opted out (replied STOP) of messages from "
                f"{self.sender_for(message)}",
                code=code,
                field="to",
            )
        if code in _SENDER_CODES or pointer == "/from":
            reason = f"Telnyx refused the sender {self.sender_for(message)!r}: {text}"
            if message.sender is not None:
                return InvalidMessage(reason, code=code, field="sender")
            return ProviderUnavailable(
                f"{reason}; fix the sender in the telnyx:// URL", code=code, field="sender"
            )
        if code in _RECIPIENT_CODES or pointer == "/to":
            return InvalidRecipient(
                f"Telnyx refused recipient {message.to}: {text}", code=code, field="to"
            )
        if "balance" in detail.lower() or "funds" in detail.lower():
            return InsufficientFunds(
                f"the Telnyx account has too little balance: {text}", code=code
            )
        if response.status < 500:
            field = pointer.lstrip("/") or None
            return InvalidMessage(f"Telnyx refused the message: {text}", code=code, field=field)
        return self.map_http_status(response, detail=text, code=code)

    # -- status -----------------------------------------------------------------------------

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        response = await self.transport.request(
            HttpRequest("GET", f"/v2/messages/{provider_message_id}", headers=self._headers)
        )
        body = response.json()
        if response.status >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            first_error = errors[0] if errors and isinstance(errors[0], dict) else {}
            detail = str(first_error["detail"]) if first_error.get("detail") else None
            error = self.map_http_status(response, detail=detail, code=str(response.status))
            error.provider, error.raw = self.name, body
            raise error
        data = self.read_lookup(response).get("data") or {}
        recipient = (data.get("to") or [{}])[0]
        cost = data.get("cost") or {}
        parts = data.get("parts")
        return SendResult(
            id=provider_message_id,
            to=str(recipient.get("phone_number") or ""),
            status=_record_status(data, Status.UNKNOWN),
            provider=self.name,
            provider_message_id=data.get("id") or provider_message_id,
            segments=parts if isinstance(parts, int) else None,
            price=cost.get("amount"),
            price_unit=cost.get("currency"),
            raw=data,
        )

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        from cryptography.exceptions import InvalidSignature

        if self._public_key is None:
            raise WebhookVerificationError(
                "no public_key is configured, so this Telnyx webhook cannot be checked; set "
                "public_key= in the telnyx:// URL (Mission Control > Keys & Credentials)",
                provider=self.name,
                field="public_key",
            )
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookVerificationError(
                f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header", provider=self.name
            )
        try:
            sent = float(timestamp)
            raw_signature = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            raise WebhookVerificationError(
                "Telnyx signature or timestamp is malformed", provider=self.name
            ) from None
        skew = abs(self.clock.time() - sent)
        if skew > self.timestamp_tolerance:
            raise WebhookVerificationError(
                f"Telnyx webhook timestamp is {skew:.0f} s away from our clock (tolerance "
                f"{self.timestamp_tolerance:g} s): a replay, or a server clock that is off",
                provider=self.name,
            )
        try:
            self._public_key.verify(raw_signature, telnyx_signed_message(timestamp, request.body))
        except InvalidSignature:
            raise WebhookVerificationError(
                "Telnyx Ed25519 signature does not match; check public_key in the telnyx:// URL",
                provider=self.name,
            ) from None

    def _event(self, request: WebhookRequest) -> tuple[str, dict[str, Any], dict[str, Any]]:
        body = request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            raise WebhookVerificationError(
                "not a Telnyx webhook (no data.payload)", provider=self.name
            )
        return str(data.get("event_type") or ""), data, data["payload"]

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        event_type, data, payload = self._event(request)
        if event_type not in _EVENTS:
            # Telnyx adds event types; anything that is not a delivery status is not ours.
            return []
        recipient = (payload.get("to") or [{}])[0]
        status_text = str(recipient.get("status") or "")
        errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
        code = str(errors[0].get("code")) if errors and errors[0].get("code") else None
        reason = (
            str(errors[0].get("title") or errors[0].get("detail") or f"error {code}")
            if errors
            else status_text
        )
        parts = payload.get("parts")
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=str(payload.get("id") or ""),
                status=STATUSES.get(status_text, Status.UNKNOWN),
                event_id=str(data.get("id") or request.event_digest()),
                occurred_at=parse_iso_time(data.get("occurred_at")),
                message_id=first(request.query, "smsgate_id"),
                to=str(recipient.get("phone_number") or "") or None,
                error_code=code,
                reason=reason,
                opted_out=code == OPTED_OUT_CODE,
                parts=parts if isinstance(parts, int) else None,
                raw=data,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        event_type, data, payload = self._event(request)
        if event_type != "message.received":
            return []
        sender = (payload.get("from") or {}).get("phone_number")
        if not sender or not payload.get("id"):
            raise WebhookVerificationError(
                "Telnyx message.received without id or from", provider=self.name
            )
        recipient = (payload.get("to") or [{}])[0]
        media = tuple(
            str(m["url"])
            for m in payload.get("media") or []
            if isinstance(m, dict) and m.get("url")
        )
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=str(payload["id"]),
                sender=str(sender),
                to=str(recipient.get("phone_number") or ""),
                body=str(payload.get("text") or ""),
                media=media,
                received_at=parse_iso_time(payload.get("received_at") or data.get("occurred_at")),
                raw=data,
            )
        ]


def _record_status(data: dict[str, Any], default: Status) -> Status:
    recipients = data.get("to")
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict):
        return STATUSES.get(str(recipients[0].get("status")), default)
    return default
