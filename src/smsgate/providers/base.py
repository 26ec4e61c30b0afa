"""The provider base: one template method owns the send pipeline; providers fill in small hooks.

Modelled on django-anymail's ``AnymailBaseBackend``. The base checks features before any I/O,
builds and posts the request through a shared keep-alive transport, maps every failure into the
error taxonomy (keeping the provider's code and raw body), fills segment counts from our own
encoder when the provider does not report them, and logs without secrets. It alone decides
whether a send was accepted: only a 2xx whose body parses in the provider's format and carries
the provider's message id counts; a redirect is never followed (a configuration error naming the
``Location``); any other 2xx is ``AmbiguousSend`` keeping the raw answer. A lookup
(``areconcile``) concludes "not sent" only after reading every page of the window since the
first attempt, and raises ``AmbiguousSend`` when it could not. A provider module writes only what
is specific to it:

- ``from_url``: read credentials and options from ``scheme://credentials@sender?options``;
- ``build_send_request`` / ``parse_send_response``: the wire format of one send;
- ``map_error_response``: the provider's error bodies into the taxonomy;
- optionally ``build_bulk_request``/``parse_bulk_response`` (and ``bulk_fallback``),
  ``afetch_status``, ``areconcile``;
- webhooks: ``verify_webhook``, ``parse_status_webhook``, ``parse_inbound_webhook``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InvalidMessage,
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
    Message,
    SendResult,
    Status,
    accepted_result,
)
from smsgate.providers.transport import (
    TRANSPORT_OPTIONS,
    HttpRequest,
    HttpResponse,
    HttpTransport,
    Limits,
    Timeout,
    TransportOptions,
    validate_base_url,
)
from smsgate.providers.url import ProviderURL
from smsgate.redact import redact_url

logger = logging.getLogger("smsgate.providers")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do; the docs' provider table is generated from these."""

    sms: bool = True
    mms: bool = False
    #: a native bulk endpoint (one request for many recipients)
    bulk: bool = False
    status_fetch: bool = False
    delivery_webhooks: bool = False
    #: how webhooks are authenticated, e.g. "HMAC-SHA1 (X-Twilio-Signature)"
    webhook_verification: str | None = None
    inbound: bool = False
    #: how our id reaches the provider ("Idempotency-Key header", "client-ref"), if at all
    idempotency: str | None = None
    #: the provider drops a repeated request carrying the same key (safe to resend on ambiguity)
    dedupes: bool = False
    #: the provider can find a message without its id (list by recipient and time)
    reconcile: bool = False
    hlr: bool = False
    url_form: str = ""


@dataclass(frozen=True, slots=True)
class UrlOption:
    """One ``?name=value`` a provider URL takes: the registry refuses any other, and the docs,
    the CLI help and redaction are written from these."""

    name: str
    #: "text", "url", "number", "flag" (true/false) or "secret" (never shown)
    kind: str
    doc: str

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


#: options every provider URL takes
def _transport_kind(name: str) -> str:
    if name == "proxy":
        return "secret"  # it may carry the proxy's user and password
    if name in ("ca_file", "client_cert", "client_key"):
        return "text"
    return "number"


