"""Email-to-SMS over SMTP: each text is one plain mail to ``<number>@<carrier gateway>``.

``smtp://USER:PASS@smtp.gmail.com:587?from=me@gmail.com&carrier=googlefi`` (``smtps://`` means
implicit TLS on 465). This is what seeds 000 and 001 do by hand, done once and properly:

- one SMTP connection (or a small pool, ``connections=N``) is reused for many messages, logged in
  once and re-established when the server drops it; STARTTLS on 587 by default, implicit TLS on
  465, ``tls=none`` only for a relay on loopback; ``ca_file=PATH`` trusts one CA (the emulator's)
  instead of turning verification off;
- where the server offers PIPELINING (RFC 2920; Gmail does), MAIL, RCPT and DATA go out in one
  write and their replies are read together: two round trips per mail instead of four;
- the carrier comes from the message (``provider_options={"smtp": {"carrier": KEY}}`` or flat, ``smsgate send
  --carrier KEY``), from a contacts file (``contacts=PATH``) or from ``carrier=KEY``; the gateway
  domain only from the registry (:mod:`smsgate.carriers`) or an explicit ``domain=`` override;
  dead gateways are refused unless ``force=true``; deprecated ones warn;
- nothing that reaches a header may carry CR, LF or another control character: such values are
  refused before a connection is opened.

Options: ``from`` (default: the user name when it is an address), ``from_name``, ``tls``
(starttls | implicit | none), ``ca_file``, ``carrier``, ``contacts``, ``subject`` (default none:
carriers prepend it to the text), ``force``, ``domain`` / ``mms_domain``, ``connections`` (pool
size, default 2), ``helo``, ``timeout`` / ``connect_timeout``, ``idle_timeout`` (seconds before a
pooled connection is replaced rather than reused, default 60), ``max_chars`` (warn past this many
GSM-7 units, default 140), ``media_max_bytes`` (default 1,000,000) and ``allow_private_media``
(fetch media from loopback and private addresses; off by default so a gateway cannot be used to
read an internal network).

Errors: 5xx replies become permanent errors naming the recipient (550 at RCPT ->
``InvalidRecipient``, 552/554 -> ``InvalidMessage``, 5.4.5 quota -> ``ProviderUnavailable``); 4xx
-> ``TransientError`` (450 4.2.1 "receiving mail too quickly" -> ``RateLimited``); 535/534 ->
``AuthError``. A refused or timed-out connection is a ``TransientError``, as in the HTTP transport:
nothing reached the server, so a retry is safe and, after a few, the router fails over; an
untrusted certificate or a server without STARTTLS is ``ProviderUnavailable`` because retrying
cannot fix configuration. A timeout or a dropped connection after the DATA terminator was sent is
``AmbiguousSend``: the server may already have queued the mail.

The result's ``provider_message_id`` is the mail's ``Message-ID`` (without angle brackets); it is
derived from our message id, so a resend of the same message carries the same Message-ID.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import ipaddress
import logging
import re
import ssl
import time
import warnings
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any, NoReturn, Self, cast
from urllib.parse import urljoin, urlsplit

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from smsgate.carriers import (
    Carrier,
    CarrierRegistry,
    Contacts,
    check_usable,
    is_gateway_domain,
    registry,
    split_number,
    today_utc,
)
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InvalidMessage,
    InvalidRecipient,
    ProviderUnavailable,
    RateLimited,
    SmsgateError,
    TransientError,
    UnsupportedFeature,
)
from smsgate.message import Message, SendResult, Status
from smsgate.providers.base import Capabilities, Provider, UrlOption
from smsgate.providers.transport import (
    HttpRequest,
    HttpTransport,
    Limits,
    ResponseTooLarge,
    TransportOptions,
)
from smsgate.providers.url import ProviderURL

logger = logging.getLogger("smsgate.providers.smtp")

TLS_MODES = ("starttls", "implicit", "none")
DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}
#: control characters, including the Unicode line and paragraph separators and NEL
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_MEDIA_TYPES = (
    "image/",
    "audio/",
    "video/",
    "text/plain",
    "text/vcard",
    "text/x-vcard",
    "text/calendar",
)
_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_OPTIONS = frozenset({"carrier", "subject", "force"})
#: the longest reply accepted (EHLO lists are a few hundred bytes)
_MAX_REPLY = 65536


class LongTextWarning(UserWarning):
    """A text longer than a gateway comfortably carries (carriers add the From and subject)."""


def _refuse_unsafe(value: str, what: str, error: type[SmsgateError], field: str) -> str:
    """Refuse any value bound for a header that could start a new header line."""
    if _UNSAFE.search(value):
        raise error(
            f"{what} contains a control character (CR, LF, ...); remove it "
            "(it would let the value add mail headers such as Bcc)",
            field=field,
        )
    return value


def _check_address(value: str, what: str, error: type[SmsgateError], field: str) -> str:
    _refuse_unsafe(value, what, error, field)
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, TypeError, HeaderParseError) as exc:
        raise error(f"{what} {value!r} is not an email address ({exc})", field=field) from None
    if not value.isascii() or not address.username or not address.domain:
        raise error(
            f"{what} {value!r} must be a plain ASCII address such as me@example.com", field=field
        )
    return value


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail, addressed and checked, before any I/O."""

    mail_from: str
    from_header: str
    rcpt: str
    subject: str | None
    message_id: str
    carrier: Carrier | None
    mms: bool


