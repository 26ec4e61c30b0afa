"""Sinch SMS REST API (XMS) with a service plan id and API token.

``sinch://SERVICE_PLAN_ID:API_TOKEN@SENDER?region=eu&webhook_secret=SECRET``

Options: ``region`` (``us`` by default, ``eu``, ``au``, ``br``, ``ca``: the API host
``{region}.sms.api.sinch.com``), ``base_url`` (an emulator), ``callback`` (the batch's
``callback_url``), ``delivery_report`` (``per_recipient``, the default when a callback is set,
or ``per_recipient_final`` for final statuses only, or ``none``), ``webhook_secret`` (the
callback signing secret Sinch provisions for the account), ``timestamp_tolerance`` (seconds,
default 300).

The wire contract, as Sinch's API reference and its official Python SDK (``sinch``) have it:

- ``POST /xms/v1/{service_plan_id}/batches`` with ``Authorization: Bearer TOKEN`` and JSON
  ``{"from", "to": [...], "body", "delivery_report", "callback_url", "client_reference",
  "expire_at"}``; 201 ``{"id", "to", "from", "body", "type": "mt_text", "created_at",
  "delivery_report", "client_reference", ...}``. Each message is its own batch of one recipient,
  so a batch id names one message (a receipt's ``batch_id`` finds it); ``client_reference`` is
  our message id and comes back in every per-recipient report.
- Refusals are ``{"code", "text"}``: ``syntax_invalid_parameter_format`` (400, e.g. a number),
  ``unauthorized`` (401), ``forbidden`` (403), ``too_many_requests`` (429).
- ``GET /xms/v1/{service_plan_id}/batches/{id}/delivery_report?type=full`` is the status fetch.
- ``GET /xms/v1/{service_plan_id}/batches?client_reference=&from=&start_date=&page=&page_size=``
  lists batches (``{"count", "page", "page_size", "batches"}``, pages from 0, at most 100 a
  page): reconcile finds an ambiguous send there by its ``client_reference``.
- Callbacks: ``recipient_delivery_report_sms`` ``{"type", "batch_id", "recipient", "code",
  "status", "at", "client_reference", "number_of_message_parts"}`` and inbound ``mo_text``
  ``{"type", "id", "from", "to", "body", "received_at"}``. Sinch retries a callback that did not
  get a 2xx with back-off (5 s, 10 s, 20 s... up to about 23 hours).

Webhook authentication, plainly: Sinch signs callbacks with HMAC-SHA256 when the account has a
callback secret (ask Sinch to enable it): ``x-sinch-webhook-signature`` is the base64
HMAC-SHA256 of ``"{raw body}.{nonce}.{timestamp}"`` with the ``-nonce`` and ``-timestamp``
headers. smsgate verifies it with ``webhook_secret`` and refuses a timestamp further than the
tolerance from its clock. Sinch's other options (basic auth, OAuth, mutual TLS on the callback
URL) are not checked here; without ``webhook_secret`` every Sinch webhook is refused.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from typing import Any, Self

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InvalidMessage,
    InvalidRecipient,
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
from smsgate.providers.signing import constant_time_equal
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "sinch://SERVICE_PLAN_ID:TOKEN@+14155550100?region=us&webhook_secret=SECRET"
SIGNATURE_HEADER = "x-sinch-webhook-signature"
NONCE_HEADER = "x-sinch-webhook-signature-nonce"
TIMESTAMP_HEADER = "x-sinch-webhook-signature-timestamp"
REGIONS = ("us", "eu", "au", "br", "ca")
REPORT_LEVELS = ("per_recipient", "per_recipient_final", "none")

STATUSES: dict[str, Status] = {
    "queued": Status.QUEUED,
    "dispatched": Status.SENT,
    "delivered": Status.DELIVERED,
    "failed": Status.UNDELIVERED,
    "rejected": Status.REJECTED,
    "aborted": Status.FAILED,
    "cancelled": Status.CANCELED,
    "deleted": Status.FAILED,
    "expired": Status.EXPIRED,
    "unknown": Status.UNKNOWN,
}
#: delivery-report codes that mean the recipient blocked the sender (opted out)
OPTED_OUT_CODES = frozenset({"418"})


def sinch_signature(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """Base64 HMAC-SHA256 of ``"{body}.{nonce}.{timestamp}"``, Sinch's callback signature."""
    signed = body + f".{nonce}.{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


