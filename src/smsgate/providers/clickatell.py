"""Clickatell Platform REST API (``platform.clickatell.com``).

``clickatell://API_KEY@SENDER?webhook_token=SECRET``

Options: ``base_url`` (an emulator), ``webhook_token`` (a secret of your choosing that
authenticates Clickatell's callbacks, see below). ``callback`` is refused: Clickatell takes its
callback URLs from the integration's settings in its portal, never from a request.

The wire contract, as Clickatell's Platform documentation and its official libraries
(``clickatell-platform`` for Python, ``clickatell-php``) have it:

- ``POST /messages`` with ``Authorization: API_KEY`` (the bare key, no scheme) and JSON
  ``{"to": ["27999000001", ...], "content", "from", "clientMessageId"}``: numbers are digits
  without ``+``; ``clientMessageId`` is our message id and comes back in status callbacks.
- 202 ``{"messages": [{"apiMessageId", "accepted", "to", "errorCode", "error",
  "errorDescription"}], "errorCode", "error", "errorDescription"}``: one entry per recipient; an
  entry with ``accepted: false`` is that recipient's refusal (105 invalid destination, 121
  destination blocked, i.e. opted out, 114 cannot route). A whole-request refusal carries the
  top-level ``errorCode`` (1 or 001 authentication, 7 IP lockdown, 101 invalid parameters,
  106 invalid source address, 301 no credit).
- Status callbacks (configured in the portal) POST ``{"integrationName", "messageId",
  "requestId", "clientMessageId", "to", "from", "statusCode", "status", "statusDescription",
  "timestamp"}`` with Clickatell's message statuses (3 ``DELIVERED_TO_GATEWAY``, 4
  ``RECEIVED_BY_RECIPIENT``, 5 ``ERROR_WITH_MESSAGE``, 7 ``ERROR_DELIVERING``, 9
  ``ROUTING_ERROR``, 10 ``EXPIRED``, 12 ``OUT_OF_CREDIT``...); inbound messages POST
  ``{"messageId", "fromNumber", "toNumber", "text", "timestamp", "charset", "keyword"}``.

Not supported, and why: a status lookup (the Platform API documents none for an API key
integration), MMS (SMS only).

Webhook authentication, plainly: Clickatell signs no callback. smsgate authenticates them with
a shared secret in the URL: put ``?smsgate_token=SECRET`` on the callback URLs you enter in the
portal and the same secret as ``webhook_token`` here; a callback without it is refused. The
token proves only that the caller knew the URL, not what the body says: serve the endpoint over
HTTPS. Without ``webhook_token`` every Clickatell callback is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from smsgate.errors import (
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    RateLimited,
    SmsgateError,
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
from smsgate.providers.signing import check_url_token
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "clickatell://API_KEY@+14155550100?webhook_token=SECRET"

#: Clickatell's message status codes -> ours
STATUS_CODES: dict[int, Status] = {
    1: Status.UNKNOWN,
    2: Status.QUEUED,
    3: Status.SENT,
    4: Status.DELIVERED,
    5: Status.FAILED,
    6: Status.CANCELED,
    7: Status.UNDELIVERED,
    8: Status.QUEUED,
    9: Status.UNDELIVERED,
    10: Status.EXPIRED,
    11: Status.QUEUED,
    12: Status.FAILED,
    14: Status.FAILED,
}
OPTED_OUT_CODE = "121"
_AUTH_CODES = frozenset({"1", "2", "7", "108"})
_RECIPIENT_CODES = frozenset({"105", "114"})
_SENDER_CODES = frozenset({"106"})
_FUNDS_CODES = frozenset({"301", "12"})


def _code(value: Any) -> str | None:
    """Clickatell writes codes as ``1``, ``"001"`` or ``"1"``: one form, no leading zeros."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text.lstrip("0") or "0"