class _Failure(Exception):
    """Internal: how a transaction failed and what that means for its connection."""

    def __init__(self, error: SmsgateError, *, keep: bool, stale: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.keep = keep
        self.stale = stale


class _Replies(asyncio.Protocol):
    """SMTP replies of a session that aiosmtplib has set up (connect, TLS, EHLO, AUTH).

    aiosmtplib's protocol pairs each reply with one command and ignores bytes that arrive while
    no command waits, so replies to pipelined commands (RFC 2920), which may share one read or
    follow each other before the reader wakes, would be lost. Once the session is ready this
    reader takes the transport over: it queues every complete reply in order, and passes the end
    of the connection on to aiosmtplib's protocol so the ``aiosmtplib.SMTP`` still knows whether
    it is connected and still closes it.
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        transport, protocol = client.transport, client.protocol
        if transport is None or protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports.
        self._transport = cast(asyncio.Transport, transport)
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._replies: deque[aiosmtplib.SMTPResponse] = deque()
        self._failure: aiosmtplib.SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport.set_protocol(self)

    def write(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self._transport.write(data)

    async def read(self, timeout: float | None) -> aiosmtplib.SMTPResponse:
        """The next reply; a timeout, a lost connection or a garbled reply raise as aiosmtplib's."""
        if not self._replies and self._failure is None:
            waiter = self._waiter = self._loop.create_future()
            expiry = None if timeout is None else self._loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if expiry is not None:
                    expiry.cancel()
        if self._replies:
            return self._replies.popleft()
        assert self._failure is not None
        raise self._failure

    async def command(self, line: bytes, timeout: float | None) -> aiosmtplib.SMTPResponse:
        self.write(line)
        return await self.read(timeout)

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:
            return
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            line = bytes(buffer[start : end + 1])
            start = end + 1
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                self._fail(
                    aiosmtplib.SMTPResponseException(-1, f"malformed reply line {line[:40]!r}")
                )
                return
            self._lines.append(line)
            if line[3:4] != b"-":
                lines, self._lines = self._lines, []
                text = b"\n".join(item[4:].strip(b" \t\r\n") for item in lines)
                self._replies.append(
                    aiosmtplib.SMTPResponse(int(code), text.decode("utf-8", "surrogateescape"))
                )
        del buffer[:start]
        if len(buffer) + sum(map(len, self._lines)) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "reply too long"))
            return
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("connection lost")
        lost.__cause__ = exc
        self._fail(lost)
        self._protocol.connection_lost(exc)

    def _fail(self, failure: aiosmtplib.SMTPException) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()
        if not self._transport.is_closing():
            self._transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("no reply in time"))


class _Connection:
    """A pooled session: aiosmtplib set it up and owns it; transactions go through ``replies``."""

    __slots__ = ("client", "last_used", "pipelining", "replies", "sent")

    def __init__(self, client: aiosmtplib.SMTP, now: float) -> None:
        self.client = client
        #: RFC 2920: MAIL, RCPT and DATA can go out together and their replies come back in order
        self.pipelining = client.supports_extension("pipelining")
        self.replies = _Replies(client)
        self.last_used = now
        self.sent = 0


class _Pool:
    """At most ``size`` connections per event loop; idle ones are reused newest first."""

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []
        #: set by aclose(): connections coming back from in-flight sends are closed, not kept
        self.closed = False
        #: every session opened, so aclose() can wait until their sockets are closed
        self.protocols: weakref.WeakSet[SMTPProtocol] = weakref.WeakSet()


@dataclass(slots=True)
class SmtpStats:
    """Counters for tests, benchmarks and the dashboard."""

    connections: int = 0
    logins: int = 0
    reconnects: int = 0
    sent: int = 0


