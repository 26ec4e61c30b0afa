"""Infobip SMS API v3.

``infobip://API_KEY@SENDER?base_url=https://ACCOUNT.api.infobip.com&webhook_token=SECRET``

Options: ``base_url`` (the account's own API host, shown in the Infobip portal, or an emulator),
``callback`` (the delivery-report URL; our id and the webhook token are added to it),
``webhook_token`` (a secret of your choosing that authenticates Infobip's webhooks, see below).

The wire contract, as Infobip's OpenAPI (the official ``infobip-api-python-client``) declares it:

- ``POST /sms/3/messages`` with ``Authorization: App KEY`` and JSON ``{"messages": [{"sender",
  "destinations": [{"to", "messageId"}], "content": {"text"}, "webhooks": {"delivery": {"url"},
  "contentType", "callbackData"}}]}``. One message may carry many destinations (the bulk path).
  We set each destination's ``messageId`` to our message id, so a message can be found by it.
- 200 ``{"bulkId", "messages": [{"messageId", "status": {"groupId", "groupName", "id", "name",
  "description"}, "destination", "details": {"messageCount"}}]}``. A destination Infobip will not
  send to comes back in that 200 with ``groupName`` ``REJECTED`` (``REJECTED_DESTINATION``,
  ``REJECTED_DND`` for a recipient on a do-not-disturb or opt-out list, ``REJECTED_SENDER``,
  ``REJECTED_NOT_ENOUGH_CREDITS``...): that recipient's send failed.
- Refusals of the whole request are ``{"requestError": {"serviceException": {"messageId",
  "text", "validationErrors"}}}`` (``UNAUTHORIZED``, ``BAD_REQUEST``, ``TOO_MANY_REQUESTS``...);
  newer endpoints answer ``{"errorCode", "description", "action", "violations"}``: both are read.
- ``GET /sms/3/logs?messageId=ID`` finds a message's status (the status fetch); with
  ``sentSince``, ``sentUntil`` and ``limit`` (at most 1,000) it lists logs by time, which is how
  Infobip pages them and how reconcile reads them to the end. Logs are kept for 48 hours.
- Delivery reports are POSTed as ``{"results": [{"bulkId", "messageId", "to", "sender",
  "sentAt", "doneAt", "messageCount", "price", "status", "error", "callbackData"}]}``; inbound
  messages (forwarded from a number's configured URL) as ``{"results": [{"messageId", "from",
  "to", "text", "cleanText", "keyword", "receivedAt", "smsCount"}], "messageCount"}``.

Webhook authentication, plainly: Infobip signs neither its per-message delivery reports nor its
forwarded inbound messages. smsgate therefore authenticates them with a shared secret in the
URL: ``webhook_token`` is added to the delivery URL it gives Infobip as ``smsgate_token=``, and
must be put on the inbound URL you configure in the portal the same way; a webhook without the
right token is refused. The token is only as secret as the URL, so serve the endpoint over
HTTPS. Without ``webhook_token`` every Infobip webhook is refused.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import urlencode

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
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
    first,
    parse_iso_time,
    retry_after,
)
from smsgate.providers.signing import TOKEN_PARAM, check_url_token
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "infobip://KEY@SENDER?base_url=https://ACCOUNT.api.infobip.com&webhook_token=SECRET"

#: Infobip's status groups (``status.groupName``) -> ours
GROUPS: dict[str, Status] = {
    "ACCEPTED": Status.QUEUED,
    "PENDING": Status.QUEUED,
    "UNDELIVERABLE": Status.UNDELIVERED,
    "DELIVERED": Status.DELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTED": Status.REJECTED,
}
#: status names (group REJECTED) that blame the recipient, the recipient's opt-out, the sender,
#: the balance
_RECIPIENT_NAMES = frozenset(
    {
        "REJECTED_DESTINATION",
        "REJECTED_NETWORK",
        "REJECTED_PREFIX_MISSING",
        "REJECTED_DESTINATION_NOT_REGISTERED",
        "REJECTED_INVALID_DESTINATION",
    }
)
OPTED_OUT_NAMES = frozenset({"REJECTED_DND", "REJECTED_OPTOUT", "REJECTED_BLOCKLIST"})
_SENDER_NAMES = frozenset({"REJECTED_SENDER", "REJECTED_SOURCE"})
_FUNDS_NAMES = frozenset({"REJECTED_NOT_ENOUGH_CREDITS", "REJECTED_PREPAID_PACKAGE_EXPIRED"})


def _infobip_time(moment: datetime) -> str:
    """Infobip's query time format, ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``, in UTC."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def wire_number(number: str) -> str:
    """A number as Infobip takes it: international digits, no ``+``."""
    return number.removeprefix("+")


