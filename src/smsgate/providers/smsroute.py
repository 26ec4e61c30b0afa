"""smsroute (api.smsroute.cc): Bearer-key JSON API with bulk sends, HLR lookups and signed webhooks.

``smsroute://KEY@MyApp?webhook_secret=S``. Options: ``base_url`` (an emulator), ``callback`` (the
delivery-receipt URL, sent per message as ``callback_url``), ``webhook_secret`` (verifies
webhooks), ``webhook_tolerance`` (seconds, default 300), ``timeout``, ``connect_timeout``,
``max_connections``.

The wire contract, with seed 003 canonical where the vendor's documents disagree:

- ``POST /v1/send`` with ``Authorization: Bearer KEY`` and JSON ``{to, from, message}`` →
  ``{message_id, status, …}``. smsgate adds ``reference`` (our message id, echoed in receipts so a
  receipt maps back even when the send's answer was lost), ``callback_url`` and ``validity``
  (seconds) when set, and always an ``Idempotency-Key`` header: the message's idempotency key,
  else our message id. smsroute answers a repeated key with the first message (header
  ``Idempotent-Replayed: true``), so an ambiguous send is safe to resend with the same key.
- ``POST /v1/send/bulk`` with ``{from, message, recipients: [...]}``. The seed sends recipients as
  plain numbers; smsgate sends objects ``{to, reference, idempotency_key}`` so each recipient
  dedupes on its own. The answer has one result per recipient in input order:
  ``{"results": [{"to", "message_id", "status"} | {"to", "error": {"code", "message"}}]}``.
- ``GET /v1/hlr/{+E164}`` → ``{number, status: live|absent|dead, reachable, ported, network:
  {name, mcc, mnc}, country, type}``, normalized by :meth:`SmsrouteProvider.alookup_hlr`.
- Errors: ``{"error": {"code": "invalid_number", "message": "…", "field": "to"}}`` with 400 (bad
  request), 401 (key), 402 (credit), 403 (opted out, region, sender), 409 (key reused for another
  message), 422 (unreachable or not mobile), 429 (with ``Retry-After`` seconds) or 5xx.
- Webhooks are JSON POSTs signed ``X-SmsRoute-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
  "<t>." + raw body)>``; older than ``webhook_tolerance`` seconds (or as far in the future) is
  refused. Several ``v1=`` values may be present while a secret rotates; any one may match.
  Delivery receipts: ``{message_id, status: delivered|failed|undelivered, delivered_at,
  error_code, to, reference}``, ``error_code`` a GSM MAP cause (27 absent subscriber, …).
  Inbound messages: ``{event: "message.received", message_id, from, to, message, received_at}``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Self

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
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
    parse_iso_time,
    retry_after,
)
from smsgate.providers.signing import constant_time_equal
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "smsroute://KEY@MyApp?webhook_secret=SECRET"
SIGNATURE_HEADER = "X-SmsRoute-Signature"
DEFAULT_TOLERANCE = 300.0

STATUSES: dict[str, Status] = {
    "queued": Status.QUEUED,
    "accepted": Status.QUEUED,
    "scheduled": Status.SCHEDULED,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "expired": Status.EXPIRED,
    "rejected": Status.REJECTED,
}

#: ``error_code`` in delivery receipts: GSM MAP causes as the carrier reported them.
DELIVERY_ERRORS: dict[str, str] = {
    "1": "unknown subscriber (the number is not in service)",
    "5": "unidentified subscriber",
    "6": "absent subscriber (handset did not answer the page)",
    "9": "illegal subscriber",
    "11": "teleservice not provisioned (the line cannot receive SMS)",
    "13": "call barred by the operator",
    "27": "absent subscriber (handset off or out of coverage)",
    "31": "subscriber busy for MT SMS",
    "32": "SM delivery failure (memory full or handset error)",
    "34": "system failure in the destination network",
    "36": "unexpected data value",
}

_RECIPIENT_CODES: dict[str, str] = {
    "invalid_number": "is not a valid E.164 number",
    "unreachable_number": "is not reachable",
    "not_mobile": "is not a mobile number",
    "unknown_subscriber": "is not in service",
}
_SENDER_CODES = frozenset({"invalid_sender", "sender_not_allowed"})
_MESSAGE_CODES = frozenset(
    {"invalid_request", "missing_field", "message_too_long", "empty_message", "too_many_recipients"}
)


def smsroute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` under the webhook secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def smsroute_signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-SmsRoute-Signature`` value smsroute sends with a webhook."""
    return f"t={timestamp},v1={smsroute_signature(secret, timestamp, body)}"