COMMON_URL_OPTIONS = (
    UrlOption("from", "text", "the sender, for a URL with none after '@'"),
    # The transport's, as it documents them.
    *(UrlOption(name, _transport_kind(name), doc) for name, doc in TRANSPORT_OPTIONS.items()),
)
#: options every HTTP provider URL takes as well
HTTP_URL_OPTIONS = (
    UrlOption("base_url", "url", "the API's address instead of the provider's (an emulator)"),
    UrlOption("callback", "url", "where delivery receipts go; our message id is added to it"),
    UrlOption("status_callback", "url", "the same as callback"),
)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What a webhook endpoint received, framework-neutral: verify and parse work on this."""

    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.url.partition("?")[2], keep_blank_values=True)

    def form(self) -> list[tuple[str, str]]:
        """Form fields (POST body) or, for GET webhooks, the query parameters."""
        if self.method.upper() == "GET":
            return self.query
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError("webhook body is not UTF-8") from None
        return parse_qsl(text, keep_blank_values=True)

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            raise WebhookVerificationError("webhook body is not valid JSON") from None

    def event_digest(self) -> str:
        """A stable id for a payload when the provider sends none (dedupes exact replays)."""
        return hashlib.sha256(self.body or self.url.encode()).hexdigest()[:32]

    def signed_digest(self, params: Iterable[tuple[str, str]]) -> str:
        """An event id from what a form-signing provider signs: the query and the parameters,
        sorted (their order is not signed), and nothing from the headers.

        A replay is then recognised whatever unsigned header (Twilio's
        ``I-Twilio-Idempotency-Token``) or parameter order it carries, and a forged variant of
        the signed content cannot pass the signature check in the first place.
        """
        digest = hashlib.sha256(self.url.partition("?")[2].encode())
        for name, value in sorted(params):
            digest.update(b"\0%s\0%s" % (name.encode(), value.encode()))
        return digest.hexdigest()[:32]


class EventSink(Protocol):
    """Where a provider that receives events on its own connection (SMPP's deliver_sm) hands
    them, instead of a webhook: the server records them as it records webhook receipts and
    inbound messages. Each call returns once the events are durable; raising means they were
    not taken (the provider then leaves them with the provider to deliver again)."""

    async def delivery(self, provider: Provider, events: Sequence[DeliveryEvent]) -> None: ...

    async def inbound(self, provider: Provider, messages: Sequence[InboundMessage]) -> None: ...


@runtime_checkable
class PartSink(Protocol):
    """An :class:`EventSink` that also keeps the receipt of one part of a long message before
    the provider has the receipts of them all (the server: so a restart between the parts'
    receipts loses none; see docs/smpp.md). Other sinks get only the folded event."""

    async def part_delivery(self, provider: Provider, event: DeliveryEvent) -> None: ...


class Provider(ABC):
    """Base of every provider. Subclasses set the class attributes and fill in the hooks.

    The class attributes are the provider's descriptor: the registry, option checking, the
    emulator list, redaction, the CLI help and docs/providers.md are derived from them.
    """

    scheme: ClassVar[str]
    display_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: the options this provider's URL takes besides the common ones
    url_options: ClassVar[tuple[UrlOption, ...]] = ()
    #: whether the URL's user part is itself a secret (an API key), not an account name
    secret_username: ClassVar[bool] = False
    #: where this provider's emulator lives, "module:Class"; ``smsgate emulate SCHEME`` runs it
    #: and the emulator list is read from here
    emulator: ClassVar[str | None] = None
    default_base_url: ClassVar[str] = ""
    #: the most recipients one bulk request may carry
    bulk_batch_size: ClassVar[int] = 100

    def __init__(
        self,
        *,
        name: str | None = None,
        sender: str | None = None,
        base_url: str | None = None,
        status_callback: str | None = None,
        timeout: Timeout | None = None,
        limits: Limits | None = None,
        transport_options: TransportOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name or self.scheme
        self.sender = sender
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.status_callback = status_callback
        options = transport_options or TransportOptions()
        self.timeout = timeout or options.timeout
        self.limits = limits or options.limits
        #: proxy, TLS trust, timeouts and limits of this provider's HTTP requests
        self.transport_options = dataclasses.replace(
            options, timeout=self.timeout, limits=self.limits
        )
        self.clock = clock

    # -- construction -------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        """Build the provider from a parsed ``scheme://credentials@sender?options`` URL."""

    @classmethod
    def declared_options(cls) -> dict[str, UrlOption]:
        """Every option this provider's URL takes, by name."""
        return {option.name: option for option in (*COMMON_URL_OPTIONS, *cls.url_options)}

    @classmethod
    def common_options(cls, url: ProviderURL) -> dict[str, Any]:
        """Options every provider URL takes: the transport's (``TRANSPORT_OPTIONS``: timeouts,
        concurrency, proxy, TLS trust)."""
        transport = TransportOptions.from_query(url.options)
        url.read.update(TRANSPORT_OPTIONS)  # from_query reads them all
        return {
            "timeout": transport.timeout,
            "limits": transport.limits,
            "transport_options": transport,
        }

    def __repr__(self) -> str:
        # Credentials are never part of the repr, nor a base_url's query (it may hold a key).
        return (
            f"{type(self).__name__}(name={self.name!r}, sender={self.sender!r}, "
            f"base_url={redact_url(self.base_url)!r})"
        )

    # -- the send pipeline (template methods) -------------------------------------------------

    async def asend(self, message: Message) -> SendResult:
        """Send one message; raise a :class:`~smsgate.errors.SmsgateError` on failure."""
        self.check_features(message)
        return await self.deliver(message)

    @abstractmethod
    async def deliver(self, message: Message) -> SendResult:
        """Hand one checked message to the provider (HTTP, SMTP, ...)."""

    async def asend_many(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send many; results in input order; one recipient's failure never raises.

        Uses the provider's bulk endpoint when it has one and the messages share a body, else
        concurrent single sends over the keep-alive pool.
        """
        results: list[SendResult | None] = [None] * len(messages)
        singles: list[int] = []
        if self.capabilities.bulk:
            for indexes in self._bulk_groups(messages):
                if len(indexes) == 1:
                    singles.extend(indexes)
                    continue
                group = [messages[i] for i in indexes]
                for i, result in zip(indexes, await self._send_bulk_group(group), strict=True):
                    results[i] = result
        else:
            singles = list(range(len(messages)))
        await self._send_concurrently(messages, singles, results)
        return [r for r in results if r is not None]

    async def _send_concurrently(
        self, messages: Sequence[Message], indexes: list[int], results: list[SendResult | None]
    ) -> None:
        # A fixed pool of workers pulling from one iterator costs less than a task per message.
        pending = iter(indexes)

        async def work() -> None:
            for i in pending:
                results[i] = await self.asend_result(messages[i])

        workers = min(self.limits.max_connections, len(indexes))
        await asyncio.gather(*(work() for _ in range(workers)))

    async def asend_result(self, message: Message) -> SendResult:
        """Like :meth:`asend` but returns a failed :class:`SendResult` instead of raising."""
        try:
            return await self.asend(message)
        except SmsgateError as exc:
            return self.failed_result(message, exc)

    def failed_result(self, message: Message, error: SmsgateError) -> SendResult:
        status = Status.UNKNOWN if isinstance(error, AmbiguousSend) else Status.FAILED
        if not error.retryable and not error.failover and not isinstance(error, AmbiguousSend):
            status = Status.REJECTED
        return SendResult(
            id=message.id,
            to=message.to,
            status=status,
            provider=self.name,
            error=error,
            raw=error.raw,
        )

    def _bulk_groups(self, messages: Sequence[Message]) -> Iterable[list[int]]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, message in enumerate(messages):
            key = self.bulk_key(message)
            if key is None:
                groups[("single", i)] = [i]
                continue
            bucket = groups.setdefault(key, [])
            bucket.append(i)
            if len(bucket) >= self.bulk_batch_size:
                groups[(*key, "batch", i)] = groups.pop(key)
        return groups.values()

    def bulk_key(self, message: Message) -> tuple[Any, ...] | None:
        """Messages with equal keys may share one bulk request; None sends it alone."""
        if message.media or message.send_at or message.provider_options:
            return None
        return (message.body, message.sender or self.sender, message.purpose, message.validity)

    async def _send_bulk_group(self, group: list[Message]) -> list[SendResult]:
        try:
            # Inside the try: a refusal before any I/O is each recipient's result, not a raise.
            for message in group:
                self.check_features(message)
            return await self.deliver_bulk(group)
        except SmsgateError as exc:
            # After an ambiguous failure part of the group may have gone out: never resend it.
            if (
                len(group) > 1
                and not isinstance(exc, AmbiguousSend)
                and self.bulk_fallback(exc, group)
            ):
                results: list[SendResult | None] = [None] * len(group)
                await self._send_concurrently(group, list(range(len(group))), results)
                return [r for r in results if r is not None]
            return [self.failed_result(message, exc) for message in group]

    # -- hooks a provider fills in ------------------------------------------------------------

    def check_features(self, message: Message) -> None:
        """Refuse, before any I/O, what this provider cannot send."""
        if message.media and not self.capabilities.mms:
            raise UnsupportedFeature(
                f"{self.display_name} cannot send MMS; drop the media or route to an MMS provider",
                provider=self.name,
                field="media",
            )
        if not message.body and not message.media:
            raise InvalidMessage("body is empty", provider=self.name, field="body")
        if not (message.sender or self.sender):
            raise InvalidMessage(
                f"no sender: set one in the {self.scheme}:// URL (…@SENDER) or on the message",
                provider=self.name,
                field="sender",
            )
        if not message.provider_options:
            return  # what every send without options would find below, spared the calls
        for option in self.options_for(message):
            if option not in self.supported_options():
                raise UnsupportedFeature(
                    f"{self.display_name} does not take provider option {option!r}; "
                    f"it takes: {', '.join(sorted(self.supported_options())) or 'none'}",
                    provider=self.name,
                    field="provider_options",
                )

    def options_for(self, message: Message) -> dict[str, Any]:
        """The message's provider options that apply to this provider.

        Flat keys apply to every provider; a key naming a provider scheme holds options for that
        provider only (``{"smtp": {"carrier": "verizon"}}``), so one message can carry options
        for each provider of a failover chain without the others refusing them.
        """
        if not message.provider_options:
            return {}  # the common case, on every send: skip the import and the copy
        from smsgate.providers import PROVIDERS

        options = {k: v for k, v in message.provider_options.items() if k not in PROVIDERS}
        scoped = message.provider_options.get(self.scheme)
        if isinstance(scoped, Mapping):
            options.update(scoped)
        return options

    def supported_options(self) -> frozenset[str]:
        """Names accepted in ``Message.provider_options`` (passed through to the request)."""
        return frozenset()

    async def deliver_bulk(self, group: list[Message]) -> list[SendResult]:
        """Send one group of same-body messages in one request (providers with ``bulk``)."""
        raise UnsupportedFeature(f"{self.display_name} has no bulk endpoint", provider=self.name)

    def bulk_fallback(self, error: SmsgateError, group: Sequence[Message]) -> bool:
        """Whether to send ``group`` again one message at a time after its bulk request failed.

        Called when the whole bulk request for ``group`` failed with ``error`` (an error response,
        or a refusal before any I/O). Return True only when ``error`` proves that nothing in the
        group was sent and that single sends may fare differently, e.g. a provider that refuses a
        whole list because of one bad number: each message is then sent on its own and gets its
        own result. Never consulted for :class:`~smsgate.errors.AmbiguousSend` (part of the group
        may have gone out; resending would duplicate it). The default, False, fails every message
        of the group with ``error``.
        """
        return False

    async def afetch_status(self, provider_message_id: str) -> SendResult:
        """Ask the provider where a message is now."""
        raise UnsupportedFeature(f"{self.display_name} has no status lookup", provider=self.name)

    async def areconcile(
        self, message: Message, *, since: float | None = None
    ) -> SendResult | None:
        """Find a message whose send was ambiguous; None when the provider has no record of it.

        ``since`` (epoch seconds) is when the message was stored: nothing the provider created
        before then can be it, which keeps an older identical text from being taken for it.
        None is a claim of absence: return it only after every page of the window was read
        (:meth:`alist_all`), and raise :class:`AmbiguousSend` when that could not be done.
        """
        raise UnsupportedFeature(
            f"{self.display_name} cannot look a message up without its id", provider=self.name
        )

    # -- webhooks -----------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Raise :class:`WebhookVerificationError` unless the request is authentic."""
        raise UnsupportedFeature(
            f"{self.display_name} webhooks are not supported", provider=self.name
        )

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        raise UnsupportedFeature(
            f"{self.display_name} sends no delivery webhooks", provider=self.name
        )

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        raise UnsupportedFeature(
            f"{self.display_name} sends no inbound webhooks", provider=self.name
        )

    def handle_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        """Verify, then parse: the one call a webhook endpoint makes."""
        self.verify_webhook(request)
        return self.parse_status_webhook(request)

    def handle_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        self.verify_webhook(request)
        return self.parse_inbound_webhook(request)

    # -- helpers for provider modules ---------------------------------------------------------

    def sender_for(self, message: Message) -> str:
        return message.sender or self.sender or ""

    def sender_refused(
        self, message: Message, reason: str, *, code: Any = None, fix: str | None = None
    ) -> SmsgateError:
        """The error for a sender the provider refused, blamed on whoever chose it.

        A sender set on the message is the caller's mistake (:class:`InvalidMessage`); the URL's
        sender is this provider's configuration and wrong for every message, so the error is
        :class:`ProviderUnavailable` (the gateway fails over) and says how to fix the URL.
        """
        if message.sender is not None:
            return InvalidMessage(reason, code=code, field="sender")
        fix = fix or f"fix the sender in the {self.scheme}:// URL"
        return ProviderUnavailable(f"{reason}; {fix}", code=code, field="sender")

    def result(
        self,
        message: Message,
        *,
        status: Status,
        provider_message_id: str | None,
        raw: Any,
        segments: int | None = None,
        price: str | None = None,
        price_unit: str | None = None,
    ) -> SendResult:
        """A successful result; segments and encoding default to our encoder's count."""
        encoding: str | None = None
        if message.body:
            encoding, parts = (_count_parts or _load_count_parts())(message.body)
            if segments is None:
                segments = parts
        return accepted_result(
            id=message.id,
            to=message.to,
            status=status,
            provider=self.name,
            provider_message_id=provider_message_id,
            segments=segments,
            encoding=encoding,
            price=price,
            price_unit=price_unit,
            raw=raw,
        )

    async def alisten(self, sink: EventSink) -> None:  # noqa: B027 - an optional hook
        """Start handing receipts and inbound messages that arrive outside webhooks to ``sink``.

        Webhook providers receive nothing this way and ignore it; a provider holding its own
        connection (SMPP) overrides it.
        """

    def message_id_forms(self, provider_message_id: str) -> list[str]:
        """The forms in which a receipt may quote an id this provider gave (SMPP's SMSCs turn
        hex into decimal); where a receipt is matched to a part it sent (docs/smpp.md)."""
        return [provider_message_id]

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release connections; providers holding any override this."""


class HttpProvider(Provider):
    """A provider spoken to over HTTP: fill in the request and response hooks.

    ``deliver`` posts ``build_send_request`` through one keep-alive transport and maps failures
    with ``map_error_response``; ``deliver_bulk`` does the same with the bulk hooks.
    """

    @classmethod
    def declared_options(cls) -> dict[str, UrlOption]:
        return {**super().declared_options(), **{o.name: o for o in HTTP_URL_OPTIONS}}

    @classmethod
    def common_options(cls, url: ProviderURL) -> dict[str, Any]:
        """Options every HTTP provider URL takes: base_url, callback, timeouts, concurrency."""
        return {
            **super().common_options(url),
            "base_url": url.option("base_url"),
            "status_callback": url.first_option("callback", "status_callback"),
        }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Checked now, not when the transport is built on the first send: a wrong ?base_url=
        # fails where the provider is configured.
        validate_base_url(self.base_url)
        self._transport: HttpTransport | None = None

    @property
    def transport(self) -> HttpTransport:
        if self._transport is None:
            self._transport = HttpTransport(
                self.base_url, provider=self.name, options=self.transport_options
            )
        return self._transport

    async def deliver(self, message: Message) -> SendResult:
        response = await self.transport.request(self.build_send_request(message))
        self.check_answer(response, message)
        try:
            result = self.parse_send_response(message, response)
        except _SHAPE_ERRORS as exc:
            raise self.unproven(
                response, f"an answer {self.display_name} never gives ({exc!r})"
            ) from None
        return self.proven(result, response)

    async def deliver_bulk(self, group: list[Message]) -> list[SendResult]:
        response = await self.transport.request(self.build_bulk_request(group))
        self.check_answer(response, group[0], recipients=len(group))
        try:
            results = self.parse_bulk_response(group, response)
        except _SHAPE_ERRORS as exc:
            raise self.unproven(
                response, f"an answer {self.display_name} never gives ({exc!r})"
            ) from None
        return [
            r if r.error is not None else self._proven_or_failed(m, r, response)
            for m, r in zip(group, results, strict=True)
        ]

    # -- proof of acceptance: decided here once, for every HTTP provider ------------------------

    def check_answer(
        self, response: HttpResponse, message: Message, *, recipients: int = 1
    ) -> None:
        """Raise unless ``response`` is a 2xx in the provider's format that does not say "error".

        A 3xx is never followed: it means ``base_url`` points at the wrong place (a proxy, a
        login page, http for https), so it is a configuration error naming the ``Location``; the
        request did not reach the API, which is why it is not ambiguous. A 4xx/5xx, or a 2xx
        whose body says it failed (:meth:`is_error_response`), goes through
        :meth:`map_error_response`. A 2xx whose body is not in the provider's format (an HTML
        page, a truncated body) is :class:`AmbiguousSend`: something took the request, and it
        may have been sent.
        """
        status = response.status
        if 300 <= status < 400:
            location = response.headers.get("Location")
            where = f"to {redact_url(location)}" if location else "without a Location"
            raise ProviderUnavailable(
                f"{self.display_name} answered HTTP {status}, a redirect {where}; redirects are "
                f"never followed, so nothing was sent: fix base_url in the {self.scheme}:// URL",
                provider=self.name,
                code=str(status),
                field="base_url",
                raw=_raw_text(response),
            )
        if status >= 400:
            raise self._error_from(response, message, recipients=recipients)
        if status < 200:
            raise self.unproven(response, f"HTTP {status}, not a final answer")
        if self.answer_body(response) is None:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise self.unproven(
                response, f"a body that is not {self.answer_format} ({kind.split(';')[0]})"
            )
        if self.is_error_response(response):
            raise self._error_from(response, message, recipients=recipients)

    #: what :meth:`answer_body` reads; named in errors
    answer_format: ClassVar[str] = "a JSON object"

    def answer_body(self, response: HttpResponse) -> Any:
        """The answer parsed in the provider's format, or None when it is not in it."""
        body = response.json()
        return body if isinstance(body, dict) else None

    def unproven(self, response: HttpResponse, what: str) -> AmbiguousSend:
        """The error for a 2xx that does not prove acceptance: the request may have taken effect."""
        return AmbiguousSend(
            f"{self.display_name} answered HTTP {response.status} with {what}; the message may "
            "have been accepted, so it is not counted as sent",
            provider=self.name,
            code=str(response.status),
            raw=_raw_text(response) if self.answer_body(response) is None else response.json(),
        )

    def proven(self, result: SendResult, response: HttpResponse) -> SendResult:
        """``result`` if it carries the provider's message id, else :class:`AmbiguousSend`."""
        if not result.provider_message_id:
            raise self.unproven(response, "no message id")
        return result

    def _proven_or_failed(
        self, message: Message, result: SendResult, response: HttpResponse
    ) -> SendResult:
        try:
            return self.proven(result, response)
        except AmbiguousSend as exc:
            return self.failed_result(message, exc)

    def _error_from(
        self, response: HttpResponse, message: Message, *, recipients: int = 1
    ) -> SmsgateError:
        error = self.map_error_response(response, message)
        if error.provider is None:
            error.provider = self.name
        if error.raw is None:
            error.raw = response.json() if response.json() is not None else _raw_text(response)
        return error

    def read_lookup(self, response: HttpResponse) -> dict[str, Any]:
        """The JSON object of a status or list lookup, or raise what the answer means.

        Used by ``afetch_status`` and ``areconcile``: a redirect, an error status or a body that
        is not the provider's format never reads as "no such message".
        """
        status = response.status
        if 300 <= status < 400 or status < 200:
            raise ProviderUnavailable(
                f"{self.display_name} answered a lookup with HTTP {status}"
                + (
                    f" to {redact_url(response.headers['Location'])}"
                    if response.headers.get("Location")
                    else ""
                )
                + f"; redirects are never followed: fix base_url in the {self.scheme}:// URL",
                provider=self.name,
                code=str(status),
                raw=_raw_text(response),
            )
        if status >= 400:
            error = self.map_http_status(response)
            error.provider, error.raw = self.name, response.json() or _raw_text(response)
            raise error
        body = self.answer_body(response)
        if body is None:
            raise ProviderUnavailable(
                f"{self.display_name} answered a lookup with a body that is not "
                f"{self.answer_format}",
                provider=self.name,
                code=str(status),
                raw=_raw_text(response),
            )
        return dict(body)

    #: the most list pages one lookup reads before it gives up
    reconcile_max_pages: int = 50
    #: records asked for per list page (the provider's largest page)
    reconcile_page_size: int = 100

    def reconcile_window(self, since: float | None) -> datetime:
        """Where a lookup's window starts: a second before ``since`` (providers' list dates have
        whole seconds). Without ``since`` no window can be bounded, so no miss could be proof."""
        if since is None:
            raise AmbiguousSend(
                "cannot look the message up: no time of the first attempt to bound the search",
                provider=self.name,
            )
        return datetime.fromtimestamp(int(since) - 1, UTC)

    def follow_link(
        self, link: object, body: dict[str, Any], *, auth: tuple[str, str] | None = None
    ) -> HttpRequest | None:
        """The request for a list page's link to the next one (a path on the API host); None
        when there is none. Any other link cannot be read, so the search could not finish."""
        if not link:
            return None
        if not isinstance(link, str) or not link.startswith("/"):
            raise AmbiguousSend(
                f"{self.display_name}'s list links to an unreadable next page ({link!r}); a "
                "partial search proves nothing",
                provider=self.name,
                raw=body,
            )
        return HttpRequest("GET", link, auth=auth)

    async def alist_all(
        self,
        request: HttpRequest,
        *,
        items: Callable[[dict[str, Any]], object],
        next_page: Callable[[dict[str, Any], HttpRequest], HttpRequest | None],
        message: Message,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of a list lookup for ``areconcile``, page after page.

        ``items`` picks a page's records (a list, or the page is not the provider's format);
        ``next_page`` gives the request for the following page, None after the last. Raises
        :class:`AmbiguousSend` unless the last page was read: a failed or unreadable page, or
        more than :attr:`reconcile_max_pages` pages. A miss on a partial read proves nothing.
        """
        for page in range(1, self.reconcile_max_pages + 1):
            try:
                body = self.read_lookup(await self.transport.request(request))
            except SmsgateError as exc:
                raise AmbiguousSend(
                    f"looking the message up at {self.display_name} failed at list page {page} "
                    f"({exc}); a partial search proves nothing",
                    provider=self.name,
                    raw=exc.raw,
                ) from None
            records = items(body)
            if not isinstance(records, list):
                raise AmbiguousSend(
                    f"{self.display_name}'s list page {page} has no list of messages; a partial "
                    "search proves nothing",
                    provider=self.name,
                    raw=body,
                )
            for record in records:
                if isinstance(record, dict):
                    yield record
            following = next_page(body, request)
            if following is None:
                return
            request = following
        raise AmbiguousSend(
            f"{self.display_name} lists more than {self.reconcile_max_pages} pages of messages "
            f"for {message.to}; searched no further, so not finding it proves nothing",
            provider=self.name,
        )

    @abstractmethod
    def build_send_request(self, message: Message) -> HttpRequest: ...

    @abstractmethod
    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult: ...

    def is_error_response(self, response: HttpResponse) -> bool:
        """True for a 2xx that still means failure (providers that always answer 200)."""
        return False

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        """Map an error response into the taxonomy; providers extend this for their codes."""
        return self.map_http_status(response)

    def map_http_status(
        self, response: HttpResponse, detail: str | None = None, code: Any = None
    ) -> SmsgateError:
        """The generic HTTP meaning of a status, for codes a provider does not explain."""
        status = response.status
        text = detail or f"HTTP {status} from {self.display_name}"
        if status in (401, 403):
            return AuthError(f"{self.display_name} refused the credentials: {text}", code=code)
        if status == 429:
            return RateLimited(
                f"{self.display_name} is throttling: {text}",
                retry_after=retry_after(response),
                code=code,
            )
        if status in (502, 503, 504):
            # Gateways and load balancers answer these before the application sees the request.
            return TransientError(f"{self.display_name} is unavailable: {text}", code=code)
        if status >= 500:
            return AmbiguousSend(
                f"{self.display_name} failed while handling the request: {text}", code=code
            )
        return InvalidMessage(f"{self.display_name} refused the request: {text}", code=code)

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        raise UnsupportedFeature(f"{self.display_name} has no bulk endpoint", provider=self.name)

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        raise UnsupportedFeature(f"{self.display_name} has no bulk endpoint", provider=self.name)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


#: smsgate.encoding's encoding_and_segments once a result needed it: imported on first use, as
#: its tables cost start-up time to commands that never send, and kept, because an import
#: statement run per result costs about 0.7 µs
_count_parts: Callable[[str], tuple[str, int]] | None = None


def _load_count_parts() -> Callable[[str], tuple[str, int]]:
    global _count_parts
    from smsgate.encoding import encoding_and_segments

    _count_parts = encoding_and_segments
    return encoding_and_segments


#: what a parser raises on an answer of a shape the provider never gives
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)

#: how much of an unreadable answer an error keeps (an HTML page can be large)
RAW_TEXT_LIMIT = 4096


def _raw_text(response: HttpResponse) -> str:
    return response.body[:RAW_TEXT_LIMIT].decode("utf-8", "replace")


def retry_after(response: HttpResponse, default: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    import time

    return max(0.0, when.timestamp() - time.time())


def parse_iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a webhook (``Z`` accepted), or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def first(fields: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of ``name`` in form fields."""
    for key, value in fields:
        if key == name:
            return value
    return None


@dataclass(slots=True)
class ProviderInfo:
    """A registry row: where a provider class lives (the class describes the rest)."""

    scheme: str
    module: str
    cls: str
    aliases: tuple[str, ...] = field(default_factory=tuple)