class ClickatellProvider(HttpProvider):
    scheme = "clickatell"
    display_name = "Clickatell"
    default_base_url = "https://platform.clickatell.com"
    capabilities = Capabilities(
        bulk=True,
        delivery_webhooks=True,
        webhook_verification="a secret token in the callback URL (Clickatell signs no callback)",
        inbound=True,
        idempotency="clientMessageId (echoed in callbacks; not deduplicated by Clickatell)",
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption(
            "webhook_token",
            "secret",
            "a secret your portal callback URLs carry as smsgate_token=; Clickatell signs none",
        ),
    )
    secret_username = True
    emulator = "smsgate.emulators.clickatell:ClickatellEmulator"

    def __init__(self, *, api_key: str, webhook_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.status_callback:
            raise ConfigError(
                "clickatell:// takes no callback: Clickatell sends status callbacks to the URL "
                "set on the integration in its portal (add ?smsgate_token=... there)",
                field="callback",
            )
        self._api_key = api_key
        self._webhook_token = webhook_token

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        return cls(
            name=name,
            api_key=url.require("username", URL_FORM),
            sender=url.sender(),
            webhook_token=url.option("webhook_token"),
            **cls.common_options(url),
        )

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._api_key, "Accept": "application/json"}

    def supported_options(self) -> frozenset[str]:
        return frozenset({"validityPeriod", "charset", "binary"})

    # -- send -----------------------------------------------------------------------------

    def _payload(self, messages: list[Message]) -> dict[str, Any]:
        head = messages[0]
        payload: dict[str, Any] = {
            "to": [m.to.removeprefix("+") for m in messages],
            "content": head.body,
            "from": self.sender_for(head).removeprefix("+"),
        }
        if len(messages) == 1:
            payload["clientMessageId"] = head.id
        if head.validity:
            payload["validityPeriod"] = max(1, int(head.validity) // 60)
        payload.update(self.options_for(head))
        return payload

    def build_send_request(self, message: Message) -> HttpRequest:
        return HttpRequest(
            "POST", "/messages", json=self._payload([message]), headers=self._headers
        )

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        return HttpRequest("POST", "/messages", json=self._payload(messages), headers=self._headers)

    def is_error_response(self, response: HttpResponse) -> bool:
        # A whole-request refusal can come with a 2xx and a top-level errorCode.
        body = response.json()
        return isinstance(body, dict) and _code(body.get("errorCode")) is not None

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        [result] = self.parse_bulk_response([message], response)
        if result.error is not None:
            raise result.error
        return result

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        entries = [e for e in response.json()["messages"] if isinstance(e, dict)]
        by_to: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_to.setdefault(str(entry.get("to") or "").removeprefix("+"), []).append(entry)
        results = []
        for i, message in enumerate(messages):
            same = by_to.get(message.to.removeprefix("+"))
            entry = same.pop(0) if same else (entries[i] if i < len(entries) else {})
            if entry.get("accepted") is False or _code(entry.get("errorCode")):
                error = self._refusal(message, entry)
                error.provider, error.raw = self.name, entry
                results.append(self.failed_result(message, error))
                continue
            results.append(
                self.result(
                    message,
                    status=Status.QUEUED,
                    provider_message_id=entry.get("apiMessageId"),
                    raw=entry,
                )
            )
        return results

    def _refusal(self, message: Message, entry: dict[str, Any]) -> SmsgateError:
        code = _code(entry.get("errorCode"))
        text = str(entry.get("errorDescription") or entry.get("error") or f"error {code}")
        if code == OPTED_OUT_CODE:
            return OptedOut(
                f"Clickatell will not send to {message.to}: the number is blocked (opted out)",
                code=code,
                field="to",
            )
        if code in _SENDER_CODES:
            return self.sender_refused(
                message,
                f"Clickatell refused the sender {self.sender_for(message)!r}: {text}",
                code=code,
            )
        if code in _FUNDS_CODES:
            return InsufficientFunds(f"the Clickatell account has no credit: {text}", code=code)
        if code in _RECIPIENT_CODES:
            return InvalidRecipient(
                f"Clickatell refused recipient {message.to}: {text}", code=code, field="to"
            )
        return InvalidMessage(f"Clickatell refused the message: {text}", code=code)

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        body = body if isinstance(body, dict) else {}
        code = _code(body.get("errorCode"))
        text = str(body.get("errorDescription") or body.get("error") or f"HTTP {response.status}")
        if response.status == 401 or code in _AUTH_CODES:
            return AuthError(
                f"Clickatell refused the API key in the clickatell:// URL ({text})", code=code
            )
        if response.status == 429:
            return RateLimited(
                f"Clickatell is throttling: {text}",
                code=code,
                retry_after=retry_after(response, 1.0),
            )
        if code is not None and response.status < 500:
            return self._refusal(message, body)
        return self.map_http_status(response, detail=text, code=code)

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        check_url_token(
            request.url,
            self._webhook_token,
            provider=self.name,
            display_name=self.display_name,
            scheme=self.scheme,
            noun="callback",
        )

    def _body(self, request: WebhookRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict) or not body.get("messageId"):
            raise WebhookVerificationError(
                "not a Clickatell callback (no messageId)", provider=self.name
            )
        return body

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        body = self._body(request)
        if body.get("statusCode") is None:
            return []  # an inbound message posted to the status URL is not a status
        try:
            status_code = int(body["statusCode"])
        except (TypeError, ValueError):
            raise WebhookVerificationError(
                "Clickatell callback with a statusCode that is not a number", provider=self.name
            ) from None
        status = STATUS_CODES.get(status_code, Status.UNKNOWN)
        bad = status in (Status.FAILED, Status.UNDELIVERED, Status.EXPIRED)
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=str(body["messageId"]),
                status=status,
                event_id=f"{body['messageId']}:{status_code}:{body.get('timestamp')}",
                occurred_at=_time(body.get("timestamp")),
                message_id=str(body["clientMessageId"]) if body.get("clientMessageId") else None,
                to=str(body.get("to") or "") or None,
                error_code=str(status_code) if bad else None,
                reason=str(body.get("statusDescription") or body.get("status") or ""),
                raw=body,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        body = self._body(request)
        if not body.get("fromNumber"):
            raise WebhookVerificationError(
                "Clickatell inbound message without fromNumber", provider=self.name
            )
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=str(body["messageId"]),
                sender=str(body["fromNumber"]),
                to=str(body.get("toNumber") or ""),
                body=str(body.get("text") or ""),
                received_at=_time(body.get("timestamp")),
                raw=body,
            )
        ]


def _time(value: Any) -> datetime | None:
    """Clickatell's timestamps: epoch milliseconds, or an ISO string."""
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return parse_iso_time(value)