class SmtpProvider(Provider):
    scheme = "smtp"
    display_name = "Email-to-SMS (SMTP)"
    capabilities = Capabilities(
        mms=True,
        idempotency="our id in the Message-ID header",
        url_form="smtp://USER:PASS@smtp.example.com:587?from=me@example.com&carrier=googlefi",
    )
    url_options = (
        UrlOption("from_name", "text", "the display name of the From address"),
        UrlOption("tls", "text", "starttls (default on 587), implicit (465) or none (loopback)"),
        UrlOption("ca_file", "text", "a CA bundle to trust instead of the system's"),
        UrlOption("carrier", "text", "the default carrier key (see smsgate carriers)"),
        UrlOption("contacts", "text", "a CSV of number,carrier giving each number's carrier"),
        UrlOption("subject", "text", "the mail subject"),
        UrlOption("force", "flag", "send through a gateway the registry says is dead"),
        UrlOption("domain", "text", "the SMS gateway domain, overriding the carrier's"),
        UrlOption("mms_domain", "text", "the MMS gateway domain, overriding the carrier's"),
        UrlOption("connections", "number", "SMTP sessions kept open (default 2)"),
        UrlOption("helo", "text", "the name given in EHLO"),
        UrlOption("idle_timeout", "number", "seconds an idle session is kept (60)"),
        UrlOption("max_chars", "number", "longest text before a warning (140)"),
        UrlOption("media_max_bytes", "number", "largest media file fetched (1,000,000)"),
        UrlOption("allow_private_media", "flag", "fetch media from private addresses (false)"),
    )
    emulator = "smsgate.emulators.smtp:SmtpEmulator"

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        from_address: str | None = None,
        from_name: str | None = None,
        tls: str = "starttls",
        ca_file: str | None = None,
        carrier: str | None = None,
        contacts: str | Path | Contacts | None = None,
        subject: str | None = None,
        force: bool = False,
        domain: str | None = None,
        mms_domain: str | None = None,
        connections: int = 2,
        helo: str | None = None,
        idle_timeout: float = 60.0,
        max_chars: int = 140,
        media_max_bytes: int = 1_000_000,
        allow_private_media: bool = False,
        carriers: CarrierRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        if tls not in TLS_MODES:
            raise ConfigError(
                f"smtp:// option tls={tls!r}: use one of {', '.join(TLS_MODES)}", field="tls"
            )
        if not host or _UNSAFE.search(host):
            raise ConfigError(
                "smtp:// URL needs a server host, e.g. smtp://USER:PASS@smtp.example.com:587",
                field="host",
            )
        if connections < 1:
            raise ConfigError("smtp:// option connections must be at least 1", field="connections")
        kwargs.setdefault("limits", Limits(max_connections=connections))
        sender = from_address or (username if username and "@" in username else None)
        if sender is None:
            raise ConfigError(
                "smtp:// URL needs a From address: add ?from=me@example.com "
                "(or log in with an address)",
                field="from",
            )
        _check_address(sender, "from address", ConfigError, "from")
        super().__init__(sender=sender, **kwargs)
        self.host = host
        self.tls = tls
        self.port = port or DEFAULT_PORTS[tls]
        self.username = username
        self._password = password
        if username is not None and password is None:
            raise ConfigError(
                "smtp:// URL has a user but no password: smtp://USER:PASS@host", field="password"
            )
        if username and tls == "none" and host.lower() not in _LOCAL_HOSTS:
            raise ConfigError(
                f"refusing to send the password to {host} without TLS; use tls=starttls or "
                "tls=implicit (tls=none with a login is only for a relay on loopback)",
                field="tls",
            )
        if from_name is not None:
            _refuse_unsafe(from_name, "from_name", ConfigError, "from_name")
        self.from_name = from_name
        self.subject = subject and _refuse_unsafe(subject, "subject", ConfigError, "subject")
        self.carriers = carriers or registry()
        self.default_carrier = self.carriers.get(carrier) if carrier else None
        if carrier and self.default_carrier is None:
            raise ConfigError(
                f"smtp:// option carrier={carrier!r} is not in the registry "
                "(run `smsgate carriers`)",
                field="carrier",
            )
        for name, value in (("domain", domain), ("mms_domain", mms_domain)):
            if value is not None and not is_gateway_domain(value):
                raise ConfigError(
                    f"smtp:// option {name}={value!r} is not a lowercase DNS name", field=name
                )
        self.domain = domain
        self.mms_domain = mms_domain or domain
        self.force = force
        if isinstance(contacts, Contacts) or contacts is None:
            self.contacts = contacts
        else:
            self.contacts = Contacts.load(contacts, self.carriers)
        self.connections = connections
        self.helo = helo
        if helo is not None and (_UNSAFE.search(helo) or " " in helo):
            raise ConfigError(f"smtp:// option helo={helo!r} must be a host name", field="helo")
        self.idle_timeout = idle_timeout
        self.max_chars = max_chars
        self.media_max_bytes = media_max_bytes
        self.allow_private_media = allow_private_media
        self.ca_file = ca_file
        self._ssl_context: ssl.SSLContext | None = None
        if ca_file is not None:
            self._ssl_context = self._make_ssl_context()
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        self._media_transport: HttpTransport | None = None
        self._last_date = (-1, "")
        self.stats = SmtpStats()

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        host = url.require("host", "smtp://USER:PASS@smtp.example.com:587?from=me@example.com")
        default_tls = "implicit" if url.scheme == "smtps" else "starttls"
        common = cls.common_options(url)
        connections = int(url.number("connections", url.number("max_connections", 2)))
        common["limits"] = Limits(max_connections=max(1, connections))
        return cls(
            name=name,
            host=host,
            port=url.port,
            username=url.username,
            password=url.password,
            from_address=url.option("from"),
            from_name=url.option("from_name"),
            tls=(url.option("tls") or default_tls).lower(),
            ca_file=url.option("ca_file"),
            carrier=url.option("carrier"),
            contacts=url.option("contacts"),
            subject=url.option("subject"),
            force=url.flag("force"),
            domain=url.option("domain"),
            mms_domain=url.option("mms_domain"),
            connections=connections,
            helo=url.option("helo"),
            idle_timeout=url.number("idle_timeout", 60.0),
            max_chars=int(url.number("max_chars", 140)),
            media_max_bytes=int(url.number("media_max_bytes", 1_000_000)),
            allow_private_media=url.flag("allow_private_media"),
            **common,
        )

    def __repr__(self) -> str:
        # The password never appears; the user name is an address, not a secret.
        carrier = self.default_carrier.key if self.default_carrier else None
        return (
            f"SmtpProvider(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"tls={self.tls!r}, "
            f"user={self.username!r}, sender={self.sender!r}, carrier={carrier!r})"
        )

    def supported_options(self) -> frozenset[str]:
        return _OPTIONS

    # -- addressing (no I/O) ------------------------------------------------------------------

    def carrier_for(self, message: Message) -> tuple[Carrier | None, str]:
        """The carrier for a message and where that came from (message, contacts or default)."""
        key = self.options_for(message).get("carrier")
        if key is not None:
            if not isinstance(key, str):
                raise InvalidMessage(
                    "provider option carrier must be a carrier key", field="carrier"
                )
            return self.carriers.require(key), "message"
        if self.contacts is not None:
            contact = self.contacts.by_number(message.to)
            if contact is not None:
                return contact.carrier, "contacts"
        return self.default_carrier, "default"

    def plan(self, message: Message) -> Mail:
        """Address and check one message; raises before anything is sent."""
        try:
            return self._plan(message)
        except SmsgateError as exc:
            if exc.provider is None:
                exc.provider = self.name
            raise

    def _plan(self, message: Message) -> Mail:
        mms = bool(message.media)
        carrier, origin = self.carrier_for(message)
        override = self.mms_domain if mms else self.domain
        if carrier is None and override is None:
            raise UnsupportedFeature(
                f"no carrier known for {message.to}: pass carrier=KEY on the message (smsgate send "
                "--carrier KEY), list the number in the contacts file, or set carrier= on the "
                "smtp:// URL",
                provider=self.name,
                field="carrier",
            )
        if carrier is not None:
            force = bool(self.options_for(message).get("force", self.force))
            check_usable(
                carrier, force=force, today=today_utc(self.clock.time()), provider=self.name
            )
            if not carrier.serves(message.to):
                text = (
                    f"{message.to} is not a {carrier.country} number; "
                    f"{carrier.name}'s gateway cannot reach it"
                )
                if origin == "default":
                    # The provider's own default does not fit: another provider may still reach it.
                    raise UnsupportedFeature(text, provider=self.name, field="carrier")
                raise InvalidRecipient(text, provider=self.name, field="to")
        if override is not None:
            local = carrier.local_part(message.to) if carrier else split_number(message.to)[1]
            rcpt = f"{local}@{override}"
        else:
            assert carrier is not None
            rcpt = carrier.address(message.to, mms=mms)
        _refuse_unsafe(rcpt, "recipient address", InvalidRecipient, "to")
        mail_from, from_header = self._sender(message)
        subject = self.options_for(message).get("subject", self.subject)
        if subject is not None:
            if not isinstance(subject, str):
                raise InvalidMessage(
                    "provider option subject must be text", provider=self.name, field="subject"
                )
            _refuse_unsafe(subject, "subject", InvalidMessage, "subject")
        domain = mail_from.rpartition("@")[2]
        return Mail(
            mail_from=mail_from,
            from_header=from_header,
            rcpt=rcpt,
            subject=subject or None,
            message_id=f"{message.id}.smsgate@{domain}",
            carrier=carrier,
            mms=mms,
        )

    def _sender(self, message: Message) -> tuple[str, str]:
        """(envelope sender, From header): a sender with ``@`` is the address, else a name."""
        address = self.sender or ""
        name = self.from_name
        if message.sender:
            _refuse_unsafe(message.sender, "sender", InvalidMessage, "sender")
            if "@" in message.sender:
                address = _check_address(message.sender, "sender", InvalidMessage, "sender")
            else:
                name = message.sender
        return address, formataddr((name, address), charset="utf-8") if name else address

    def compose(
        self, message: Message, mail: Mail, attachments: list[tuple[str, str, bytes]]
    ) -> bytes:
        """The mail as bytes (CRLF line ends, 7-bit safe): plain text plus any media parts."""
        if not attachments:
            return self._compose_text(message, mail)
        email = EmailMessage(policy=_POLICY)
        email["From"] = mail.from_header
        email["To"] = mail.rcpt
        if mail.subject:
            email["Subject"] = mail.subject
        email["Date"] = self._date()
        email["Message-ID"] = f"<{mail.message_id}>"
        if message.body:
            email.set_content(message.body, subtype="plain", charset="utf-8")
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            email.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return email.as_bytes(policy=_POLICY)

    def _compose_text(self, message: Message, mail: Mail) -> bytes:
        # Built by hand: every value was checked (or made) by plan(), and the email package's
        # header parsing costs more CPU than the SMTP round trips of a pooled connection.
        text = message.body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        data = text.encode("utf-8")
        cte = "7bit"
        if not data.isascii() or (
            len(data) > 998 and any(len(line) > 998 for line in data.split(b"\r\n"))
        ):
            cte = "quoted-printable"
            data = binascii.b2a_qp(data, istext=True)
        lines = [f"From: {mail.from_header}", f"To: {mail.rcpt}"]
        if mail.subject:
            lines.append(f"Subject: {_header_text(mail.subject, 'Subject')}")
        lines += [
            f"Date: {self._date()}",
            f"Message-ID: <{mail.message_id}>",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
            f"Content-Transfer-Encoding: {cte}",
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head + data + (b"" if data.endswith(b"\r\n") else b"\r\n")

    def _date(self) -> str:
        """The Date header for now; it has whole seconds, so one formatting serves a second."""
        now = int(self.clock.time())
        last = self._last_date
        if last[0] != now:
            last = self._last_date = (now, formatdate(now, usegmt=True))
        return last[1]

    def _warn_length(self, message: Message) -> None:
        # No encoding takes more than two units a character: a short text needs no counting.
        if 2 * len(message.body) <= self.max_chars // 2:
            return
        from smsgate.encoding import segments

        info = segments(message.body)
        limit = self.max_chars if info.encoding == "GSM-7" else self.max_chars // 2
        if info.units > limit:
            text = (
                f"the text is {info.units} {info.encoding} units; gateways add the From address "
                "and "
                f"subject and split or cut texts past about {limit}"
            )
            logger.warning("%s", text)
            warnings.warn(text, LongTextWarning, stacklevel=3)

    # -- the send pipeline --------------------------------------------------------------------

    async def deliver(self, message: Message) -> SendResult:
        """Address, fetch media, then one SMTP transaction on a pooled connection."""
        mail = self.plan(message)
        self._warn_length(message)
        attachments = await self._fetch_media(message.media) if message.media else []
        payload = self.compose(message, mail, attachments)
        started = time.perf_counter()
        reply = await self._deliver(mail, payload, message)
        self.stats.sent += 1
        if logger.isEnabledFor(logging.DEBUG):
            # The recipient's number stays out of the log; the gateway domain says enough.
            logger.debug(
                "%s mail %s to @%s -> %d in %.1f ms",
                self.name,
                mail.message_id,
                mail.rcpt.rpartition("@")[2],
                reply.code,
                (time.perf_counter() - started) * 1000,
            )
        return self.result(
            message,
            # The relay queued the mail; gateways send no receipts, so this is as far as we see.
            status=Status.SENT,
            provider_message_id=mail.message_id,
            raw={
                "message_id": mail.message_id,
                "rcpt": mail.rcpt,
                "carrier": mail.carrier.key if mail.carrier else None,
                "reply": {"code": reply.code, "message": reply.message},
            },
        )

    # -- SMTP ---------------------------------------------------------------------------------

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self.connections)
        return pool

    def _take_idle(self, pool: _Pool) -> _Connection | None:
        now = self.clock.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.client.is_connected and now - conn.last_used < self.idle_timeout:
                return conn
            # Servers close idle sessions (Postfix after 300 s); a new one beats a failed MAIL.
            conn.client.close()
        return None

    def _release(self, pool: _Pool, conn: _Connection) -> None:
        conn.last_used = self.clock.monotonic()
        if pool.closed:
            conn.client.close()
        elif conn.client.is_connected:
            pool.idle.append(conn)

    async def _deliver(
        self, mail: Mail, payload: bytes, message: Message
    ) -> aiosmtplib.SMTPResponse:
        pool = self._pool()
        async with pool.slots:
            conn = self._take_idle(pool)
            retried = False
            while True:
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(pool)
                try:
                    reply = await self._transaction(conn, mail, payload, message)
                except _Failure as failure:
                    if failure.keep:
                        self._release(pool, conn)
                    else:
                        conn.client.close()
                    if failure.stale and reused and not retried:
                        # The server dropped a pooled session before taking anything: reconnect.
                        retried = True
                        self.stats.reconnects += 1
                        conn = None
                        continue
                    raise failure.error from None
                except BaseException:
                    conn.client.close()
                    raise
                conn.sent += 1
                self._release(pool, conn)
                return reply

    async def _connect(self, pool: _Pool) -> _Connection:
        if self.helo is None:
            import socket

            self.helo = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout.read,
            use_tls=self.tls == "implicit",
            start_tls=False,
            tls_context=self._context() if self.tls != "none" else None,
            local_hostname=self.helo,
        )
        stage = "connect"
        try:
            await client.connect(timeout=self.timeout.connect)
            self.stats.connections += 1
            if client.protocol is not None:
                pool.protocols.add(client.protocol)
            if self.tls == "starttls":
                stage = "tls"
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise ProviderUnavailable(
                        f"{self._server} does not offer STARTTLS; refusing to send mail and "
                        "credentials in the clear (use tls=implicit on port 465, or tls=none "
                        "for a loopback relay)",
                        provider=self.name,
                        field="tls",
                    )
                await client.starttls(timeout=self.timeout.connect)
            if self.username is not None:
                stage = "auth"
                await self._login(client)
                self.stats.logins += 1
            if client.is_ehlo_or_helo_needed:
                # aiosmtplib would greet lazily before its first MAIL; transactions bypass it.
                stage = "connect" if self.tls != "starttls" else "tls"
                await _greet(client)
            connection = _Connection(client, self.clock.monotonic())
        except SmsgateError:
            client.close()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise self._reply_error(exc.code, exc.message, stage, None, None) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            self._raise_connect_error(exc, stage)
        except BaseException:
            client.close()
            raise
        return connection

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        assert self.username is not None and self._password is not None
        await client.ehlo()
        if not client.supports_extension("auth"):
            raise AuthError(
                f"{self._server} offers no AUTH; drop USER:PASS from the URL for an open "
                "relay, or check tls=",
                provider=self.name,
            )
        # One mechanism, not aiosmtplib's try-them-all: a 535 is about the password, and a
        # second attempt would only count as another failed login against the account.
        methods = client.server_auth_methods
        if "plain" in methods:
            await client.auth_plain(self.username, self._password, timeout=self.timeout.read)
        elif "login" in methods:
            await client.auth_login(self.username, self._password, timeout=self.timeout.read)
        else:
            try:
                await client.login(self.username, self._password, timeout=self.timeout.read)
            except aiosmtplib.SMTPResponseException:
                raise  # a reply with a code: the caller maps it
            except aiosmtplib.SMTPException as exc:
                raise AuthError(f"{self._server}: {exc}", provider=self.name) from None

    def _raise_connect_error(self, exc: BaseException, stage: str) -> NoReturn:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise ProviderUnavailable(
                f"the TLS certificate of {self._server} is not trusted ({cause.verify_message}); "
                "pass ca_file=PATH to trust its CA",
                provider=self.name,
                field="ca_file",
            ) from None
        if isinstance(cause, ssl.SSLError):
            raise ProviderUnavailable(
                f"TLS with {self._server} failed ({cause.reason or cause}); "
                "check tls= and the port "
                "(465 is implicit TLS, 587 is STARTTLS)",
                provider=self.name,
                field="tls",
            ) from None
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            doing = "connecting to" if stage == "connect" else "setting up a session with"
            raise TransientError(
                f"timed out {doing} {self._server}; nothing was sent",
                provider=self.name,
            ) from None
        if isinstance(
            exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError
        ):
            reason = _os_reason(exc)
            raise TransientError(
                f"could not {'connect to' if stage == 'connect' else 'set up the session with'} "
                f"{self._server} ({reason}); nothing was sent",
                provider=self.name,
            ) from None
        raise ProviderUnavailable(
            f"SMTP session with {self._server} failed: {exc}", provider=self.name
        ) from None

    async def _transaction(
        self, conn: _Connection, mail: Mail, payload: bytes, message: Message
    ) -> aiosmtplib.SMTPResponse:
        replies = conn.replies
        timeout = self.timeout.read
        envelope = (
            ("mail", b"MAIL FROM:<%b>\r\n" % mail.mail_from.encode("ascii"), (250,)),
            ("rcpt", b"RCPT TO:<%b>\r\n" % mail.rcpt.encode("ascii"), (250, 251)),
            ("data", b"DATA\r\n", (354,)),
        )
        stage = "mail"
        refused: tuple[str, aiosmtplib.SMTPResponse] | None = None
        try:
            if conn.pipelining:
                replies.write(b"".join(command for _, command, _ in envelope))
            for stage, command, accepted in envelope:
                if not conn.pipelining:
                    replies.write(command)
                reply = await replies.read(timeout)
                if refused is None and reply.code not in accepted:
                    refused = (stage, reply)
                    if not conn.pipelining or reply.code == 421:
                        break
                elif refused is not None and reply.code == 354:
                    # DATA taken after MAIL or RCPT was refused: the server now waits for a
                    # message this session will not send, so the session goes.
                    conn.client.close()
                    break
            if refused is not None:
                raise await self._refusal(conn, *refused, mail, message)
            # Past the terminator a lost reply means the server may have queued the mail.
            replies.write(_dot_stuff(payload))
            stage = "message"
            reply = await replies.read(timeout)
            if reply.code != 250:
                raise await self._refusal(conn, stage, reply, mail, message)
            return reply
        except (aiosmtplib.SMTPException, ConnectionError) as exc:
            conn.client.close()
            if refused is not None:
                # Pipelined: the session failed while the replies after a refusal were read.
                raise await self._refusal(conn, *refused, mail, message) from None
            # Before the message went out nothing was taken: a pooled session the server has
            # closed meanwhile is stale, and the caller may reconnect and try once more.
            stale = False
            if isinstance(exc, aiosmtplib.SMTPTimeoutError):
                reason = f"no reply within {timeout:g} s"
            elif isinstance(exc, aiosmtplib.SMTPResponseException):
                reason = f"a garbled reply ({exc.message})"
            else:
                reason = f"the connection dropped ({_os_reason(exc)})"
                stale = stage != "message"
            raise _Failure(self._lost(stage, mail, reason), keep=False, stale=stale) from None

    async def _refusal(
        self,
        conn: _Connection,
        stage: str,
        reply: aiosmtplib.SMTPResponse,
        mail: Mail,
        message: Message,
    ) -> _Failure:
        """What a refusal (or an out-of-sequence reply) means for the send and the session."""
        client = conn.client
        if reply.code < 400:
            # The session cannot be trusted any more.
            client.close()
            return _Failure(self._lost(stage, mail, f"unexpected reply {reply.code}"), keep=False)
        error = self._reply_error(reply.code, reply.message, stage, mail, message)
        if reply.code == 421 or not client.is_connected:
            client.close()
            # 421 before MAIL was taken: the server is closing a session it no longer wants.
            return _Failure(error, keep=False, stale=stage == "mail")
        keep = stage == "message" or await self._reset(conn)
        return _Failure(error, keep=keep)

    def _lost(self, stage: str, mail: Mail, reason: str) -> SmsgateError:
        """The error for a session lost at ``stage``: ambiguous only once DATA was sent."""
        raw = {"stage": stage, "recipient": mail.rcpt, "reason": reason}
        if stage == "message":
            return AmbiguousSend(
                f"{self._server}: {reason} after the message to {mail.rcpt} was sent; "
                "it may have been accepted",
                provider=self.name,
                raw=raw,
            )
        return TransientError(
            f"{self._server}: {reason} at {stage.upper()}; nothing was sent",
            provider=self.name,
            raw=raw,
        )

    async def _reset(self, conn: _Connection) -> bool:
        """RSET after a refused transaction so the session can carry the next mail."""
        try:
            reply = await conn.replies.command(b"RSET\r\n", self.timeout.read)
        except (aiosmtplib.SMTPException, ConnectionError):
            reply = None
        if reply is None or reply.code != 250:
            conn.client.close()
            return False
        return True

    def _reply_error(
        self, code: int, text: str, stage: str, mail: Mail | None, message: Message | None
    ) -> SmsgateError:
        """An SMTP reply in the taxonomy; ``stage`` is the command it answered."""
        match = _ENHANCED.match(text)
        enhanced = match.group(1) if match else None
        reply = f"{code} {text}".strip()
        raw = {"stage": stage, "code": code, "enhanced": enhanced, "message": text}
        who = ""
        if mail is not None and message is not None:
            raw["recipient"] = mail.rcpt
            who = f"{mail.rcpt} ({message.to})"
        kwargs: dict[str, Any] = {"provider": self.name, "code": code, "raw": raw}
        if stage in ("connect", "tls"):
            if 400 <= code < 500:
                return TransientError(f"{self._server} is not taking mail now: {reply}", **kwargs)
            return ProviderUnavailable(f"{self._server} refused the session: {reply}", **kwargs)
        if stage == "auth" or code in (530, 534, 535, 538):
            if 400 <= code < 500:
                return TransientError(
                    f"{self._server} could not check the login now: {reply}", **kwargs
                )
            hint = ""
            if code == 534 or (enhanced or "").startswith("5.7.9"):
                hint = " (Gmail and others need an app password: https://support.google.com/mail/answer/185833)"
            return AuthError(
                f"{self._server} refused the login for {self.username}: {reply}{hint}", **kwargs
            )
        if code == 450 and enhanced == "4.2.1":
            return RateLimited(
                f"{self._server} is throttling mail to {who}: {reply}", retry_after=None, **kwargs
            )
        if 400 <= code < 500:
            return TransientError(
                f"{self._server} deferred the mail to {who}: {reply}; nothing was sent", **kwargs
            )
        if (enhanced or "").startswith("5.4.5"):
            return ProviderUnavailable(
                f"{self._server} says the account's sending quota is used up: {reply}", **kwargs
            )
        if stage == "mail":
            if code == 552:
                return InvalidMessage(
                    f"{self._server} refused the mail to {who} as too large: {reply}", **kwargs
                )
            text_ = f"{self._server} refused the sender {mail.mail_from if mail else ''}: {reply}"
            if message is not None and message.sender:
                return InvalidMessage(text_, field="sender", **kwargs)
            return ProviderUnavailable(
                f"{text_}; fix from= in the smtp:// URL", field="from", **kwargs
            )
        if stage == "rcpt":
            if code in (552, 554):
                return InvalidMessage(
                    f"{self._server} refused the mail to {who}: {reply}", **kwargs
                )
            return InvalidRecipient(
                f"{self._server} refused the recipient {who}: {reply}", field="to", **kwargs
            )
        if (enhanced or "").startswith("5.1."):
            return InvalidRecipient(
                f"{self._server} refused the recipient {who}: {reply}", field="to", **kwargs
            )
        return InvalidMessage(f"{self._server} rejected the message to {who}: {reply}", **kwargs)

    @property
    def _server(self) -> str:
        return f"{self.host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = self._make_ssl_context()
        return self._ssl_context

    def _make_ssl_context(self) -> ssl.SSLContext:
        try:
            # With a CA file only that CA is trusted: the emulator's certificate, nothing else.
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"smtp:// option ca_file={self.ca_file!r} cannot be loaded: {exc}", field="ca_file"
            ) from None

    # -- media --------------------------------------------------------------------------------

    async def _fetch_media(self, urls: tuple[str, ...]) -> list[tuple[str, str, bytes]]:
        """Download media for attachments: a total size cap, no fetches from private networks."""
        budget = self.media_max_bytes
        parts: list[tuple[str, str, bytes]] = []
        for index, url in enumerate(urls):
            data, content_type, final = await self._fetch_one(url, budget)
            budget -= len(data)
            parts.append((_filename(final, index, content_type), content_type, data))
        return parts

    def _media_http(self) -> HttpTransport:
        """smsgate's one HTTP client, for media hosts: the system's CAs (``ca_file`` is the
        SMTP server's), the provider's proxy setting and timeouts."""
        if self._media_transport is None:
            self._media_transport = HttpTransport(
                None,
                provider="the media host",
                options=TransportOptions(
                    timeout=self.timeout,
                    limits=Limits(max_connections=4, max_response_bytes=self.media_max_bytes),
                    proxy=self.transport_options.proxy,
                ),
            )
        return self._media_transport

    async def _fetch_one(self, url: str, budget: int) -> tuple[bytes, str, str]:
        shown = _shown(url)
        for _ in range(4):
            await self._check_media_host(url)
            try:
                resp = await self._media_http().request(
                    HttpRequest("GET", url, max_response_bytes=max(budget, 1))
                )
            except ResponseTooLarge:
                self._too_big(shown)
            except (ConfigError, ValueError):
                raise InvalidMessage(
                    f"media {shown} is not an http(s):// URL smsgate can fetch "
                    "(credentials in it are not sent)",
                    provider=self.name,
                    field="media",
                ) from None
            except SmsgateError as exc:
                # A GET changes nothing: whatever the transport's verdict, fetching again is safe.
                raise TransientError(
                    f"could not fetch media {shown}: {exc.message}",
                    provider=self.name,
                    field="media",
                ) from None
            location = resp.headers.get("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                # Follow by hand so every hop passes the private-address check.
                url = urljoin(url, location)
                shown = _shown(url)
                continue
            if resp.status >= 500:
                raise TransientError(
                    f"media {shown} answered HTTP {resp.status}; try later",
                    provider=self.name,
                    field="media",
                )
            if not resp.ok:
                raise InvalidMessage(
                    f"media {shown} answered HTTP {resp.status}", provider=self.name, field="media"
                )
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type:
                import mimetypes

                content_type = mimetypes.guess_type(urlsplit(url).path)[0] or ""
            if not content_type.startswith(_MEDIA_TYPES):
                raise InvalidMessage(
                    f"media {shown} is {content_type or 'of unknown type'}; gateways "
                    "take images, audio, video or text",
                    provider=self.name,
                    field="media",
                )
            if len(resp.body) > budget:
                self._too_big(shown)
            return resp.body, content_type, url
        raise InvalidMessage(
            f"media {shown} redirects too many times", provider=self.name, field="media"
        )

    def _too_big(self, shown: str) -> NoReturn:
        raise InvalidMessage(
            f"media {shown} would take the mail past {self.media_max_bytes} bytes; "
            "gateways drop large MMS "
            "(raise media_max_bytes= if your carrier takes more)",
            provider=self.name,
            field="media",
        )

    async def _check_media_host(self, url: str) -> None:
        if self.allow_private_media:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
        except OSError:
            raise TransientError(
                f"cannot resolve the media host {host}", provider=self.name, field="media"
            ) from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise InvalidMessage(
                    f"media {_shown(url)} points at a private address ({address}); "
                    "smsgate does not fetch "
                    "from private networks unless allow_private_media=true",
                    provider=self.name,
                    field="media",
                )

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.items()), {}
        for loop, pool in pools:
            pool.closed = True
            idle, pool.idle = pool.idle, []
            if loop is asyncio.get_running_loop():
                await asyncio.gather(*(_quit(conn) for conn in idle))
                await _closed(list(pool.protocols))
            elif not loop.is_closed() and loop.is_running():
                for conn in idle:
                    loop.call_soon_threadsafe(conn.client.close)
            else:
                for conn in idle:
                    with contextlib.suppress(Exception):
                        conn.client.close()
        if self._media_transport is not None:
            await self._media_transport.aclose()
        await super().aclose()


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that knows no extensions."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