class SinchProvider(HttpProvider):
    scheme = "sinch"
    display_name = "Sinch"
    default_base_url = "https://us.sms.api.sinch.com"
    capabilities = Capabilities(
        status_fetch=True,
        delivery_webhooks=True,
        webhook_verification="HMAC-SHA256 (x-sinch-webhook-signature + nonce) + timestamp",
        inbound=True,
        idempotency="client_reference (echoed in receipts; not deduplicated by Sinch)",
        reconcile=True,
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("region", "text", "API region: us (default), eu, au, br or ca"),
        UrlOption(
            "delivery_report", "text", "per_recipient (default), per_recipient_final or none"
        ),
        UrlOption("webhook_secret", "secret", "the callback signing secret Sinch provisions"),
        UrlOption(
            "timestamp_tolerance", "number", "seconds a callback's timestamp may be off (300)"
        ),
    )
    emulator = "smsgate.emulators.sinch:SinchEmulator"

    def __init__(
        self,
        *,
        service_plan_id: str,
        api_token: str,
        delivery_report: str = "per_recipient",
        webhook_secret: str | None = None,
        timestamp_tolerance: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if delivery_report not in REPORT_LEVELS:
            raise ConfigError(
                f"sinch:// option delivery_report={delivery_report!r}: smsgate reads per-message "
                f"reports, so use one of {', '.join(REPORT_LEVELS)}",
                field="delivery_report",
            )
        self.service_plan_id = service_plan_id
        self._api_token = api_token
        self.delivery_report = delivery_report
        self._webhook_secret = webhook_secret
        self.timestamp_tolerance = timestamp_tolerance

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        region = (url.option("region") or "us").lower()
        if region not in REGIONS:
            raise ConfigError(
                f"sinch:// option region={region!r} is not a Sinch SMS region; use one of "
                f"{', '.join(REGIONS)}",
                field="region",
            )
        options = cls.common_options(url)
        if options.get("base_url") is None:
            options["base_url"] = f"https://{region}.sms.api.sinch.com"
        return cls(
            name=name,
            service_plan_id=url.require("username", URL_FORM),
            api_token=url.require("password", URL_FORM),
            sender=url.sender(),
            delivery_report=url.option("delivery_report") or "per_recipient",
            webhook_secret=url.option("webhook_secret"),
            timestamp_tolerance=url.number("timestamp_tolerance", 300.0),
            **options,
        )

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_token}", "Accept": "application/json"}

    @property
    def _batches(self) -> str:
        return f"/xms/v1/{self.service_plan_id}/batches"

    def supported_options(self) -> frozenset[str]:
        return frozenset({"flash_message", "max_number_of_message_parts", "truncate_concat"})

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        payload: dict[str, Any] = {
            "from": self.sender_for(message),
            "to": [message.to],
            "body": message.body,
            "client_reference": message.id,
        }
        if self.status_callback:
            payload["callback_url"] = self.status_callback
            payload["delivery_report"] = self.delivery_report
        if message.validity:
            from datetime import UTC, datetime

            expire = datetime.fromtimestamp(self.clock.time() + message.validity, UTC)
            payload["expire_at"] = expire.isoformat(timespec="seconds").replace("+00:00", "Z")
        payload.update(self.options_for(message))
        return HttpRequest("POST", self._batches, json=payload, headers=self._headers)

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        body = response.json()
        return self.result(
            message,
            status=Status.QUEUED,
            provider_message_id=body.get("id"),
            raw=body,
        )

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        code = str(body.get("code")) if isinstance(body, dict) and body.get("code") else None
        text = str(body.get("text") or code) if isinstance(body, dict) else "no error body"
        status = response.status
        if status == 401 or code == "unauthorized":
            return AuthError(
                f"Sinch refused the service plan id or API token in the sinch:// URL ({text})",
                code=code or str(status),
            )
        if status == 403 or code == "forbidden":
            return AuthError(f"this Sinch service plan may not do this ({text})", code=code)
        if status == 429 or code == "too_many_requests":
            return RateLimited(
                f"Sinch is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if status < 500:
            lowered = text.lower()
            if "from" in lowered or "originator" in lowered or "sender" in lowered:
                return self.sender_refused(
                    message,
                    f"Sinch refused the sender {self.sender_for(message)!r}: {text}",
                    code=code,
                )
            if "number" in lowered or "recipient" in lowered or "to" in lowered.split():
                return InvalidRecipient(
                    f"Sinch refused recipient {message.to}: {text}", code=code, field="to"
                )
            return InvalidMessage(f"Sinch refused the batch: {text}", code=code)
        return self.map_http_status(response, detail=text, code=code)

    # -- status -----------------------------------------------------------------------------

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        response = await self.transport.request(
            HttpRequest(
                "GET",
                f"{self._batches}/{provider_message_id}/delivery_report",
                params={"type": "full"},
                headers=self._headers,
            )
        )
        report = self.read_lookup(response)
        statuses = [s for s in report.get("statuses") or [] if isinstance(s, dict)]
        entry = statuses[0] if statuses else {}
        recipients = entry.get("recipients") or [""]
        return SendResult(
            id=provider_message_id,
            to=str(recipients[0]),
            status=STATUSES.get(str(entry.get("status") or "").lower(), Status.UNKNOWN),
            provider=self.name,
            provider_message_id=provider_message_id,
            raw=report,
        )

    async def areconcile(
        self, message: Message, *, since: float | None = None
    ) -> SendResult | None:
        """Find an ambiguously sent message by its ``client_reference`` (our message id).

        Reads every page of the batches this sender created since ``since`` with that
        reference (``GET .../batches?client_reference=&from=&start_date=``, pages numbered from
        0 until ``count`` batches were read). None ("Sinch has no record of it") only once the last
        page was read; a failed or unreadable page, or too many, raise :class:`AmbiguousSend`.
        """
        start = self.reconcile_window(since).isoformat().replace("+00:00", "Z")
        params = {
            "client_reference": message.id,
            "from": self.sender_for(message),
            "start_date": start,
            "page": "0",
            "page_size": str(self.reconcile_page_size),
        }

        read = 0

        def next_page(body: dict[str, Any], request: HttpRequest) -> HttpRequest | None:
            # Counted as read rather than computed from page_size: Sinch may serve fewer per
            # page than asked, and its page_size is the number on this page.
            nonlocal read
            batches, count, page = body.get("batches"), body.get("count"), body.get("page")
            if not isinstance(count, int) or not isinstance(page, int):
                raise AmbiguousSend(
                    "Sinch's batch list has no page and count to tell whether more pages "
                    "follow; a partial search proves nothing",
                    provider=self.name,
                    raw=body,
                )
            read += len(batches) if isinstance(batches, list) else 0
            if read >= count:
                return None
            if not batches:
                raise AmbiguousSend(
                    f"Sinch's batch list page {page} is empty after {read} of {count} batches; "
                    "a partial search proves nothing",
                    provider=self.name,
                    raw=body,
                )
            return dataclasses.replace(request, params={**params, "page": str(page + 1)})

        wanted = message.to.lstrip("+")
        async for batch in self.alist_all(
            HttpRequest("GET", self._batches, params=params, headers=self._headers),
            items=lambda body: body.get("batches"),
            next_page=next_page,
            message=message,
        ):
            recipients = [str(to).lstrip("+") for to in batch.get("to") or []]
            if batch.get("client_reference") == message.id and wanted in recipients:
                return self.result(
                    message, status=Status.QUEUED, provider_message_id=batch.get("id"), raw=batch
                )
        return None

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        if not self._webhook_secret:
            raise WebhookVerificationError(
                "no webhook_secret is configured, so this Sinch callback cannot be checked; set "
                "webhook_secret= in the sinch:// URL (Sinch provisions it on request)",
                provider=self.name,
                field="webhook_secret",
            )
        signature = request.header(SIGNATURE_HEADER)
        nonce = request.header(NONCE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature or not nonce or not timestamp:
            raise WebhookVerificationError(
                f"missing {SIGNATURE_HEADER}, its nonce or its timestamp", provider=self.name
            )
        expected = sinch_signature(self._webhook_secret, request.body, nonce, timestamp)
        if not constant_time_equal(expected, signature):
            raise WebhookVerificationError(
                f"{SIGNATURE_HEADER} does not match; check webhook_secret in the sinch:// URL",
                provider=self.name,
            )
        try:
            sent = float(timestamp)
        except ValueError:
            raise WebhookVerificationError(
                f"{TIMESTAMP_HEADER} is not a number", provider=self.name
            ) from None
        skew = abs(self.clock.time() - sent)
        if skew > self.timestamp_tolerance:
            raise WebhookVerificationError(
                f"Sinch callback timestamp is {skew:.0f} s away from our clock (tolerance "
                f"{self.timestamp_tolerance:g} s): a replay, or a server clock that is off",
                provider=self.name,
            )

    def _body(self, request: WebhookRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict) or not body.get("type"):
            raise WebhookVerificationError("not a Sinch callback (no type)", provider=self.name)
        return body

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        body = self._body(request)
        if body["type"] not in ("recipient_delivery_report_sms", "recipient_delivery_report_mms"):
            return []  # batch summaries name no single message
        status_text = str(body.get("status") or "").lower()
        status = STATUSES.get(status_text, Status.UNKNOWN)
        code = str(body.get("code")) if body.get("code") is not None else None
        bad = status in (Status.UNDELIVERED, Status.FAILED, Status.REJECTED, Status.EXPIRED)
        parts = body.get("number_of_message_parts")
        # Event id from the signed body: the same report retried by Sinch is the same event.
        event_id = hashlib.sha256(
            "\0".join(
                str(body.get(k)) for k in ("batch_id", "recipient", "code", "status", "at")
            ).encode()
        ).hexdigest()[:32]
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=str(body.get("batch_id") or ""),
                status=status,
                event_id=event_id,
                occurred_at=parse_iso_time(body.get("at")),
                message_id=str(body["client_reference"]) if body.get("client_reference") else None,
                to=str(body.get("recipient") or "") or None,
                error_code=code if bad else None,
                reason=str(body.get("status") or ""),
                opted_out=bad and code in OPTED_OUT_CODES,
                parts=parts if isinstance(parts, int) else None,
                raw=body,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        body = self._body(request)
        if body["type"] != "mo_text":
            return []
        if not body.get("id") or not body.get("from"):
            raise WebhookVerificationError("Sinch mo_text without id or from", provider=self.name)
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=str(body["id"]),
                sender=str(body["from"]),
                to=str(body.get("to") or ""),
                body=str(body.get("body") or ""),
                received_at=parse_iso_time(body.get("received_at")),
                raw=body,
            )
        ]
