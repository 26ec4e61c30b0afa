"""SMSPM (api.smspm.com): SMS only, one endpoint, credentials as request parameters.

``smspm://HASH:TOKEN@SENDER`` (the sender is an approved alphanumeric id such as ``MyApp`` or a
number). Options: ``base_url`` (an emulator), ``timeout``, ``connect_timeout``, ``max_connections``.

The wire contract (SMSPM API docs v2, and seed 002):

- ``GET https://api.smspm.com/?hash=&token=&toNumber=&fromNumber=&text=`` or ``POST`` the same
  names as a JSON object. We always POST JSON: on GET the hash and token travel in the URL, and
  URLs end up in proxy and server access logs. (The transport logs the path only in any case.)
- ``toNumber`` is one number or, for the same text to several people, a JSON array of up to 100
  numbers (the docs' "multiple recipients" form: ``"toNumber": ["37256789045", "37257788990"]``).
  Numbers go as digits without ``+``, as in the docs' examples. An array refused as a whole for
  one bad or opted-out number is sent again one number at a time (``bulk_fallback``), so every
  other recipient still gets the message and the bad one gets its own error.
- Two answer shapes are in the wild and both are read: the older one the seed shows,
  ``{"status": "success", "messageId": …}`` / ``{"status": "error", "message": …}`` (an API-level
  refusal may come with HTTP 200), and the v2 one, ``{"messages": [{"id", "toNumber",
  "status": "Added to queue"}]}`` / ``{"error": "…"}``.
- SMSPM has no error codes, only sentences ("Hash is required", "Invalid phone number: …"). The
  sentence is kept as the error's ``code`` and mapped into the taxonomy by its words.

Not supported, and why: MMS (SMSPM sends SMS only; refused before any request); delivery webhooks
(the SMSPM docs have a "Delivery Reports (Callbacks)" section, but its format is not in our
contract notes, so ``callback=`` is refused rather than silently ignored); idempotency keys (the
API takes none, so an ambiguous send cannot be resent safely).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any, Self

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    RateLimited,
    SmsgateError,
    UnsupportedFeature,
)
from smsgate.message import Message, SendResult, Status
from smsgate.providers.base import Capabilities, HttpProvider, retry_after
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "smspm://HASH:TOKEN@MyApp"

#: SMSPM's per-recipient statuses on acceptance, in either answer shape.
STATUSES: dict[str, Status] = {
    "added to queue": Status.QUEUED,
    "queued": Status.QUEUED,
    "success": Status.QUEUED,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
}

#: Words in SMSPM's error sentences, checked in this order (the first match decides).
_AUTH_WORDS = ("hash", "token", "unauthori", "authenticat", "credential")
_FUNDS_WORDS = ("balance", "insufficient", "credit", "funds")
_OPT_OUT_WORDS = ("opted out", "opt-out", "opt out", "unsubscribed", "blacklist")
_THROTTLE_WORDS = ("too many requests", "rate limit", "throttl")
_REGION_WORDS = ("country is not enabled", "region", "destination country")
_SENDER_WORDS = ("sender", "fromnumber")
_RECIPIENT_WORDS = ("phone", "recipient", "tonumber", "number")
_BODY_WORDS = ("text", "message")


class SmspmProvider(HttpProvider):
    scheme = "smspm"
    display_name = "SMSPM"
    default_base_url = "https://api.smspm.com"
    #: the API docs' limit on recipients per request
    bulk_batch_size = 100
    capabilities = Capabilities(
        bulk=True,
        url_form=URL_FORM,
    )
    secret_username = True
    emulator = "smsgate.emulators.smspm:SmspmEmulator"

    def __init__(self, *, hash: str, token: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hash = hash
        self._token = token

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        options = cls.common_options(url)
        if options["status_callback"]:
            raise ConfigError(
                "smspm:// does not take callback=: smsgate cannot request or verify SMSPM "
                "delivery reports yet; remove the option (or route through a provider with "
                "delivery webhooks, e.g. smsroute:// or twilio://)",
                field="callback",
            )
        return cls(
            name=name,
            hash=url.require("username", URL_FORM),
            token=url.require("password", URL_FORM),
            sender=url.sender(),
            **options,
        )

    # -- send -----------------------------------------------------------------------------

    def _payload(self, message: Message, to: str | list[str]) -> dict[str, Any]:
        return {
            "hash": self._hash,
            "token": self._token,
            "toNumber": to,
            "fromNumber": self.sender_for(message),
            "text": message.body,
        }

    def build_send_request(self, message: Message) -> HttpRequest:
        return HttpRequest("POST", "/", json=self._payload(message, _digits(message.to)))

    def build_bulk_request(self, messages: list[Message]) -> HttpRequest:
        numbers = [_digits(m.to) for m in messages]
        return HttpRequest("POST", "/", json=self._payload(messages[0], numbers))

    def is_error_response(self, response: HttpResponse) -> bool:
        # Only a body that says it failed is an error; one that says nothing proves nothing,
        # which the base reports as ambiguous.
        body = response.json()
        if "error" in body:
            return True
        entries = body.get("messages")
        if isinstance(entries, list):
            # One recipient sent as a plain string: its only entry decides.
            return len(entries) == 1 and _entry_error(entries[0]) is not None
        return str(body.get("status", "")).lower() in ("error", "failed", "rejected")

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        body = response.json()
        entries = body.get("messages")
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            return self._accepted(message, entries[0], raw=body)
        return self._accepted(message, body, raw=body)

    def _accepted(self, message: Message, entry: dict[str, Any], *, raw: Any) -> SendResult:
        provider_id = entry.get("id") or entry.get("messageId")
        status = STATUSES.get(str(entry.get("status", "")).lower(), Status.QUEUED)
        return self.result(
            message,
            status=status,
            provider_message_id=str(provider_id) if provider_id else None,
            raw=raw,
        )

    def parse_bulk_response(
        self, messages: list[Message], response: HttpResponse
    ) -> list[SendResult]:
        body = response.json()
        entries = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            # A single-message answer to an array request: we cannot tell who it covers.
            unclear = AmbiguousSend(
                "SMSPM answered a multi-recipient send without per-recipient results",
                provider=self.name,
                raw=body,
            )
            return [self.failed_result(m, unclear) for m in messages]
        # Entries are matched by number (the docs echo toNumber); a number given twice takes its
        # entries in order. Only when no entry names its number is position used instead.
        by_number: dict[str, deque[Any]] = defaultdict(deque)
        numbered = any(isinstance(item, dict) and item.get("toNumber") for item in entries)
        for i, item in enumerate(entries):
            if numbered and isinstance(item, dict) and item.get("toNumber"):
                by_number[_digits(str(item["toNumber"]))].append(item)
            elif not numbered and i < len(messages):
                by_number[f"#{i}"].append(item)
        results: list[SendResult] = []
        for i, message in enumerate(messages):
            queue = by_number.get(_digits(message.to) if numbered else f"#{i}")
            entry: Any = queue.popleft() if queue else None
            if not isinstance(entry, dict):
                missing: SmsgateError = AmbiguousSend(
                    f"SMSPM's answer has no result for {message.to}; it may have been accepted",
                    provider=self.name,
                    raw=body,
                )
                results.append(self.failed_result(message, missing))
                continue
            text = _entry_error(entry)
            if text is not None:
                error = self._classify(text, status=200, message=message, response=None)
                error.provider, error.raw = self.name, entry
                results.append(self.failed_result(message, error))
            else:
                results.append(self._accepted(message, entry, raw=entry))
        return results

    def bulk_fallback(self, error: SmsgateError, group: Sequence[Message]) -> bool:
        # SMSPM may refuse a whole array because of one number (its error names that recipient).
        # Nothing was sent, so each recipient is asked alone for its own answer.
        return isinstance(error, (InvalidRecipient, OptedOut))

    # -- errors -----------------------------------------------------------------------------

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        text = _error_text(body)
        if text is None:
            return self.map_http_status(response)
        return self._classify(text, status=response.status, message=message, response=response)

    def _classify(
        self, text: str, *, status: int, message: Message, response: HttpResponse | None
    ) -> SmsgateError:
        lowered = text.lower()
        code = text[:200]
        if status == 429 or _has(lowered, _THROTTLE_WORDS):
            after = retry_after(response, 1.0) if response is not None else 1.0
            return RateLimited(f"SMSPM is throttling: {text}", code=code, retry_after=after)
        if status in (401, 403) or _has(lowered, _AUTH_WORDS):
            return AuthError(
                f"SMSPM refused the hash or token ({text}); copy both from the SMSPM API page "
                "into smspm://HASH:TOKEN@SENDER",
                code=code,
            )
        if status == 402 or _has(lowered, _FUNDS_WORDS):
            return InsufficientFunds(f"the SMSPM account is out of credit ({text})", code=code)
        if _has(lowered, _OPT_OUT_WORDS):
            return OptedOut(f"recipient {message.to} opted out ({text})", code=code, field="to")
        if _has(lowered, _REGION_WORDS):
            return UnsupportedFeature(
                f"this SMSPM account cannot send to {message.to}'s country ({text})", code=code
            )
        if _has(lowered, _SENDER_WORDS):
            return self.sender_refused(
                message,
                f"sender {self.sender_for(message)!r} refused by SMSPM ({text})",
                code=code,
                fix="use an approved sender id in the smspm:// URL",
            )
        if _has(lowered, _RECIPIENT_WORDS):
            return InvalidRecipient(
                f"recipient {message.to} refused by SMSPM ({text})", code=code, field="to"
            )
        if _has(lowered, _BODY_WORDS):
            return InvalidMessage(f"SMSPM refused the text ({text})", code=code, field="body")
        if response is not None and status >= 400:
            return self.map_http_status(response, detail=text, code=code)
        return InvalidMessage(f"SMSPM refused the message ({text})", code=code)


def _digits(number: str) -> str:
    return number.strip().lstrip("+")


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def _entry_error(entry: Any) -> str | None:
    """The refusal text of one per-recipient entry, or None when it was accepted."""
    if not isinstance(entry, dict):
        return "malformed entry"
    if entry.get("error"):
        return str(entry["error"])
    status = str(entry.get("status", "")).lower()
    if status in ("error", "failed", "rejected"):
        return str(entry.get("message") or status)
    return None


def _error_text(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if body.get("error"):
        error = body["error"]
        return str(error.get("message") or error) if isinstance(error, dict) else str(error)
    entries = body.get("messages")
    if isinstance(entries, list) and entries:
        return _entry_error(entries[0])
    if body.get("message"):
        return str(body["message"])
    status = body.get("status")
    return f"status {status}" if status else None
