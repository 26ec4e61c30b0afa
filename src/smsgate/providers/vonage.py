"""Vonage SMS API (``POST /sms/json``, the former Nexmo SMS API).

``vonage://API_KEY:API_SECRET@SENDER?signature_secret=S&signature_method=sha256``

The sender is a number (``+`` is dropped on the wire) or an alphanumeric id such as ``MyApp``.
Options: ``base_url`` (an emulator), ``callback`` (the delivery-receipt URL), ``signature_secret``
and ``signature_method`` (``md5hash``, ``md5``, ``sha1``, ``sha256`` or ``sha512``: the dashboard's
"signed webhooks" setting), ``allow_unsigned=true`` (accept webhooks without a ``sig``; refused by
default), ``timestamp_tolerance`` (seconds, default 300).

The wire contract, and what smsgate makes of it:

- A form POST with ``api_key``, ``api_secret``, ``from``, ``to`` (digits, no ``+``), ``text``,
  ``type`` (``unicode`` when our encoder needs UCS-2, else ``text``), ``client-ref`` (our message
  id, echoed in receipts), ``callback`` with ``status-report-req=1``, and ``ttl`` (validity in ms).
- Vonage answers HTTP 200 even for refusals: one ``messages[]`` entry per part, values as strings,
  a non-zero ``status`` with ``error-text`` is an error. Status 7 ("Number Barred": the number is
  blacklisted and may not receive messages) becomes :class:`~smsgate.errors.OptedOut`; Vonage
  reports an opt-out by STOP later, as a receipt with ``err-code`` 9 (an ``opted_out`` event).
- When some parts were accepted and the rest refused, a retryable refusal becomes
  :class:`~smsgate.errors.AmbiguousSend`: sending again would repeat the accepted parts.
- Receipts come one per part (GET, form POST or JSON POST, as configured in the dashboard), each
  with its own ``messageId`` and no part number; :func:`fold_part_events` turns the part events of
  one message into the message's status.
- Signed webhooks: drop ``sig``, sort the parameters by name, replace ``&`` and ``=`` in values
  with ``_``, join as ``&k1=v1&k2=v2``; ``md5hash`` is hex MD5(string + secret), the others hex
  HMAC(secret, string). The ``timestamp`` parameter must be within the tolerance of our clock.

Not supported: MMS (the SMS API sends text only; refused before any request), status lookups and
bulk (the SMS API has neither: one recipient per request), signing our *requests* with the
signature secret (we send ``api_secret``; Vonage refuses both together with status 32).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Self

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
    TransientError,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import (
    DeliveryEvent,
    InboundMessage,
    InboundPart,
    Message,
    SendResult,
    Status,
)
from smsgate.providers.base import (
    Capabilities,
    HttpProvider,
    UrlOption,
    WebhookRequest,
    retry_after,
)
from smsgate.providers.signing import constant_time_equal
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

logger = logging.getLogger("smsgate.providers.vonage")

URL_FORM = "vonage://KEY:SECRET@MyApp?signature_secret=S&signature_method=sha256"
SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
#: Vonage's default throughput is 30 requests/s per key; a throttled send waits one window.
THROTTLE_RETRY_AFTER = 1.0
MAX_CLIENT_REF = 40
#: ``ttl`` bounds in milliseconds (Vonage accepts 20 s to 7 days)
TTL_MS = (20_000, 604_800_000)

#: Receipt statuses. "accepted" and "buffered" mean a downstream network holds the part.
STATUSES: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "accepted": Status.SENT,
    "buffered": Status.SENT,
    "failed": Status.UNDELIVERED,
    "rejected": Status.REJECTED,
    "expired": Status.EXPIRED,
    "unknown": Status.UNKNOWN,
}

#: Receipt ``err-code`` values with a readable reason.
DELIVERY_ERRORS: dict[str, str] = {
    "1": "unknown error",
    "2": "absent subscriber (temporary)",
    "3": "absent subscriber (permanent)",
    "4": "call barred by user",
    "5": "portability error",
    "6": "anti-spam rejection",
    "7": "handset busy",
    "8": "network error",
    "9": "illegal number: the recipient opted out",
    "10": "invalid message",
    "11": "unroutable",
    "12": "destination unreachable",
    "13": "subscriber age restriction",
    "14": "number blocked by carrier",
    "15": "pre-paid: insufficient funds",
    "99": "general error",
}
OPTED_OUT_CODE = "9"

_OPTIONS = frozenset({"account-ref", "message-class", "protocol-id", "entity-id", "content-id"})
_FAILURES = (Status.REJECTED, Status.FAILED, Status.UNDELIVERED, Status.EXPIRED, Status.CANCELED)


def vonage_signature(
    params: Mapping[str, str] | Iterable[tuple[str, str]], secret: str, method: str
) -> str:
    """Vonage's ``sig`` over webhook (or request) parameters, as lowercase hex."""
    items = params.items() if isinstance(params, Mapping) else params
    data = "".join(
        f"&{key}={value.replace('&', '_').replace('=', '_')}"
        for key, value in sorted(items)
        if key != "sig"
    )
    if method == "md5hash":
        # MD5 is what Vonage's "MD5 hash" signing mode is defined as; HMAC modes are stronger.
        return hashlib.md5((data + secret).encode()).hexdigest()  # noqa: S324
    if method not in SIGNATURE_METHODS:
        raise ConfigError(
            f"signature_method {method!r} is not one of {', '.join(SIGNATURE_METHODS)}",
            field="signature_method",
        )
    return hmac.new(secret.encode(), data.encode(), method).hexdigest()


