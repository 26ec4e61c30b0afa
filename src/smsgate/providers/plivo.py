"""Plivo Messages API (SMS and MMS).

``plivo://AUTH_ID:AUTH_TOKEN@+14155550100`` (or ``@POWERPACK_UUID`` to send from a Powerpack).
Options: ``base_url`` (an emulator), ``callback`` (the status URL; single sends add our id as
``smsgate_id``), ``public_url`` (the URL Plivo signs, when the server sits behind a proxy).

The wire contract, and what smsgate makes of it:

- ``POST /v1/Account/{auth_id}/Message/`` (the trailing slash matters), HTTP Basic, JSON ``src``,
  ``dst``, ``text``, ``type`` (``sms`` or ``mms``), ``media_urls``, ``url`` and ``method``.
- 202 ``{"api_id", "message": "message(s) queued", "message_uuid": [...]}``: one uuid per valid
  destination. ``send_many`` sends the recipients of one text as one request with ``dst`` joined
  by ``<`` (up to 1,000). Plivo drops repeated destinations and lists refused ones in
  ``invalid_number``; the uuids follow the accepted destinations in request order, which is how
  each recipient gets its id and its own result. A recipient who appears twice goes out in a
  second request, so each message is sent.
- Refusals are ``{"api_id", "error": "<sentence>"}`` with 400/401/404/429/500; Plivo has no
  error codes, so 400s are mapped by the words of the sentence and the HTTP status is the code.
- Plivo blocks opted-out recipients *after* accepting them: the send succeeds (the recipient gets
  a uuid) and the status callback says ``failed`` with ``ErrorCode`` 200, read as an event with
  ``opted_out=True``. A send never raises :class:`~smsgate.errors.OptedOut`; watch the receipts.
- Callbacks are form POSTs (one per destination and status) signed with ``X-Plivo-Signature-V3``:
  Base64(HMAC-SHA256(auth token, URL + ``?`` + sorted query + ``.`` + sorted POST params as
  name+value + ``.`` + nonce)); the header may carry several comma-separated signatures, any
  one of which may match.

- ``GET /v1/Account/{auth_id}/Message/?message_direction=outbound&message_time__gte=&limit=&offset=``
  lists messages (``{"meta": {"next", "total_count", ...}, "objects": [...]}``, at most 20 a
  page). It cannot filter by recipient, and a listed message carries neither its text nor any
  reference of ours, so reconcile reads every page since the first attempt and can prove a miss
  (no message from this sender to this recipient), but not a match: a message found to that
  recipient may be another one, so the send stays ambiguous.

Not supported: bulk MMS (media messages go one request each).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
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
    first,
    retry_after,
)
from smsgate.providers.signing import constant_time_equal, url_variants
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

logger = logging.getLogger("smsgate.providers.plivo")

URL_FORM = "plivo://AUTH_ID:TOKEN@+14155550100"
#: Plivo's documented limit of unique destinations in one ``<``-joined request
MAX_DESTINATIONS = 1000
#: the callback ErrorCode for a recipient who texted STOP
OPTED_OUT_CODE = "200"

STATUSES: dict[str, Status] = {
    "queued": Status.QUEUED,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "rejected": Status.REJECTED,
}

#: Callback ErrorCode values (Plivo's SMS error codes) with a readable reason.
DELIVERY_ERRORS: dict[str, str] = {
    "10": "invalid message",
    "20": "network error",
    "30": "spam detected",
    "40": "invalid source number",
    "50": "invalid destination number",
    "60": "loop detected",
    "70": "destination permanently unavailable",
    "80": "destination temporarily unavailable",
    "90": "no route available",
    "100": "prohibited by carrier",
    "110": "message too long",
    "200": "recipient opted out (STOP)",
    "300": "failed to dispatch message",
    "420": "message expired",
    "900": "insufficient credit",
    "910": "account disabled",
    "1000": "unknown error",
}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_OPTIONS = frozenset(
    {
        "log",
        "trackable",
        "message_expiry",
        "dlt_entity_id",
        "dlt_template_id",
        "dlt_template_category",
    }
)


def plivo_v3_signature(
    auth_token: str,
    url: str,
    nonce: str,
    params: Iterable[tuple[str, str]] = (),
    *,
    method: str = "POST",
) -> str:
    """``X-Plivo-Signature-V3`` for a callback to ``url`` carrying ``params``.

    GET callbacks carry their parameters in the URL; pass them there (or in ``params``).
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _grouped(parse_qsl(parts.query, keep_blank_values=True))
    body = _grouped(params)
    if method.upper() == "GET":
        for key, values in body.items():
            query.setdefault(key, []).extend(values)
        body = {}
    query_text = "&".join(f"{key}={value}" for key in sorted(query) for value in sorted(query[key]))
    if body:
        data = base + "?" + query_text + ("." if query_text else "")
        data += "".join(f"{key}{value}" for key in sorted(body) for value in sorted(body[key]))
    else:
        data = base + ("?" + query_text if query_text else "")
    return _sign_v3(auth_token, f"{data}.{nonce}".encode())


