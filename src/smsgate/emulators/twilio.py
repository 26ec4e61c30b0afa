"""A Twilio Programmable Messaging emulator (the 2010-04-01 Messages resource).

Speaks enough of the real contract for the official ``twilio`` package to drive it: create,
fetch, list, cancel, Twilio's error bodies and magic numbers, and signed status callbacks
(``X-Twilio-Signature`` and ``I-Twilio-Idempotency-Token``).
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from smsgate.emulators.base import EmulatedMessage, Emulator, possible_number
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.signing import twilio_signature

_ERRORS: dict[Outcome, tuple[int, str]] = {
    Outcome.INVALID_TO: (21211, "The 'To' number {to} is not a valid phone number."),
    Outcome.UNREACHABLE: (
        21612,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {sender} via SMS.",
    ),
    Outcome.REGION_NOT_ENABLED: (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    ),
    Outcome.OPTED_OUT: (21610, "Attempt to send to unsubscribed recipient"),
    Outcome.NOT_MOBILE: (21614, "'To' number is not a valid mobile number"),
    Outcome.INVALID_FROM: (
        21212,
        "The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    Outcome.FROM_NOT_OWNED: (
        21606,
        "The 'From' phone number provided ({sender}) is not a valid message-capable Twilio phone number for this destination.",
    ),
    Outcome.FROM_QUEUE_FULL: (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
}
_DELIVERY_CODES = {"undelivered": "30003", "failed": "30008"}


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class TwilioEmulator(Emulator):
    name = "twilio"
    default_credentials = "AC00000000000000000000000000000000:emulator-auth-token"
    default_sender = "+15005550006"

    @property
    def account_sid(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def auth_token(self) -> str:
        return self.credentials.partition(":")[2]

    def provider_url(self) -> str:
        return f"twilio://{self.credentials}@{self.default_sender}?base_url={self.url}"

    def add_routes(self, app: web.Application) -> None:
        base = "/2010-04-01/Accounts/{sid}/Messages"
        app.router.add_post(base + ".json", self.create)
        app.router.add_get(base + ".json", self.list_messages)
        app.router.add_get(base + "/{msid}.json", self.fetch)
        app.router.add_post(base + "/{msid}.json", self.update)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return twilio_error(429, 20429, "Too Many Requests")
        return twilio_error(status, 20500, "Service unavailable")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if (
            not secrets.compare_digest(header.encode(), expected.encode())
            or request.match_info["sid"] != self.account_sid
        ):
            return twilio_error(401, 20003, "Authenticate")
        return None

    def _resource(self, m: EmulatedMessage) -> dict[str, Any]:
        self._progress(m)
        created = formatdate(m.created_at, usegmt=False)
        sent_at = m.fields.get("sent_at")
        return {
            "sid": m.id,
            "account_sid": self.account_sid,
            "to": m.to,
            "from": m.sender if not m.sender.startswith("MG") else None,
            "messaging_service_sid": m.sender if m.sender.startswith("MG") else None,
            "body": m.body,
            "status": m.status,
            "num_segments": str(m.segments),
            "num_media": str(len(m.media)),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None if m.status in ("queued", "accepted", "scheduled") else "-0.00790",
            "price_unit": "USD",
            "error_code": m.fields.get("error_code"),
            "error_message": None,
            "date_created": created,
            "date_updated": created,
            "date_sent": None if sent_at is None else formatdate(sent_at, usegmt=False),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.id}.json",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.id}/Media.json"
            },
        }

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        form = await request.post()
        to = str(form.get("To", "")).strip()
        sender = str(form.get("From") or form.get("MessagingServiceSid") or "").strip()
        body = str(form.get("Body", ""))
        media = [str(v) for v in form.getall("MediaUrl", [])]
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body and not media:
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if len(media) > 10:
            return twilio_error(400, 21623, "The number of media files exceeds the limit of 10.")
        if not possible_number(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        outcome = magic_outcome(to, sender)
        if outcome is not None:
            code, text = _ERRORS[outcome]
            return twilio_error(
                400 if outcome is not Outcome.FROM_QUEUE_FULL else 429,
                code,
                text.format(to=to, sender=sender),
            )
        from smsgate.encoding import segments

        message = self.record(
            EmulatedMessage(
                id=("MM" if media else "SM") + secrets.token_hex(16),
                to=to,
                sender=sender,
                body=body,
                media=media,
                status="accepted" if sender.startswith("MG") else "queued",
                created_at=time.time(),
                callback_url=str(form["StatusCallback"]) if form.get("StatusCallback") else None,
                segments=segments(body).segments if body else 1,
                fields={k: str(v) for k, v in form.items()},
            )
        )
        return web.json_response(self._resource(message), status=201)

    def _progress(self, m: EmulatedMessage) -> None:
        """Twilio sends whether or not anyone listens for receipts: a message without a status
        callback is ``sent`` once the callback delay has passed (worked out when it is read, so
        a bulk run costs no timer per message)."""
        if m.callback_url is None and m.status in ("queued", "accepted"):
            sent_at = m.created_at + self.callbacks.delay
            if time.time() >= sent_at:
                m.status = "sent"
                m.fields["sent_at"] = sent_at

    async def fetch(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        message = self.by_id.get(request.match_info["msid"])
        if message is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(self._resource(message))

    async def list_messages(self, request: web.Request) -> web.Response:
        """The Messages list as Twilio pages it: newest first, ``To``/``From``/``DateSent``
        filters (``DateSent>``, ``DateSent<`` and exact ``DateSent``, a date or date-time; a
        message not sent yet has no ``date_sent`` and matches none), ``PageSize`` (at most
        1,000) and ``next_page_uri`` until the last page."""
        if (denied := self._check_auth(request)) is not None:
            return denied
        if (failed := self.list_request(request)) is not None:
            return failed
        query = request.query
        to, sender = query.get("To"), query.get("From")
        try:
            page_size = min(max(int(query.get("PageSize", "50") or 50), 1), self.max_page_size)
            page = max(int(query.get("Page", "0") or 0), 0)
            after = _date_filter(query.get("DateSent>"), end=False)
            before = _date_filter(query.get("DateSent<"), end=True)
            on = query.get("DateSent")
            day = (_date_filter(on, end=False), _date_filter(on, end=True)) if on else None
        except ValueError as exc:
            return twilio_error(400, 20001, f"Invalid filter: {exc}")
        found = []
        for m in reversed(self.messages):
            if (to is not None and m.to != to) or (sender is not None and m.sender != sender):
                continue
            self._progress(m)
            sent_at = m.fields.get("sent_at")
            if after is not None or before is not None or day is not None:
                if sent_at is None:
                    continue
                if after is not None and sent_at < after:
                    continue
                if before is not None and sent_at > before:
                    continue
                if day is not None and not (day[0] <= sent_at <= day[1]):
                    continue
            found.append(m)
        chunk = found[page * page_size : (page + 1) * page_size]
        path = request.path

        def page_uri(number: int) -> str:
            params = [(k, v) for k, v in query.items() if k not in ("Page", "PageToken")]
            params += [("Page", str(number)), ("PageToken", f"PA{number}")]
            return f"{path}?{urlencode(params)}"

        more = (page + 1) * page_size < len(found)
        return web.json_response(
            {
                "messages": [self._resource(m) for m in chunk],
                "page": page,
                "page_size": page_size,
                "start": page * page_size,
                "end": page * page_size + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if more else None,
                "previous_page_uri": page_uri(page - 1) if page else None,
                "uri": request.path_qs,
            }
        )

    async def update(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        message = self.by_id.get(request.match_info["msid"])
        if message is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        form = await request.post()
        if form.get("Status") == "canceled":
            if message.status != "scheduled":
                return twilio_error(400, 30409, "Message cannot be canceled: it is not scheduled.")
            message.status = "canceled"
        elif "Body" in form:
            message.body = ""  # redaction, as Twilio does with Body=""
        return web.json_response(self._resource(message))

    # -- callbacks ----------------------------------------------------------------------------

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        for status in ("sent", outcome):
            message.status = status
            message.fields.setdefault("sent_at", time.time())
            fields = {
                "MessageSid": message.id,
                "SmsSid": message.id,
                "MessageStatus": status,
                "SmsStatus": status,
                "AccountSid": self.account_sid,
                "From": message.sender,
                "To": message.to,
                "ApiVersion": "2010-04-01",
            }
            if status in _DELIVERY_CODES:
                fields["ErrorCode"] = _DELIVERY_CODES[status]
                message.fields["error_code"] = int(_DELIVERY_CODES[status])
            if status == "delivered":
                fields["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
            await self._signed_post(message.callback_url, fields, token=f"{message.id}-{status}")

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        # The fields of Twilio's incoming-message webhook, the legacy Sms* names included.
        fields = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "AccountSid": self.account_sid,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": str(len(media)),
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        for i, item in enumerate(media):
            fields[f"MediaUrl{i}"] = item
            fields[f"MediaContentType{i}"] = "image/jpeg"
        return await self._signed_post(url, fields, token=fields["MessageSid"])

    async def _signed_post(self, url: str, fields: dict[str, str], *, token: str) -> int:
        signature = twilio_signature(self.auth_token, url, fields.items())
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": token,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return await self.post(url, data=fields, headers=headers)


def _date_filter(value: str | None, *, end: bool) -> float | None:
    """A ``DateSent`` filter as epoch seconds: a date-time, or a date (its start, or with
    ``end``, its last second), as Twilio reads them in UTC."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) == 10:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return day.timestamp() + (86399.999 if end else 0.0)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