def fold_part_events(events: Sequence[DeliveryEvent], parts: int | None = None) -> Status:
    """The status of one multi-part message from the receipts of its parts.

    Vonage sends one receipt per part, each with the part's own ``messageId`` and nothing that
    says which part it is. The rule:

    1. Each part (keyed by ``provider_message_id``) takes its most advanced status; of two
       receipts of equal rank, the later one in ``events`` wins.
    2. If any part ended in a failure (rejected, failed, undelivered, expired), the message has
       that failure: the recipient holds an incomplete text. Rejected beats failed beats
       undelivered beats expired.
    3. Otherwise the message is delivered only when every part is: ``parts`` parts when given
       (pass the ``segments`` of the send result), else every part seen.
    4. Otherwise the message is as far as its slowest part; a part with no receipt yet counts as
       sent (Vonage accepted it).
    """
    by_part: dict[str, Status] = {}
    for event in events:
        current = by_part.get(event.provider_message_id)
        if current is None or event.status.rank >= current.rank:
            by_part[event.provider_message_id] = event.status
    if not by_part:
        return Status.SENT
    for failure in _FAILURES:
        if failure in by_part.values():
            return failure
    expected = max(parts or 0, len(by_part))
    statuses = list(by_part.values()) + [Status.SENT] * (expected - len(by_part))
    if all(status is Status.DELIVERED for status in statuses):
        return Status.DELIVERED
    return min(statuses, key=lambda status: status.rank)


