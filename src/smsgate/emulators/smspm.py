"""An SMSPM emulator: ``GET /`` or ``POST /`` with ``hash, token, toNumber, fromNumber, text``.

Run it with ``smsgate emulate smspm``; the defaults need no flags, so seed 002's ``send_sms`` works
against it unchanged but for the host. What it speaks:

- the parameters in the query string (GET, as the seed does), a JSON object or a form body (POST);
  query parameters fill in whatever a POST body leaves out, as the docs' curl examples mix them;
- ``toNumber`` as one number or a list (a JSON array, or the parameter repeated on GET), at most
  100; ``+37256789045``, ``37256789045`` and ``0037256789045`` are the same number;
- ``fromNumber``: an alphanumeric id of at most 11 characters or at most 15 digits; when left out
  it is ``SMSPM.com``, the sender every account has;
- two answer shapes, ``--option shape=seed`` (the default) or ``--option shape=v2``:

  ============ ======================================== =========================================
  case         seed                                     v2
  ============ ======================================== =========================================
  one number   ``{"status":"success","messageId":ID}``  ``{"messages":[{"id","toNumber",``
                                                        ``"status":"Added to queue"}]}``
  a list       ``{"status":"success","messages":[``     the same, failed numbers as
               ``{"messageId","toNumber","status"}]}``  ``{"toNumber","status":"Rejected",``
               failed numbers as ``{"toNumber",``       ``"error"}``, HTTP 200
               ``"status":"error","message"}``, HTTP 200
  refusal      HTTP 200 ``{"status":"error",``          HTTP 400 (402 no credit) ``{"error"}``
               ``"message"}``
  ============ ======================================== =========================================

  In both shapes a wrong hash or token is HTTP 401, throttling 429 with ``Retry-After`` and an
  injected outage 503, each with that shape's error body.
- ``--option bulk_errors=reject_batch`` refuses a whole list because of one bad number (with that
  number's error), instead of the default per-number results;
- ``--option balance=N``: the account's credit in SMS parts (unlimited by default); a send that
  needs more is refused with "Insufficient balance" and nothing is sent.

Refusals use SMSPM's own sentences where its docs give them ("Hash is required", "Token is
required", "Message text is required", "At least one recipient number is required") and sentences
in the same style elsewhere. Twilio's magic numbers fail the same way here as on every emulator.

SMSPM's delivery reports and inbound messages are not emulated: their format is not in
smsgate's contract notes (see ``smsgate.providers.smspm``).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from smsgate.emulators.base import EmulatedMessage, Emulator
from smsgate.emulators.magic import Outcome, magic_outcome

MAX_RECIPIENTS = 100
MAX_TEXT = 1600
DEFAULT_SENDER = "SMSPM.com"
SHAPES = ("seed", "v2")
BULK_ERRORS = ("per_recipient", "reject_batch")

_SENDER = re.compile(r"^(?:[A-Za-z0-9 .&\-_!#%()<>+]{1,11}|\+?\d{1,15})$")

#: Recipient outcomes: the sentence SMSPM-style refusals carry for each magic number.
_RECIPIENT_ERRORS: dict[Outcome, str] = {
    Outcome.INVALID_TO: "Invalid phone number: {to}",
    Outcome.UNREACHABLE: "Phone number is not reachable: {to}",
    Outcome.REGION_NOT_ENABLED: "Sending to this country is not enabled for your account: {to}",
    Outcome.OPTED_OUT: "Recipient has opted out of messages (STOP): {to}",
    Outcome.NOT_MOBILE: "Phone number is not a mobile number: {to}",
}
_SENDER_ERRORS: dict[Outcome, str] = {
    Outcome.INVALID_FROM: "Invalid sender ID: {sender}",
    Outcome.FROM_NOT_OWNED: "Sender ID is not approved for your account: {sender}",
}


class _Refusal(Exception):
    """A request-level refusal: ``status`` is the v2 HTTP status (seed shape may answer 200)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class SmspmEmulator(Emulator):
    name = "smspm"
    default_credentials = "emulator-hash:emulator-token"
    default_sender = "SMSPM"

    def __init__(
        self,
        *,
        shape: str = "seed",
        bulk_errors: str = "per_recipient",
        balance: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if shape not in SHAPES:
            raise ValueError(f"shape={shape!r}: choose one of {', '.join(SHAPES)}")
        if bulk_errors not in BULK_ERRORS:
            raise ValueError(f"bulk_errors={bulk_errors!r}: choose one of {', '.join(BULK_ERRORS)}")
        if ":" not in self.credentials:
            raise ValueError("SMSPM credentials are HASH:TOKEN")
        self.shape = shape
        self.bulk_errors = bulk_errors
        self.balance = None if balance in (None, "") else int(balance)

    @property
    def hash(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def token(self) -> str:
        return self.credentials.partition(":")[2]

    def provider_url(self) -> str:
        return f"smspm://{self.credentials}@{self.default_sender}?base_url={self.url}"

    def describe(self) -> list[str]:
        return [
            *super().describe(),
            f"answer shape: {self.shape} (--option shape=seed|v2)",
            f"seed 002: export SMSPM_HASH={self.hash} SMSPM_TOKEN={self.token} and use {self.url}",
        ]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.send)
        app.router.add_post("/", self.send)

    # -- answers --------------------------------------------------------------------------------

    def _error(self, status: int, text: str) -> web.Response:
        if self.shape == "seed":
            # Seed 002 checks the HTTP status, then "status": message-level refusals are HTTP 200.
            http = status if status in (401, 429, 503) else 200
            return web.json_response({"status": "error", "message": text}, status=http)
        return web.json_response({"error": text}, status=status)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return self._error(429, "Too many requests")
        return self._error(status, "Service temporarily unavailable")

    # -- the API --------------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        try:
            params = await _parameters(request)
            self._check_auth(params)
            numbers, as_list = _recipients(params)
            text = str(params.get("text") or "")
            if not text:
                raise _Refusal(400, "Message text is required")
            if len(text) > MAX_TEXT:
                raise _Refusal(400, f"Message text is too long: at most {MAX_TEXT} characters")
            sender = str(params.get("fromNumber") or DEFAULT_SENDER)
            if not _SENDER.match(sender):
                raise _Refusal(400, f"Invalid sender ID: {sender}")
            return self._accept(request, numbers, as_list, sender, text)
        except _Refusal as refusal:
            response = self._error(refusal.status, refusal.text)
            if refusal.status == 429:
                response.headers["Retry-After"] = "1"
            return response

    def _check_auth(self, params: Mapping[str, Any]) -> None:
        given_hash, given_token = params.get("hash"), params.get("token")
        if not given_hash:
            raise _Refusal(400, "Hash is required")
        if not given_token:
            raise _Refusal(400, "Token is required")
        good_hash = secrets.compare_digest(str(given_hash).encode(), self.hash.encode())
        good_token = secrets.compare_digest(str(given_token).encode(), self.token.encode())
        if not (good_hash and good_token):
            raise _Refusal(401, "Invalid hash or token")

    def _accept(
        self, request: web.Request, numbers: list[str], as_list: bool, sender: str, text: str
    ) -> web.Response:
        from smsgate.encoding import segments

        sender_outcome = magic_outcome("", sender)
        if sender_outcome is Outcome.FROM_QUEUE_FULL:
            raise _Refusal(429, "Too many requests")
        if sender_outcome in _SENDER_ERRORS:
            raise _Refusal(400, _SENDER_ERRORS[sender_outcome].format(sender=sender))
        refusals = [_recipient_refusal(raw) for raw in numbers]
        if refusals and all(r is not None for r in refusals) and not as_list:
            raise _Refusal(400, str(refusals[0]))
        if self.bulk_errors == "reject_batch" and any(r is not None for r in refusals):
            raise _Refusal(400, str(next(r for r in refusals if r is not None)))
        parts = segments(text).segments
        wanted = parts * sum(r is None for r in refusals)
        if self.balance is not None:
            if wanted > self.balance:
                raise _Refusal(402, "Insufficient balance")
            self.balance -= wanted
        entries: list[dict[str, Any]] = []
        for raw, refusal in zip(numbers, refusals, strict=True):
            if refusal is not None:
                entries.append(self._failed_entry(raw, refusal))
                continue
            message = self.record(
                EmulatedMessage(
                    id=str(uuid.uuid4()),
                    to=_e164(raw),
                    sender=sender,
                    body=text,
                    status="queued",
                    created_at=time.time(),
                    segments=parts,
                    fields={"method": request.method, "shape": self.shape},
                )
            )
            entries.append(self._accepted_entry(raw, message.id))
        if self.shape == "seed":
            if not as_list:
                first_id = entries[0]["messageId"]
                return web.json_response({"status": "success", "messageId": first_id})
            return web.json_response({"status": "success", "messages": entries})
        return web.json_response({"messages": entries})

    def _accepted_entry(self, raw: str, message_id: str) -> dict[str, Any]:
        if self.shape == "seed":
            return {"messageId": message_id, "toNumber": raw, "status": "success"}
        return {"id": message_id, "toNumber": raw, "status": "Added to queue"}

    def _failed_entry(self, raw: str, text: str) -> dict[str, Any]:
        if self.shape == "seed":
            return {"toNumber": raw, "status": "error", "message": text}
        return {"toNumber": raw, "status": "Rejected", "error": text}

    # -- webhooks: not part of what smsgate knows of SMSPM ---------------------------------------

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        # Never scheduled: SMSPM messages are recorded without a callback URL.
        raise RuntimeError("the SMSPM emulator posts no delivery reports")

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        raise RuntimeError("the SMSPM emulator posts no inbound messages")

    async def _h_inbound(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "error": "SMSPM inbound webhooks are not emulated: their format is not documented "
                "in smsgate's provider notes"
            },
            status=501,
        )