def plivo_v3_signatures(
    auth_token: str,
    url: str,
    nonce: str,
    params: Iterable[tuple[str, str]] = (),
    *,
    method: str = "POST",
) -> list[str]:
    """Every ``X-Plivo-Signature-V3`` Plivo's own libraries would accept for this callback.

    Plivo's SDKs disagree on non-ASCII text: plivo-node signs its UTF-8 once, plivo-python reads
    those bytes as Latin-1 and encodes them again. For text that is not ASCII both are offered,
    so an accented or emoji message verifies whichever way it was signed.
    """
    params = list(params)
    once = plivo_v3_signature(auth_token, url, nonce, params, method=method)
    texts = [url, nonce, *(part for pair in params for part in pair)]
    if all(text.isascii() for text in texts):
        return [once]
    twice = [(_latin1_view(k), _latin1_view(v)) for k, v in params]
    return [once, plivo_v3_signature(auth_token, _latin1_view(url), nonce, twice, method=method)]


def _latin1_view(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def _sign_v3(auth_token: str, data: bytes) -> str:
    digest = hmac.new(auth_token.encode(), data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class PlivoProvider(HttpProvider):
    scheme = "plivo"
    display_name = "Plivo"
    default_base_url = "https://api.plivo.com"
    bulk_batch_size = MAX_DESTINATIONS
    capabilities = Capabilities(
        mms=True,
        bulk=True,
        status_fetch=True,
        delivery_webhooks=True,
        webhook_verification="HMAC-SHA256 (X-Plivo-Signature-V3 + nonce)",
        inbound=True,
        idempotency="our id in the callback URL (single sends)",
        reconcile=True,
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("public_url", "url", "the URL Plivo signs, when the server is behind a proxy"),
    )
    emulator = "smsgate.emulators.plivo:PlivoEmulator"

    def __init__(
        self, *, auth_id: str, auth_token: str, public_url: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.auth_id = auth_id
        self._auth_token = auth_token
        self.public_url = public_url

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        return cls(
            name=name,
            auth_id=url.require("username", URL_FORM),
            auth_token=url.require("password", URL_FORM),
            sender=url.sender(),
            public_url=url.option("public_url"),
            **cls.common_options(url),
        )

    @property
    def _path(self) -> str:
        return f"/v1/Account/{self.auth_id}/Message/"

    @property
    def _auth(self) -> tuple[str, str]:
        return (self.auth_id, self._auth_token)

    def supported_options(self) -> frozenset[str]:
        return _OPTIONS

    # -- send -----------------------------------------------------------------------------

    def _payload(self, message: Message, dst: str, *, callback: str | None) -> dict[str, Any]:
        sender = self.sender_for(message)
        payload: dict[str, Any] = {"dst": dst, "text": message.body}
        if _UUID.match(sender):
            payload["powerpack_uuid"] = sender
        else:
            payload["src"] = _digits(sender) if _is_number(sender) else sender
        if message.media:
            payload["type"] = "mms"
            payload["media_urls"] = list(message.media)
        else:
            payload["type"] = "sms"
        if callback:
            payload["url"] = callback
            payload["method"] = "POST"
        payload.update(self.options_for(message))
        return payload

    def build_send_request(self, message: Message) -> HttpRequest:
        callback = None
        if self.status_callback:
            joiner = "&" if "?" in self.status_callback else "?"
            callback = f"{self.status_callback}{joiner}{urlencode({'smsgate_id': message.id})}"
        payload = self._payload(message, _digits(message.to), callback=callback)
        return HttpRequest("POST", self._path, json=payload, auth=self._auth)

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        dst = "<".join(_digits(m.to) for m in messages)
        payload = self._payload(messages[0], dst, callback=self.status_callback)
        return HttpRequest("POST", self._path, json=payload, auth=self._auth)

    async def asend_many(self, messages: Sequence[Message]) -> list[SendResult]:
        # Plivo keeps one copy of a destination repeated in a request, so the second message to
        # the same number (with the same text) goes in a later round, not silently unsent.
        rounds: list[list[int]] = []
        seen: dict[tuple[Any, ...], int] = {}
        for i, message in enumerate(messages):
            key = (self.bulk_key(message), _digits(message.to))
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(i)
        results: list[SendResult | None] = [None] * len(messages)
        for indexes in rounds:
            sent = await super().asend_many([messages[i] for i in indexes])
            for i, result in zip(indexes, sent, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        [result] = self.parse_bulk_response([message], response)
        if result.error is not None:
            raise result.error
        return result

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        body = response.json()
        refused = _refusals(body, self.name)
        uuids = [str(u) for u in body.get("message_uuid") or []]
        # Plivo keeps the first copy of a repeated destination, so each number counts once.
        accepted = list(
            dict.fromkeys(
                digits for digits in (_digits(m.to) for m in messages) if digits not in refused
            )
        )
        if len(uuids) != len(accepted):
            # Ids follow the accepted destinations in order; if the counts differ that order
            # cannot be trusted, and a wrong id is worse than none (callbacks still carry To).
            logger.warning(
                "%s: %d uuids for %d accepted destinations; ids left unset",
                self.name,
                len(uuids),
                len(accepted),
            )
            uuids = []
        ids = dict(zip(accepted, uuids, strict=False))
        results = []
        for message in messages:
            error = refused.get(_digits(message.to))
            if error is not None:
                results.append(self.failed_result(message, error))
                continue
            results.append(
                self.result(
                    message,
                    status=Status.QUEUED,
                    provider_message_id=ids.get(_digits(message.to)),
                    raw=body,
                )
            )
        return results

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        refused = _refusals(body, self.name)
        if refused:
            return refused.get(_digits(message.to)) or next(iter(refused.values()))
        text = str(body.get("error") or "") if isinstance(body, dict) else response.text[:200]
        code = str(response.status)
        words = text.lower()
        if response.status == 401:
            return AuthError(
                "Plivo refused the auth ID or auth token in the plivo:// URL", code=code
            )
        if response.status == 404:
            return AuthError(
                f"Plivo has no account {self.auth_id!r} at this path: {text}; check "
                "the auth ID in the plivo:// URL",
                code=code,
            )
        if response.status == 429:
            return RateLimited(
                f"Plivo is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if response.status in (400, 402, 403):
            if any(w in words for w in ("credit", "balance", "insufficient")):
                return InsufficientFunds(
                    f"the Plivo account has too little credit: {text}", code=code
                )
            if "src" in words or "powerpack" in words or "source" in words:
                reason = f"Plivo refused the sender {self.sender_for(message)!r}: {text}"
                return self.sender_refused(message, reason, code=code)
            if "dst" in words or "destination" in words:
                return InvalidRecipient(
                    f"Plivo refused recipient {message.to}: {text}", code=code, field="to"
                )
            return InvalidMessage(f"Plivo refused the message: {text}", code=code)
        return self.map_http_status(response, detail=text or None, code=code)

    # -- status -----------------------------------------------------------------------------

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        response = await self.transport.request(
            HttpRequest("GET", f"{self._path}{provider_message_id}/", auth=self._auth)
        )
        if response.status == 404:
            raise InvalidMessage(
                f"Plivo has no message {provider_message_id}",
                code="404",
                provider=self.name,
                raw=response.json(),
            )
        if response.status >= 400:
            raise self._error_from_fetch(response)
        data = self.read_lookup(response)
        units = str(data.get("units") or "")
        return SendResult(
            id=provider_message_id,
            to=_plus(str(data.get("to_number") or "")),
            status=STATUSES.get(str(data.get("message_state")), Status.UNKNOWN),
            provider=self.name,
            provider_message_id=data.get("message_uuid") or provider_message_id,
            segments=int(units) if units.isdigit() else None,
            price=data.get("total_amount"),
            price_unit="USD",
            raw=data,
        )

    #: Plivo lists 20 messages a page and cannot filter by recipient: a busy window takes more
    reconcile_max_pages = 250
    reconcile_page_size = 20

    async def areconcile(
        self, message: Message, *, since: float | None = None
    ) -> SendResult | None:
        """Prove that an ambiguous send never reached Plivo, or say that it cannot.

        Reads every page (``meta.next``) of the outbound messages since ``since``. None when
        none of them went from this sender to this recipient; :class:`AmbiguousSend` when one
        did (Plivo's list carries no text or reference to tell whether it is this message) or
        when the read was incomplete.
        """
        start = self.reconcile_window(since).strftime("%Y-%m-%d %H:%M:%S")
        params = {
            "message_direction": "outbound",
            "message_time__gte": start,
            "limit": str(self.reconcile_page_size),
            "offset": "0",
        }

        def next_page(body: dict[str, Any], _: HttpRequest) -> HttpRequest | None:
            meta = body.get("meta")
            link = meta.get("next") if isinstance(meta, dict) else None
            return self.follow_link(link, body, auth=self._auth)

        to, sender = _digits(message.to), self.sender_for(message)
        candidates = [
            item
            async for item in self.alist_all(
                HttpRequest("GET", self._path, params=params, auth=self._auth),
                items=lambda body: body.get("objects"),
                next_page=next_page,
                message=message,
            )
            if _digits(str(item.get("to_number") or "")) == to
            and _same_sender(str(item.get("from_number") or ""), sender)
        ]
        if candidates:
            raise AmbiguousSend(
                f"Plivo lists {len(candidates)} message(s) from {sender} to {message.to} since "
                "the first attempt, and cannot tell whether one is this message: its list "
                "carries neither the text nor a reference of ours",
                provider=self.name,
                raw=candidates,
            )
        return None

    def _error_from_fetch(self, response: HttpResponse) -> SmsgateError:
        body = response.json()
        error = self.map_http_status(
            response,
            detail=str(body.get("error") or "") if isinstance(body, dict) else None,
            code=str(response.status),
        )
        error.provider, error.raw = self.name, body
        return error

    # -- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        header = request.header("X-Plivo-Signature-V3")
        nonce = request.header("X-Plivo-Signature-V3-Nonce")
        if not header or not nonce:
            raise WebhookVerificationError(
                "missing X-Plivo-Signature-V3 or X-Plivo-Signature-V3-Nonce header",
                provider=self.name,
            )
        given = [s.strip() for s in header.split(",") if s.strip()]
        method = request.method.upper()
        params = [] if method == "GET" else request.form()
        candidates = url_variants(request.url)
        if self.public_url:
            candidates += url_variants(_rebase(request.url, self.public_url))
        for url in candidates:
            for expected in plivo_v3_signatures(
                self._auth_token, url, nonce, params, method=method
            ):
                # Compare against every offered signature so the time taken says nothing of which.
                if sum(constant_time_equal(expected, signature) for signature in given):
                    return
        raise WebhookVerificationError("X-Plivo-Signature-V3 does not match", provider=self.name)

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        form = request.form()
        uuid = first(form, "MessageUUID")
        status_text = first(form, "Status")
        if not uuid or not status_text:
            raise WebhookVerificationError(
                "not a Plivo status callback (no MessageUUID/Status)", provider=self.name
            )
        status = STATUSES.get(status_text.lower(), Status.UNKNOWN)
        code = first(form, "ErrorCode") or None
        if code == "000":
            code = None
        units = first(form, "Units") or ""
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=uuid,
                status=status,
                event_id=request.signed_digest(form),
                occurred_at=_plivo_time(first(form, "MessageTime")),
                message_id=first(request.query, "smsgate_id"),
                to=_plus(first(form, "To") or "") or None,
                error_code=code,
                reason=DELIVERY_ERRORS.get(code, f"error {code}") if code else status_text,
                opted_out=code == OPTED_OUT_CODE,
                parts=int(units) if units.isdigit() else None,
                raw=dict(form),
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        form = request.form()
        uuid = first(form, "MessageUUID")
        sender = first(form, "From")
        if not uuid or not sender:
            raise WebhookVerificationError(
                "not a Plivo inbound message (no MessageUUID/From)", provider=self.name
            )
        # Plivo's API reference numbers inbound media Media1..MediaN and puts an MMS's text in
        # Body; an older support article shows Media0 and every SMS carries Text: read both.
        count = first(form, "MediaCount") or ""
        last = int(count) if count.isdigit() else 10
        media = [url for i in range(last + 1) if (url := first(form, f"Media{i}"))]
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=uuid,
                sender=_plus(sender),
                to=_plus(first(form, "To") or ""),
                body=first(form, "Text") or first(form, "Body") or "",
                media=tuple(media),
                received_at=_plivo_time(first(form, "MessageTime")),
                raw=dict(form),
            )
        ]


def _refusals(body: Any, provider: str) -> dict[str, SmsgateError]:
    """Destinations a 2xx (or 400) answer refused, by their digits."""
    if not isinstance(body, dict):
        return {}
    refused: dict[str, SmsgateError] = {}
    for number in body.get("invalid_number") or []:
        refused[_digits(str(number))] = InvalidRecipient(
            f"Plivo refused recipient {number} as an invalid destination number",
            code="invalid_number",
            field="to",
            provider=provider,
            raw=body,
        )
    return refused


def _grouped(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def _same_sender(listed: str, sender: str) -> bool:
    """Whether a listed ``from_number`` is our sender (a Powerpack sends from its numbers, so any
    number counts then)."""
    return not _is_number(sender) or _digits(listed) == _digits(sender)


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def _is_number(sender: str) -> bool:
    return bool(re.fullmatch(r"\+?[\d\s().-]+", sender))


def _plus(number: str) -> str:
    return f"+{number}" if number.isdigit() else number


def _rebase(url: str, public_url: str) -> str:
    given, public = urlsplit(url), urlsplit(public_url)
    return urlunsplit((public.scheme, public.netloc, given.path, given.query, ""))


def _plivo_time(value: str | None) -> datetime | None:
    # MessageTime is "YYYY-MM-DD HH:MM:SS" in UTC, sometimes with "+00:00" or fractions.
    if not value:
        return None
    text = value.strip().replace("T", " ")[:19]
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
