"""Twilio Programmable Messaging (SMS and MMS).

``twilio://ACCOUNT_SID:AUTH_TOKEN@+15017122661`` (or ``@MG…`` for a messaging service).
Options: ``base_url`` (an emulator), ``callback`` (StatusCallback base URL; our message id is added
as ``smsgate_id`` so receipts map back even when a send was ambiguous), ``public_url`` (the URL
Twilio signs, when the server sits behind a proxy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlencode

from smsgate.errors import (
    AuthError,
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
    retry_after,
)
from smsgate.providers.signing import constant_time_equal, twilio_signature, url_variants
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

STATUSES: dict[str, Status] = {
    "queued": Status.QUEUED,
    "accepted": Status.QUEUED,
    "scheduled": Status.SCHEDULED,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "partially_delivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
}

#: Asynchronous error codes seen in status callbacks, with a readable reason.
DELIVERY_ERRORS: dict[str, str] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
    "30034": "unregistered 10DLC number",
    "30036": "validity period expired",
    "21610": "recipient unsubscribed (STOP)",
}

_OPTIONS = frozenset(
    {
        "SmartEncoded",
        "ShortenUrls",
        "MaxPrice",
        "ProvideFeedback",
        "Attempt",
        "ContentRetention",
        "AddressRetention",
        "PersistentAction",
        "ForceDelivery",
        "ApplicationSid",
        "ContentSid",
        "ContentVariables",
        "RiskCheck",
    }
)


class TwilioProvider(HttpProvider):
    scheme = "twilio"
    display_name = "Twilio"
    default_base_url = "https://api.twilio.com"
    capabilities = Capabilities(
        mms=True,
        status_fetch=True,
        delivery_webhooks=True,
        webhook_verification="HMAC-SHA1 (X-Twilio-Signature)",
        inbound=True,
        idempotency="our id in the StatusCallback URL",
        reconcile=True,
        url_form="twilio://SID:TOKEN@+15017122661",
    )
    url_options = (
        UrlOption("public_url", "url", "the URL Twilio signs, when the server is behind a proxy"),
    )
    emulator = "smsgate.emulators.twilio:TwilioEmulator"

    def __init__(
        self, *, account_sid: str, auth_token: str, public_url: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.public_url = public_url

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        sid = url.require("username", "twilio://ACCOUNT_SID:AUTH_TOKEN@+15017122661")
        token = url.require("password", "twilio://ACCOUNT_SID:AUTH_TOKEN@+15017122661")
        return cls(
            name=name,
            account_sid=sid,
            auth_token=token,
            sender=url.sender(),
            public_url=url.option("public_url"),
            **cls.common_options(url),
        )

    @property
    def _path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages"

    @property
    def _auth(self) -> tuple[str, str]:
        return (self.account_sid, self._auth_token)

    def supported_options(self) -> frozenset[str]:
        return _OPTIONS

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        sender = self.sender_for(message)
        fields: list[tuple[str, str]] = [("To", message.to)]
        fields.append(("MessagingServiceSid" if sender.startswith("MG") else "From", sender))
        if message.body:
            fields.append(("Body", message.body))
        if message.media:
            fields.extend(("MediaUrl", url) for url in message.media)
        if self.status_callback:
            fields.append(("StatusCallback", self.callback_url(message)))
        if message.validity:
            fields.append(("ValidityPeriod", str(min(max(message.validity, 1), 36000))))
        if message.provider_options:
            fields.extend((key, str(value)) for key, value in self.options_for(message).items())
        return HttpRequest("POST", f"{self._path}.json", data=fields, auth=self._auth)

    def callback_url(self, message: Message) -> str:
        assert self.status_callback is not None
        joiner = "&" if "?" in self.status_callback else "?"
        return f"{self.status_callback}{joiner}{urlencode({'smsgate_id': message.id})}"

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        data = response.json() or {}
        return self._result_from_resource(message, data)

    def _result_from_resource(self, message: Message, data: dict[str, Any]) -> SendResult:
        segments = data.get("num_segments")
        return self.result(
            message,
            status=STATUSES.get(str(data.get("status")), Status.QUEUED),
            provider_message_id=data.get("sid"),
            segments=int(segments) if segments not in (None, "") else None,
            price=data.get("price"),
            price_unit=data.get("price_unit"),
            raw=data,
        )

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        if not isinstance(body, dict) or "code" not in body:
            return self.map_http_status(response)
        code = str(body.get("code"))
        text = str(body.get("message") or "")
        own_sender = message.sender is not None
        if code == "20003" or response.status == 401:
            return AuthError("Twilio refused the account SID or auth token", code=code)
        if code in ("20429", "21611") or response.status == 429:
            return RateLimited(
                f"Twilio is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if code == "21610":
            return OptedOut(f"recipient {message.to} opted out (replied STOP)", code=code)
        if code in ("21211", "21612", "21614", "21604"):
            reason = {
                "21211": "is not a valid phone number",
                "21612": "is not reachable",
                "21614": "is not a mobile number",
                "21604": "is missing",
            }[code]
            return InvalidRecipient(f"recipient {message.to} {reason}", code=code, field="to")
        if code in ("21212", "21606", "21603"):
            reason = {
                "21212": "is not a valid sender",
                "21606": "is not a number this account owns",
                "21603": "is missing",
            }[code]
            text = f"sender {self.sender_for(message)!r} {reason}"
            if own_sender:
                return InvalidMessage(text, code=code, field="sender")
            return ProviderUnavailable(
                f"{text}; fix the sender in the twilio:// URL", code=code, field="sender"
            )
        if code == "21408":
            return UnsupportedFeature(
                f"this Twilio account cannot send to {message.to}'s region", code=code
            )
        if code == "20005":
            return ProviderUnavailable("the Twilio account is not active", code=code)
        if code in ("21617", "21602", "21623", "21620", "21619"):
            return InvalidMessage(f"Twilio refused the message: {text}", code=code)
        return self.map_http_status(response, detail=text, code=code)

    # -- status, reconcile ------------------------------------------------------------------

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        response = await self.transport.request(
            HttpRequest("GET", f"{self._path}/{provider_message_id}.json", auth=self._auth)
        )
        data = self.read_lookup(response)
        return SendResult(
            id=provider_message_id,
            to=str(data.get("to", "")),
            status=STATUSES.get(str(data.get("status")), Status.UNKNOWN),
            provider=self.name,
            provider_message_id=data.get("sid"),
            segments=int(data["num_segments"]) if data.get("num_segments") else None,
            price=data.get("price"),
            price_unit=data.get("price_unit"),
            raw=data,
        )

    reconcile_page_size = 1000

    async def areconcile(
        self, message: Message, *, since: float | None = None
    ) -> SendResult | None:
        """Find an ambiguously sent message by recipient, sender and body.

        First every page (``next_page_uri``) of the messages to this recipient from this sender
        sent since ``since`` (``DateSent>``). A message Twilio took but has not sent yet has no
        ``date_sent`` and no ``DateSent`` filter lists it, so on a miss every page of the
        unfiltered list is read too. None ("Twilio has no record of it") only
        once the last page of both was read. A failed page, more than
        :attr:`reconcile_max_pages` pages, or no ``since`` raises :class:`AmbiguousSend`: a miss
        on a partial read is no proof, and the message stays unknown with that reason.
        """
        start = self.reconcile_window(since).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert since is not None  # reconcile_window refuses None
        params = {"To": message.to, "PageSize": str(self.reconcile_page_size)}
        sender = self.sender_for(message)
        if not sender.startswith("MG"):
            params["From"] = sender

        def ours(item: dict[str, Any]) -> bool:
            return item.get("body") == message.body and _created_since(
                item.get("date_created"), since
            )

        async for item in self._list_all({**params, "DateSent>": start}, message):
            if ours(item):
                return self._result_from_resource(message, item)
        # Every item, not only those without date_sent: one may have been sent between the two
        # reads, and would then be in neither.
        async for item in self._list_all(params, message):
            if ours(item):
                return self._result_from_resource(message, item)
        return None

    def _list_all(self, params: dict[str, str], message: Message) -> AsyncIterator[dict[str, Any]]:
        """Every message of a list query, page after page; raises unless the last page is read."""

        def next_page(body: dict[str, Any], _: HttpRequest) -> HttpRequest | None:
            return self.follow_link(body.get("next_page_uri"), body, auth=self._auth)

        return self.alist_all(
            HttpRequest("GET", f"{self._path}.json", params=params, auth=self._auth),
            items=lambda body: body.get("messages"),
            next_page=next_page,
            message=message,
        )

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        self._verify(request, None)

    def handle_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        # verify, then parse, reading the form once
        form = request.form()
        self._verify(request, form)
        return self._status_events(request, form)

    def _verify(self, request: WebhookRequest, form: list[tuple[str, str]] | None) -> None:
        """``form``: the request's form fields, if already read."""
        signature = request.header("X-Twilio-Signature")
        if not signature:
            raise WebhookVerificationError("missing X-Twilio-Signature header", provider=self.name)
        get = request.method.upper() == "GET"
        params = [] if get else form if form is not None else request.form()
        # the URL as called first: the variants cost more than the signature, and are rarely needed
        if constant_time_equal(twilio_signature(self._auth_token, request.url, params), signature):
            return
        candidates = url_variants(request.url)[1:]
        if self.public_url:
            candidates += url_variants(_rebase(request.url, self.public_url))
        for url in candidates:
            if constant_time_equal(twilio_signature(self._auth_token, url, params), signature):
                return
        raise WebhookVerificationError("X-Twilio-Signature does not match", provider=self.name)

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        return self._status_events(request, request.form())

    def _status_events(
        self, request: WebhookRequest, form: list[tuple[str, str]]
    ) -> list[DeliveryEvent]:
        sid = first(form, "MessageSid") or first(form, "SmsSid")
        status_text = first(form, "MessageStatus") or first(form, "SmsStatus")
        if not sid or not status_text:
            raise WebhookVerificationError(
                "not a Twilio status callback (no MessageSid/MessageStatus)", provider=self.name
            )
        code = first(form, "ErrorCode") or None
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=sid,
                status=STATUSES.get(status_text, Status.UNKNOWN),
                # Only signed content: the idempotency token header is not signed, so a replay
                # carrying a new one must still be the same event.
                event_id=request.signed_digest(form),
                occurred_at=_dlr_done(first(form, "RawDlrDoneDate")),
                message_id=first(request.query, "smsgate_id"),
                to=first(form, "To"),
                error_code=code,
                reason=DELIVERY_ERRORS.get(
                    code or "", status_text if code is None else f"error {code}"
                ),
                opted_out=code == "21610",
                raw=dict(form),
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        form = request.form()
        sid = first(form, "MessageSid") or first(form, "SmsMessageSid")
        sender = first(form, "From")
        if not sid or not sender:
            raise WebhookVerificationError(
                "not a Twilio inbound message (no MessageSid/From)", provider=self.name
            )
        count = int(first(form, "NumMedia") or 0)
        media = tuple(v for i in range(count) if (v := first(form, f"MediaUrl{i}")))
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=sid,
                sender=sender,
                to=first(form, "To") or "",
                body=first(form, "Body") or "",
                media=media,
                raw=dict(form),
            )
        ]