async def _parameters(request: web.Request) -> Mapping[str, Any]:
    """The request's parameters: a POST body over the query string; lists kept for toNumber."""
    merged: dict[str, Any] = {}
    _merge(merged, request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _Refusal(400, "Request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _Refusal(400, "Request body must be a JSON object")
            merged.update(body)
        else:
            _merge(merged, await request.post())
    return merged


def _merge(merged: dict[str, Any], fields: MultiMapping[Any]) -> None:
    for key in set(fields.keys()):
        values = [str(v) for v in fields.getall(key)]
        merged[key] = values if key == "toNumber" and len(values) > 1 else values[0]


def _recipients(params: Mapping[str, Any]) -> tuple[list[str], bool]:
    given = params.get("toNumber")
    as_list = isinstance(given, list)
    numbers = [str(n).strip() for n in (given if isinstance(given, list) else [given]) if n]
    numbers = [n for n in numbers if n]
    if not numbers:
        raise _Refusal(400, "At least one recipient number is required")
    if len(numbers) > MAX_RECIPIENTS:
        raise _Refusal(400, f"Too many recipients: at most {MAX_RECIPIENTS} per request")
    return numbers, as_list


def _e164(raw: str) -> str:
    compact = re.sub(r"[\s\-().]", "", raw)
    if compact.startswith("00"):
        compact = compact[2:]
    return "+" + compact.lstrip("+")


def _recipient_refusal(raw: str) -> str | None:
    """Why SMSPM would refuse this number, or None when it accepts it."""
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import normalize

    number = _e164(raw)
    if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
        return f"Invalid phone number: {raw}"
    try:
        normalize(number, strict=False)
    except InvalidRecipient:
        return f"Invalid phone number: {raw}"
    outcome = magic_outcome(number, "")
    if outcome in _RECIPIENT_ERRORS:
        return _RECIPIENT_ERRORS[outcome].format(to=raw)
    return None