class SmsrouteProvider(HttpProvider):
    scheme = "smsroute"
    display_name = "smsroute"
    default_base_url = "https://api.smsroute.cc"
    bulk_batch_size = 1000
    capabilities = Capabilities(
        bulk=True,
        delivery_webhooks=True,
        webhook_verification="HMAC-SHA256 t=,v1= (X-SmsRoute-Signature), 300 s tolerance",
        inbound=True,
        idempotency="Idempotency-Key header (idempotency key, else our message id)",
        dedupes=True,
        hlr=True,
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("webhook_secret", "secret", "the secret that verifies smsroute's webhooks"),
        UrlOption("webhook_tolerance", "number", "seconds a webhook's timestamp may be off (300)"),
    )
    secret_username = True
    emulator = "smsgate.emulators.smsroute:SmsrouteEmulator"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str | None = None,
        webhook_tolerance: float = DEFAULT_TOLERANCE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        return cls(
            name=name,
            api_key=url.require("username", URL_FORM),
            sender=url.sender(),
            webhook_secret=url.option("webhook_secret") or None,
            webhook_tolerance=url.number("webhook_tolerance", DEFAULT_TOLERANCE),
            **cls.common_options(url),
        )

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        body: dict[str, Any] = {
            "to": message.to,
            "from": self.sender_for(message),
            "message": message.body,
            "reference": message.id,
        }
        self._add_options(body, message)
        return HttpRequest("POST", "/v1/send", json=body, headers=self._headers(_key(message)))

    def _add_options(self, body: dict[str, Any], message: Message) -> None:
        if self.status_callback:
            body["callback_url"] = self.status_callback
        if message.validity:
            body["validity"] = message.validity

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        return self._accepted(message, response.json() or {})

    def _accepted(self, message: Message, data: dict[str, Any]) -> SendResult:
        segments = data.get("segments")
        price = data.get("price")
        return self.result(
            message,
            status=STATUSES.get(str(data.get("status", "queued")), Status.QUEUED),
            provider_message_id=str(data["message_id"]) if data.get("message_id") else None,
            segments=_int_or_none(segments),
            price=None if price is None else str(price),
            price_unit=data.get("currency"),
            raw=data,
        )

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        first = messages[0]
        body: dict[str, Any] = {
            "from": self.sender_for(first),
            "message": first.body,
            "recipients": [
                {"to": m.to, "reference": m.id, "idempotency_key": _key(m)} for m in messages
            ],
        }
        self._add_options(body, first)
        return HttpRequest("POST", "/v1/send/bulk", json=body, headers=self._headers())

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        data = response.json() or {}
        entries = data.get("results") if isinstance(data, dict) else None
        if not isinstance(entries, list) or len(entries) != len(messages):
            raise self._shape_error("bulk answer does not have one result per recipient", data)
        results: list[SendResult] = []
        for message, entry in zip(messages, entries, strict=True):
            if not isinstance(entry, dict) or str(entry.get("to", "")) != message.to:
                raise self._shape_error("bulk results are not in recipient order", data)
            error = entry.get("error")
            if error:
                code, text, field = _error_parts({"error": error})
                mapped = self._map_code(code, text, field, status=0, message=message, response=None)
                mapped.provider, mapped.raw = self.name, entry
                results.append(self.failed_result(message, mapped))
            else:
                results.append(self._accepted(message, entry))
        return results

    def _shape_error(self, what: str, raw: Any) -> SmsgateError:
        # The batch reached smsroute and may have been sent: say so rather than guess.
        return AmbiguousSend(f"smsroute {what}", provider=self.name, raw=raw)

    # -- errors -----------------------------------------------------------------------------

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        code, text, field = _error_parts(response.json())
        return self._map_code(
            code, text, field, status=response.status, message=message, response=response
        )

    def _map_code(
        self,
        code: str | None,
        text: str,
        field: str | None,
        *,
        status: int,
        message: Message | None,
        response: HttpResponse | None,
        to: str | None = None,
    ) -> SmsgateError:
        to = to or (message.to if message else "?")
        detail = f"{text} (smsroute {code})" if code and text else text or code or ""
        if status == 429 or code == "rate_limited":
            after = retry_after(response, 1.0) if response is not None else 1.0
            return RateLimited(f"smsroute is throttling: {detail}", code=code, retry_after=after)
        if status == 401 or code in ("unauthorized", "invalid_api_key"):
            return AuthError(
                "smsroute refused the API key; check KEY in smsroute://KEY@SENDER", code=code
            )
        if status == 402 or code == "insufficient_funds":
            return InsufficientFunds("the smsroute account is out of credit", code=code)
        if code == "recipient_opted_out":
            return OptedOut(f"recipient {to} opted out (replied STOP)", code=code, field="to")
        if code in _RECIPIENT_CODES:
            reason = _RECIPIENT_CODES[code]
            return InvalidRecipient(f"recipient {to} {reason}", code=code, field="to")
        if code == "region_not_enabled":
            return UnsupportedFeature(
                f"this smsroute account cannot send to {to}'s country", code=code
            )
        if code in _SENDER_CODES:
            sender = self.sender_for(message) if message else ""
            if message is not None and message.sender is not None:
                return InvalidMessage(
                    f"sender {sender!r} refused: {text}", code=code, field="sender"
                )
            return ProviderUnavailable(
                f"sender {sender!r} refused: {text}; fix the sender in the smsroute:// URL",
                code=code,
                field="sender",
            )
        if code == "idempotency_key_reused":
            return InvalidMessage(
                "this Idempotency-Key was already used for a different message; "
                "give each message its own idempotency_key",
                code=code,
                field="idempotency_key",
            )
        if code == "account_suspended":
            return ProviderUnavailable("the smsroute account is suspended", code=code)
        if code in _MESSAGE_CODES:
            return InvalidMessage(f"smsroute refused the message: {detail}", code=code, field=field)
        if response is not None:
            return self.map_http_status(response, detail=detail or None, code=code)
        return InvalidMessage(f"smsroute refused this recipient: {detail}", code=code, field=field)

    # -- HLR --------------------------------------------------------------------------------

    async def alookup_hlr(self, number: str) -> dict[str, Any]:
        """Ask the home network whether ``number`` is live, reachable and where it is ported.

        Returns ``number`` (E.164), ``live`` (the subscriber exists), ``reachable`` (the handset
        is attached now), ``ported``, ``network`` and ``original_network`` (operator names),
        ``mcc``/``mnc``, ``country``, ``type``, ``status`` (smsroute's word) and ``raw``.
        """
        from smsgate.phone import normalize

        e164 = normalize(number, strict=False)
        response = await self.transport.request(
            HttpRequest("GET", f"/v1/hlr/{e164}", headers=self._headers())
        )
        if response.status >= 400:
            code, text, field = _error_parts(response.json())
            error = self._map_code(
                code, text, field, status=response.status, message=None, response=response, to=e164
            )
            error.provider = self.name
            error.raw = response.json() if response.json() is not None else response.text
            raise error
        data = response.json()
        if not isinstance(data, dict):
            raise ProviderUnavailable("smsroute's HLR answer is not JSON", provider=self.name)
        status = str(data.get("status", "")).lower()
        given = data.get("network")
        network: dict[str, Any] = given if isinstance(given, dict) else {}
        original = data.get("original_network")
        return {
            "number": str(data.get("number") or e164),
            "live": bool(data.get("live", status in ("live", "absent"))),
            "reachable": bool(data.get("reachable", status == "live")),
            "ported": bool(data.get("ported", False)),
            "network": network.get("name"),
            "original_network": original.get("name") if isinstance(original, dict) else None,
            "mcc": network.get("mcc"),
            "mnc": network.get("mnc"),
            "country": data.get("country"),
            "type": data.get("type"),
            "status": status or None,
            "provider": self.name,
            "raw": data,
        }

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        if not self._webhook_secret:
            raise WebhookVerificationError(
                "no webhook secret configured: add ?webhook_secret=... to the smsroute:// URL",
                provider=self.name,
            )
        header = request.header(SIGNATURE_HEADER)
        if not header:
            raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header", provider=self.name)
        timestamp, candidates = _parse_signature_header(header)
        if timestamp is None or not candidates:
            raise WebhookVerificationError(
                f"{SIGNATURE_HEADER} is not of the form t=<unix>,v1=<hex>", provider=self.name
            )
        expected = smsroute_signature(self._webhook_secret, timestamp, request.body)
        # Compare against every candidate so the time taken does not depend on which matched.
        matched = [constant_time_equal(expected, given) for given in candidates]
        if not any(matched):
            raise WebhookVerificationError(f"{SIGNATURE_HEADER} does not match", provider=self.name)
        age = self.clock.time() - timestamp
        if abs(age) > self.webhook_tolerance:
            when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
            raise WebhookVerificationError(
                f"webhook timestamp is {when}; the tolerance is {self.webhook_tolerance:g} s "
                "(a replay, or this server's clock is wrong)",
                provider=self.name,
            )

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        data = request.json()
        if not isinstance(data, dict) or not data.get("message_id") or not data.get("status"):
            raise WebhookVerificationError(
                "not an smsroute delivery receipt (no message_id/status)", provider=self.name
            )
        message_id, status_text = str(data["message_id"]), str(data["status"]).lower()
        raw_code = data.get("error_code")
        code = None if raw_code in (None, "", 0, "0") else str(raw_code)
        if code is not None:
            reason = DELIVERY_ERRORS.get(code, f"{status_text}, carrier error {code}")
        else:
            reason = status_text
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=message_id,
                status=STATUSES.get(status_text, Status.UNKNOWN),
                # A message reaches each status once; smsroute re-signs a retried receipt with a
                # new t, so t stays out of the id and retries de-duplicate.
                event_id=f"{message_id}:{status_text}",
                occurred_at=parse_iso_time(data.get("delivered_at")),
                message_id=str(data["reference"]) if data.get("reference") else None,
                to=str(data["to"]) if data.get("to") else None,
                error_code=code,
                reason=reason,
                raw=data,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        data = request.json()
        if not isinstance(data, dict) or not data.get("from") or not data.get("message_id"):
            raise WebhookVerificationError(
                "not an smsroute inbound message (no message_id/from)", provider=self.name
            )
        body = data.get("message", data.get("text", data.get("body", "")))
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=str(data["message_id"]),
                sender=str(data["from"]),
                to=str(data.get("to") or ""),
                body=str(body or ""),
                received_at=parse_iso_time(data.get("received_at")),
                raw=data,
            )
        ]


def _key(message: Message) -> str:
    """The Idempotency-Key for a message: its idempotency key, else our message id.

    A key with characters outside ASCII cannot travel in an HTTP header; its SHA-256 does, and
    is just as stable, so retries still dedupe.
    """
    key = message.idempotency_key or message.id
    if key.isascii():
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _error_parts(body: Any) -> tuple[str | None, str, str | None]:
    """(code, message, field) from ``{"error": {...}}``, ``{"error": "..."}`` or a flat body."""
    if not isinstance(body, dict):
        return None, "", None
    error = body.get("error", body)
    if isinstance(error, str):
        return None, error, None
    if not isinstance(error, dict):
        return None, "", None
    code = error.get("code")
    field = error.get("field")
    return (
        None if code is None else str(code),
        str(error.get("message") or ""),
        None if field is None else str(field),
    )


def _parse_signature_header(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None