class VonageProvider(HttpProvider):
    scheme = "vonage"
    display_name = "Vonage"
    default_base_url = "https://rest.nexmo.com"
    capabilities = Capabilities(
        delivery_webhooks=True,
        webhook_verification="signed `sig` (MD5 hash or HMAC-MD5/SHA1/SHA256/SHA512) + timestamp",
        inbound=True,
        idempotency="client-ref (echoed in receipts)",
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("signature_secret", "secret", "the dashboard's signing secret for webhooks"),
        UrlOption("signature_method", "text", "md5hash (default), md5, sha1, sha256 or sha512"),
        UrlOption("allow_unsigned", "flag", "accept webhooks without a signature (false)"),
        UrlOption(
            "timestamp_tolerance", "number", "seconds a webhook's timestamp may be off (300)"
        ),
    )
    emulator = "smsgate.emulators.vonage:VonageEmulator"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        signature_secret: str | None = None,
        signature_method: str = "md5hash",
        allow_unsigned: bool = False,
        timestamp_tolerance: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if signature_method not in SIGNATURE_METHODS:
            raise ConfigError(
                f"vonage:// option signature_method={signature_method!r} must be one of "
                f"{', '.join(SIGNATURE_METHODS)} (as set under the dashboard's signed webhooks)",
                field="signature_method",
            )
        self.api_key = api_key
        self._api_secret = api_secret
        self._signature_secret = signature_secret
        self.signature_method = signature_method
        self.allow_unsigned = allow_unsigned
        self.timestamp_tolerance = timestamp_tolerance
        self._warned_unsigned = False

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        return cls(
            name=name,
            api_key=url.require("username", URL_FORM),
            api_secret=url.require("password", URL_FORM),
            sender=url.sender(),
            signature_secret=url.option("signature_secret") or None,
            signature_method=(url.option("signature_method") or "md5hash").lower(),
            allow_unsigned=url.flag("allow_unsigned"),
            timestamp_tolerance=url.number("timestamp_tolerance", 300.0),
            **cls.common_options(url),
        )

    def supported_options(self) -> frozenset[str]:
        return _OPTIONS

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        from smsgate.encoding import UCS2, segments

        fields = {
            "api_key": self.api_key,
            "api_secret": self._api_secret,
            "from": _wire_sender(self.sender_for(message)),
            "to": message.to.lstrip("+"),
            "text": message.body,
            "type": "unicode" if segments(message.body).encoding == UCS2 else "text",
        }
        # Longer (user-chosen) ids are left out rather than cut: a cut id would match nothing.
        if len(message.id) <= MAX_CLIENT_REF:
            fields["client-ref"] = message.id
        if self.status_callback:
            fields["callback"] = self.status_callback
            fields["status-report-req"] = "1"
        if message.validity:
            fields["ttl"] = str(min(max(message.validity * 1000, TTL_MS[0]), TTL_MS[1]))
        fields.update((key, str(value)) for key, value in self.options_for(message).items())
        return HttpRequest("POST", "/sms/json", data=fields)

    def is_error_response(self, response: HttpResponse) -> bool:
        # Only a messages list that refuses a part says "error"; no list at all is no proof either
        # way, which the base reports as ambiguous.
        parts = _parts(response.json())
        return parts is not None and any(str(part.get("status")) != "0" for part in parts)

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        body = response.json()
        parts = _parts(body) or []
        count = str(body.get("message-count") or len(parts))
        first_id = parts[0].get("message-id") if parts else None
        return self.result(
            message,
            status=Status.QUEUED,
            provider_message_id=str(first_id) if first_id else None,
            segments=int(count) if count.isdigit() else len(parts),
            price=_total_price(parts),
            raw=body,
        )

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        parts = _parts(body)
        if response.status >= 400 or parts is None:
            return self.map_http_status(response)
        failed = [part for part in parts if str(part.get("status")) != "0"]
        code = str(failed[0].get("status"))
        error = self._map_status(code, str(failed[0].get("error-text") or ""), message, response)
        accepted = len(parts) - len(failed)
        if accepted and (error.retryable or error.failover):
            return AmbiguousSend(
                f"Vonage accepted {accepted} of {len(parts)} parts and refused the rest "
                f"({error.message}); sending again would repeat the accepted parts",
                code=code,
            )
        return error

    def _map_status(
        self, code: str, text: str, message: Message, response: HttpResponse
    ) -> SmsgateError:
        detail = f"{text} (status {code})" if text else f"status {code}"
        if code in ("1", "10"):
            return RateLimited(
                f"Vonage is throttling this API key: {detail}; slow down to the account's "
                "throughput (30 requests/s by default)",
                code=code,
                retry_after=retry_after(response, THROTTLE_RETRY_AFTER),
            )
        if code in ("4", "14", "32"):
            return AuthError(
                f"Vonage refused the credentials: {detail}; check the API key and secret "
                "in the vonage:// URL",
                code=code,
            )
        if code == "5":
            return TransientError(
                f"Vonage had an internal error and did not accept the message: {detail}", code=code
            )
        if code in ("6", "33"):
            reason = "has an unrecognized prefix" if code == "6" else "is de-activated"
            return InvalidRecipient(
                f"recipient {message.to} {reason}: {detail}", code=code, field="to"
            )
        if code == "7":
            return OptedOut(
                f"recipient {message.to} is barred (blacklisted, e.g. after replying STOP) and "
                f"may not receive messages: {detail}",
                code=code,
                field="to",
            )
        if code == "9":
            return InsufficientFunds(
                f"the Vonage account has too little credit: {detail}; top up and retry", code=code
            )
        if code == "15":
            text = f"sender {self.sender_for(message)!r} is not allowed by Vonage: {detail}"
            return self.sender_refused(message, text, code=code)
        if code == "29":
            return UnsupportedFeature(
                f"this Vonage account is in demo mode and may only send to whitelisted numbers, "
                f"not {message.to}: {detail}; top up the account or whitelist the number",
                code=code,
            )
        if code in ("8", "11"):
            return ProviderUnavailable(f"the Vonage account cannot send: {detail}", code=code)
        if code == "23":
            return ProviderUnavailable(
                f"Vonage refused the receipt URL: {detail}; fix the "
                "callback= option of the vonage:// URL",
                code=code,
                field="callback",
            )
        if code == "12":
            return InvalidMessage(
                f"the message is too long for Vonage: {detail}", code=code, field="body"
            )
        return InvalidMessage(f"Vonage refused the message: {detail}", code=code)

    # -- webhooks ---------------------------------------------------------------------------

    def webhook_params(self, request: WebhookRequest) -> dict[str, str]:
        """The webhook's parameters, whether it came as GET, form POST or JSON POST."""
        if request.method.upper() == "GET":
            return dict(request.query)
        content_type = (request.header("Content-Type") or "").lower()
        if "json" in content_type or request.body.lstrip()[:1] == b"{":
            body = request.json()
            if not isinstance(body, dict):
                raise WebhookVerificationError(
                    "Vonage JSON webhook body is not an object", provider=self.name
                )
            return {str(key): _param_text(value) for key, value in body.items()}
        return dict(request.form())

    def verify_webhook(self, request: WebhookRequest) -> None:
        params = self.webhook_params(request)
        if not self._signature_secret:
            if not self.allow_unsigned:
                raise WebhookVerificationError(
                    "no signature_secret is configured, so this Vonage webhook cannot be checked; "
                    "enable signed webhooks in the Vonage dashboard and set signature_secret= and "
                    "signature_method= in the vonage:// URL (or allow_unsigned=true to accept "
                    "unsigned webhooks)",
                    provider=self.name,
                    field="signature_secret",
                )
            if not self._warned_unsigned:
                logger.warning(
                    "%s: accepting unsigned Vonage webhooks (allow_unsigned=true)", self.name
                )
                self._warned_unsigned = True
            return
        signature = params.get("sig")
        if not signature:
            raise WebhookVerificationError(
                "Vonage webhook has no sig parameter; is signing enabled in the dashboard?",
                provider=self.name,
            )
        self._check_timestamp(params.get("timestamp"))
        expected = vonage_signature(params, self._signature_secret, self.signature_method)
        if not constant_time_equal(expected, signature.lower()):
            raise WebhookVerificationError(
                f"Vonage sig does not match (signature_method={self.signature_method}); check "
                "the signature secret and method against the dashboard",
                provider=self.name,
            )

    def _check_timestamp(self, value: str | None) -> None:
        try:
            sent = float(value or "")
        except ValueError:
            raise WebhookVerificationError(
                "Vonage webhook has no valid timestamp parameter", provider=self.name
            ) from None
        skew = abs(self.clock.time() - sent)
        if skew > self.timestamp_tolerance:
            raise WebhookVerificationError(
                f"Vonage webhook timestamp is {skew:.0f} s away from our clock (tolerance "
                f"{self.timestamp_tolerance:g} s): a replay, or a server clock that is off",
                provider=self.name,
            )

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        params = self.webhook_params(request)
        part_id = params.get("messageId") or params.get("message-id")
        status_text = params.get("status")
        if not part_id or not status_text:
            raise WebhookVerificationError(
                "not a Vonage delivery receipt (no messageId/status)", provider=self.name
            )
        code = params.get("err-code") or None
        if code == "0":
            code = None
        status = STATUSES.get(status_text.lower(), Status.UNKNOWN)
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=part_id,
                status=status,
                event_id=_receipt_id(params),
                occurred_at=_vonage_time(params.get("message-timestamp")),
                message_id=params.get("client-ref") or None,
                to=_plus(params.get("msisdn")),
                error_code=code,
                reason=DELIVERY_ERRORS.get(code, f"error {code}") if code else status_text,
                opted_out=code == OPTED_OUT_CODE,
                raw=params,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        params = self.webhook_params(request)
        message_id = params.get("messageId")
        sender = params.get("msisdn")
        if not message_id or not sender:
            raise WebhookVerificationError(
                "not a Vonage inbound message (no messageId/msisdn)", provider=self.name
            )
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=message_id,
                sender=_plus(sender) or sender,
                to=_plus(params.get("to")) or "",
                body=params.get("text", ""),
                received_at=_vonage_time(params.get("message-timestamp")),
                raw=params,
                part=self._inbound_part(params),
            )
        ]

    def _inbound_part(self, params: dict[str, str]) -> InboundPart | None:
        """A fragment of a concatenated message (``concat=true``): its reference, number, total."""
        if params.get("concat", "").lower() != "true":
            return None
        reference = params.get("concat-ref", "")
        try:
            number, total = int(params.get("concat-part", "")), int(params.get("concat-total", ""))
        except ValueError:
            number = total = 0
        if not reference or not 1 <= number <= total:
            raise WebhookVerificationError(
                "Vonage inbound has concat=true but no usable concat-ref, concat-part and "
                f"concat-total (got {reference!r}, {params.get('concat-part')!r}, "
                f"{params.get('concat-total')!r}); each part needs all three, 1 <= part <= total",
                provider=self.name,
            )
        return InboundPart(reference, number, total)


def _parts(body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict):
        return None
    parts = body.get("messages")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        return None
    return parts


def _total_price(parts: list[dict[str, Any]]) -> str | None:
    try:
        prices = [Decimal(str(part["message-price"])) for part in parts if "message-price" in part]
    except InvalidOperation:
        return None
    return str(sum(prices, Decimal(0))) if prices else None


def _wire_sender(sender: str) -> str:
    digits = sender.lstrip("+")
    return digits if digits.isdigit() else sender


def _plus(number: str | None) -> str | None:
    if not number:
        return None
    return f"+{number}" if number.isdigit() else number


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _receipt_id(params: Mapping[str, str]) -> str:
    # Vonage re-signs a retried receipt (new timestamp, nonce, sig), so those are left out: a
    # retry of the same receipt gets the same id and is dropped as a duplicate.
    stable = "|".join(
        params.get(name, "")
        for name in (
            "messageId",
            "status",
            "err-code",
            "scts",
            "message-timestamp",
            "client-ref",
            "msisdn",
        )
    )
    return hashlib.sha256(stable.encode()).hexdigest()[:32]


def _vonage_time(value: str | None) -> datetime | None:
    # message-timestamp is "YYYY-MM-DD HH:MM:SS" in UTC.
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