def _created_since(date_created: object, since: float) -> bool:
    """Whether a resource's RFC 2822 ``date_created`` is at or after ``since``.

    Twilio's dates have whole seconds, so a second of slack keeps a message created in the same
    second as our submit; an unreadable date is not trusted to be ours.
    """
    from email.utils import parsedate_to_datetime

    if not isinstance(date_created, str):
        return False
    try:
        parsed = parsedate_to_datetime(date_created)
    except (TypeError, ValueError):
        return False
    if parsed.tzinfo is None:  # "-0000" (RFC 2822: zone not given) is UTC, not local time
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() >= since - 1.0


def _rebase(url: str, public_url: str) -> str:
    """``url``'s path and query on ``public_url``'s scheme and host."""
    from urllib.parse import urlsplit, urlunsplit

    given, public = urlsplit(url), urlsplit(public_url)
    return urlunsplit((public.scheme, public.netloc, given.path, given.query, ""))


def _dlr_done(value: str | None) -> datetime | None:
    # RawDlrDoneDate is YYMMDDhhmm in UTC (years as strptime's %y reads them: 69-99 are 19xx).
    # Read by hand: strptime costs more than the rest of a status callback's parsing.
    if not value or len(value) != 10 or not value.isdigit():
        return None
    year = int(value[:2])
    try:
        return datetime(
            year + (2000 if year < 69 else 1900),
            int(value[2:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