class InfobipProvider(HttpProvider):
    scheme = "infobip"
    display_name = "Infobip"
    default_base_url = "https://api.infobip.com"
    capabilities = Capabilities(
        bulk=True,
        status_fetch=True,
        delivery_webhooks=True,
        webhook_verification="a secret token in the webhook URL (Infobip signs no webhook)",
        inbound=True,
        idempotency="destinations[].messageId (our id; not deduplicated by Infobip)",
        reconcile=True,
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption(
            "webhook_token",
            "secret",
            "a secret added to webhook URLs as smsgate_token=; Infobip signs no webhook",
        ),
    )
    secret_username = True
    emulator = "smsgate.emulators.infobip:InfobipEmulator"
    bulk_batch_size = 1000

    def __init__(self, *, api_key: str, webhook_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
        return {"Authorization": f"App {self._api_key}", "Accept": "application/json"}

    def supported_options(self) -> frozenset[str]:
        # Passed through into the message's ``options`` object (Infobip's SmsMessageRequestOptions).
        return frozenset({"validityPeriod", "campaignReferenceId", "platform", "regional"})

    # -- send -----------------------------------------------------------------------------

    def _delivery_url(self, ids: dict[str, str]) -> str | None:
        if not self.status_callback:
            return None
        joiner = "&" if "?" in self.status_callback else "?"
        params = dict(ids)
        if self._webhook_token:
            params[TOKEN_PARAM] = self._webhook_token
        return f"{self.status_callback}{joiner}{urlencode(params)}" if params else None

    def _message(self, messages: list[Message]) -> dict[str, Any]:
        head = messages[0]
        entry: dict[str, Any] = {
            "sender": self.sender_for(head),
            "destinations": [{"to": wire_number(m.to), "messageId": m.id} for m in messages],
            "content": {"text": head.body},
        }
        # One message's id in the URL only when the request carries one message; a report names
        # its messageId (our id) in any case.
        url = self._delivery_url({"smsgate_id": head.id} if len(messages) == 1 else {})
        if url:
            entry["webhooks"] = {"delivery": {"url": url}, "contentType": "application/json"}
        options: dict[str, Any] = {}
        if head.validity:
            options["validityPeriod"] = {
                "amount": max(1, int(head.validity) // 60),
                "timeUnit": "MINUTES",
            }
        options.update(self.options_for(head))
        if options:
            entry["options"] = options
        return entry

    def build_send_request(self, message: Message) -> HttpRequest:
        return HttpRequest(
            "POST",
            "/sms/3/messages",
            json={"messages": [self._message([message])]},
            headers=self._headers,
        )

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        return HttpRequest(
            "POST",
            "/sms/3/messages",
            json={"messages": [self._message(messages)]},
            headers=self._headers,
        )

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        [result] = self.parse_bulk_response([message], response)
        if result.error is not None:
            raise result.error
        return result

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        body = response.json()
        entries = [e for e in body["messages"] if isinstance(e, dict)]
        by_id = {str(e.get("messageId")): e for e in entries}
        results = []
        for i, message in enumerate(messages):
            # Matched by the messageId we chose; by position for an answer that renamed it.
            entry = by_id.get(message.id) or (entries[i] if i < len(entries) else {})
            results.append(self._entry_result(message, entry, body.get("bulkId")))
        return results

    def _entry_result(self, message: Message, entry: dict[str, Any], bulk_id: Any) -> SendResult:
        status = entry.get("status") or {}
        group = str(status.get("groupName") or "")
        if group == "REJECTED":
            error = self._rejection(message, status)
            error.provider, error.raw = self.name, entry
            return self.failed_result(message, error)
        details = entry.get("details") or {}
        count = details.get("messageCount")
        return self.result(
            message,
            status=GROUPS.get(group, Status.QUEUED),
            provider_message_id=entry.get("messageId"),
            segments=count if isinstance(count, int) and count > 0 else None,
            raw={**entry, "bulkId": bulk_id},
        )

    def _rejection(self, message: Message, status: dict[str, Any]) -> SmsgateError:
        name = str(status.get("name") or "REJECTED")
        text = f"{name}: {status.get('description') or ''}".rstrip(": ")
        code = str(status.get("id") if status.get("id") is not None else name)
        if name in OPTED_OUT_NAMES:
            return OptedOut(
                f"Infobip will not send to {message.to}: the recipient opted out ({text})",
                code=code,
                field="to",
            )
        if name in _SENDER_NAMES:
            return self.sender_refused(
                message,
                f"Infobip refused the sender {self.sender_for(message)!r} ({text})",
                code=code,
            )
        if name in _FUNDS_NAMES:
            return InsufficientFunds(f"the Infobip account cannot pay for this ({text})", code=code)
        if name in _RECIPIENT_NAMES or "DESTINATION" in name:
            return InvalidRecipient(
                f"Infobip refused recipient {message.to} ({text})", code=code, field="to"
            )
        return InvalidMessage(f"Infobip refused the message ({text})", code=code)

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        code, text = _request_error(response.json())
        status = response.status
        if status == 401 or code in ("UNAUTHORIZED", "E401"):
            return AuthError(
                f"Infobip refused the API key in the infobip:// URL ({text})", code=code
            )
        if status == 429 or code in ("TOO_MANY_REQUESTS", "E429"):
            return RateLimited(
                f"Infobip is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if status == 403:
            return AuthError(f"this Infobip API key may not send SMS ({text})", code=code)
        if status < 500:
            return InvalidMessage(f"Infobip refused the request: {text}", code=code)
        return self.map_http_status(response, detail=text, code=code)

    # -- status -----------------------------------------------------------------------------

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        response = await self.transport.request(
            HttpRequest(
                "GET",
                "/sms/3/logs",
                params={"messageId": provider_message_id},
                headers=self._headers,
            )
        )
        logs = [r for r in self.read_lookup(response).get("results") or [] if isinstance(r, dict)]
        log = next((r for r in logs if r.get("messageId") == provider_message_id), None)
        if log is None:
            return SendResult(
                id=provider_message_id,
                to="",
                status=Status.UNKNOWN,
                provider=self.name,
                provider_message_id=provider_message_id,
                raw=logs,
            )
        return self._log_result(provider_message_id, log)

    def _log_result(self, message_id: str, log: dict[str, Any]) -> SendResult:
        count = log.get("messageCount")
        price = log.get("price") or {}
        return SendResult(
            id=message_id,
            to=str(log.get("destination") or ""),
            status=GROUPS.get(str((log.get("status") or {}).get("groupName")), Status.UNKNOWN),
            provider=self.name,
            provider_message_id=str(log.get("messageId") or message_id),
            segments=count if isinstance(count, int) else None,
            price=_text(price.get("pricePerMessage")),
            price_unit=price.get("currency"),
            raw=log,
        )

    #: the most logs Infobip returns for one request
    reconcile_page_size = 1000
    #: how far back Infobip keeps message logs
    logs_kept_for: float = 48 * 3600

    async def areconcile(
        self, message: Message, *, since: float | None = None
    ) -> SendResult | None:
        """Find an ambiguously sent message by its ``messageId``, which is our message id.

        Reads the logs of messages with that id sent since ``since`` and takes the one to this
        recipient. Infobip pages logs by time, as its API reference says: a full page (1,000)
        is followed by a request for those sent before the oldest on it (``sentUntil``). None
        ("Infobip has no record of it") only once a page came back short and the window lies
        within the 48 hours Infobip keeps logs for; otherwise :class:`AmbiguousSend`, as for a
        failed or unreadable page.
        """
        start = self.reconcile_window(since)
        if start.timestamp() < self.clock.time() - self.logs_kept_for:
            raise AmbiguousSend(
                "cannot look the message up: Infobip keeps message logs for 48 hours and the "
                "first attempt is older, so not finding it would prove nothing",
                provider=self.name,
            )
        params = {
            "messageId": message.id,
            "sentSince": _infobip_time(start),
            "limit": str(self.reconcile_page_size),
        }

        seen: set[object] = set()

        def next_page(body: dict[str, Any], request: HttpRequest) -> HttpRequest | None:
            results = [r for r in body.get("results") or [] if isinstance(r, dict)]
            if len(results) < self.reconcile_page_size:
                return None
            sent = [parse_iso_time(_iso(r.get("sentAt"))) for r in results]
            fresh = {(r.get("messageId"), r.get("destination"), r.get("sentAt")) for r in results}
            if None in sent or fresh <= seen:
                raise AmbiguousSend(
                    "Infobip returned a full page of logs that gives no earlier time to ask "
                    "from (no sentAt, or all in the same millisecond as the page before); a "
                    "partial search proves nothing",
                    provider=self.name,
                    raw=body,
                )
            seen.update(fresh)
            # Up to and including the oldest millisecond on the page: logs sharing it that did
            # not fit are read on the next page (those already read are read twice, harmlessly).
            until = min(t for t in sent if t is not None) + timedelta(milliseconds=1)
            return dataclasses.replace(
                request, params={**params, "sentUntil": _infobip_time(until)}
            )

        async for log in self.alist_all(
            HttpRequest("GET", "/sms/3/logs", params=params, headers=self._headers),
            items=lambda body: body.get("results"),
            next_page=next_page,
            message=message,
        ):
            if log.get("messageId") == message.id and wire_number(
                str(log.get("destination") or "")
            ) == wire_number(message.to):
                return self._log_result(message.id, log)
        return None

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        check_url_token(
            request.url,
            self._webhook_token,
            provider=self.name,
            display_name=self.display_name,
            scheme=self.scheme,
            noun="webhook",
        )

    def _results(self, request: WebhookRequest) -> list[dict[str, Any]]:
        body = request.json()
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise WebhookVerificationError(
                "not an Infobip webhook (no results)", provider=self.name
            )
        return [r for r in results if isinstance(r, dict)]

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        events = []
        for report in self._results(request):
            if not report.get("messageId"):
                continue
            status = report.get("status") or {}
            error = report.get("error") or {}
            failed = bool(error) and error.get("groupName") not in (None, "OK")
            name = str(status.get("name") or "")
            ours = GROUPS.get(str(status.get("groupName")), Status.UNKNOWN)
            count = report.get("messageCount")
            events.append(
                DeliveryEvent(
                    provider=self.name,
                    provider_message_id=str(report["messageId"]),
                    status=ours,
                    # One report per message and final status; the body is the token-authenticated
                    # content, and Infobip sends no event id of its own.
                    event_id=f"{report['messageId']}:{status.get('id')}:{error.get('id')}",
                    occurred_at=parse_iso_time(_iso(report.get("doneAt"))),
                    message_id=first(request.query, "smsgate_id") or str(report["messageId"]),
                    to=_text(report.get("to")),
                    error_code=str(error.get("id")) if failed else None,
                    reason=(f"{error.get('name')}: {error.get('description')}" if failed else name),
                    opted_out=name in OPTED_OUT_NAMES or error.get("name") in OPTED_OUT_NAMES,
                    parts=count if isinstance(count, int) else None,
                    raw=report,
                )
            )
        return events

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        messages = []
        for item in self._results(request):
            if not item.get("messageId") or not item.get("from"):
                raise WebhookVerificationError(
                    "Infobip inbound message without messageId or from", provider=self.name
                )
            messages.append(
                InboundMessage(
                    provider=self.name,
                    provider_message_id=str(item["messageId"]),
                    sender=str(item["from"]),
                    to=str(item.get("to") or ""),
                    body=str(item.get("text") or ""),
                    received_at=parse_iso_time(_iso(item.get("receivedAt"))),
                    raw=item,
                )
            )
        return messages


def _request_error(body: Any) -> tuple[str | None, str]:
    """(code, text) of Infobip's ``requestError`` or ``errorCode`` bodies."""
    if not isinstance(body, dict):
        return None, "no error body"
    service = (body.get("requestError") or {}).get("serviceException")
    if isinstance(service, dict):
        text = str(service.get("text") or service.get("messageId") or "")
        invalid = service.get("validationErrors")
        if isinstance(invalid, dict) and invalid:
            text += "; " + "; ".join(f"{k}: {v}" for k, v in invalid.items())
        return _text(service.get("messageId")), text
    if body.get("errorCode"):
        violations = "; ".join(
            f"{v.get('property')}: {v.get('violation')}"
            for v in body.get("violations") or []
            if isinstance(v, dict)
        )
        text = str(body.get("description") or body["errorCode"])
        return str(body["errorCode"]), f"{text}; {violations}" if violations else text
    return None, "an error body Infobip does not document"


def _iso(value: Any) -> Any:
    """Infobip's ``2024-05-01T12:00:00.000+0000`` as ISO 8601 (``+00:00``)."""
    if isinstance(value, str) and len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit():
        return f"{value[:-2]}:{value[-2:]}"
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