async def _quit(conn: _Connection) -> None:
    try:
        if conn.client.is_connected:
            await conn.replies.command(b"QUIT\r\n", timeout=2)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        conn.client.close()


async def _closed(protocols: Iterable[SMTPProtocol], limit: float = 1.0) -> None:
    """Wait (``limit`` seconds at most) until every session's socket is really closed.

    A TLS transport closes over a few loop turns; a caller that stops its event loop right
    after ``aclose()`` (the sync Gateway does) would otherwise leave sockets open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while any(p.transport is not None for p in protocols) and loop.time() < deadline:
        await asyncio.sleep(0.005)


def _header_text(value: str, name: str) -> str:
    """A header value as 7-bit text: as is when plain ASCII, else RFC 2047 encoded words."""
    if value.isascii() and len(value) < 900:
        return value
    from email.header import Header

    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _dot_stuff(payload: bytes) -> bytes:
    # RFC 5321 4.5.2: a line starting with "." gets another; the body ends with CRLF "." CRLF.
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    if payload.startswith(b".") or b"\n." in payload:
        payload = re.sub(rb"(?m)^\.", b"..", payload)
    return payload + b".\r\n"


def _os_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__
    return "connection lost" if "lost" in str(exc).lower() else type(exc).__name__


def _shown(url: str) -> str:
    """A media URL safe for an error message: signed URLs carry secrets in their query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _filename(url: str, index: int, content_type: str) -> str:
    import mimetypes

    name = Path(urlsplit(url).path).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64].strip("._")
    if not name:
        extension = mimetypes.guess_extension(content_type) or ""
        name = f"media{index + 1}{extension}"
    return name
