"""A local SMTP relay for email-to-SMS: what Gmail's SMTP server is to seeds 000 and 001.

``smsgate emulate smtp [--port N] [--credentials USER:PASS] [--option spool=DIR]`` runs aiosmtpd
on loopback with STARTTLS (or ``--option tls=implicit|none``) using a CA and server certificate
generated at start; the CA is written to a temporary file whose path is printed, so clients trust
it (``ca_file=PATH`` for smsgate, ``SSL_CERT_FILE=PATH`` for smtplib) instead of switching
verification off. AUTH LOGIN and PLAIN are checked against the credentials, and every mail is
recorded: one ``.eml`` file per mail in the spool directory, and as JSON on a small HTTP side port
(``--option http_port=N``): ``GET /_emulator/messages`` (to, from, subject, body and attachments
per mail, plus connection and login counts), ``POST /_emulator/reset``, ``GET|POST
/_emulator/faults``.

Like Gmail, it offers PIPELINING (RFC 2920; ``--option pipelining=false`` for a relay without
it): replies to grouped MAIL and RCPT commands leave together with the next reply, and the JSON
counts those grouped writes as ``reply_groups``.

Faults, in SMTP terms (seeded, like the HTTP emulators'):

- ``latency``: every reply to MAIL, RCPT and DATA waits this many seconds (a slow relay);
- ``error_rate``: ``451 4.3.0`` at the end of DATA (deferred, nothing stored);
- ``rate_limit_rate``: ``450 4.2.1`` at RCPT ("receiving mail too quickly", Gmail's words);
- ``perm_fail_rate``: ``554 5.7.1`` at the end of DATA (rejected, nothing stored);
- ``drop_rate``: the connection is dropped when MAIL arrives (nothing accepted);
- ``reset_rate``: the mail is stored, then the connection drops before the 250 (ambiguous);
- ``hang_rate`` / ``hang_seconds``: the mail is stored, then the 250 is held back;
- ``max_per_connection``: after that many mails the next MAIL gets ``421 4.7.0`` and the
  connection closes, as relays that cap messages per session do.

Twilio's magic numbers fail here too, as permanent RCPT refusals (``550 5.1.1`` for invalid,
unreachable and landline numbers, ``550 5.7.1`` for opted-out and region-blocked ones): a
carrier gateway has no richer way to say so.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email
import hashlib
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import quote, urlencode

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from smsgate.emulators.base import Callbacks, EmulatedMessage, Emulator, Faults
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.emulators.tls import TlsFiles, generate_tls_files
from smsgate.errors import UnsupportedFeature

TLS_MODES = ("starttls", "implicit", "none")
_T = TypeVar("_T")
#: a header field name (RFC 5322 2.2: printable ASCII but the colon)
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: a Content-Type parameter list that is just a charset
_CHARSET_PARAMETER = re.compile(
    r'\s*charset\s*=\s*(?:"([\w.:-]+)"|([\w.:-]+))\s*', re.ASCII | re.IGNORECASE
)

_RCPT_REFUSALS: dict[Outcome, str] = {
    Outcome.INVALID_TO: "550 5.1.1 <{rcpt}>: mailbox unavailable (not a valid number)",
    Outcome.UNREACHABLE: "550 5.1.1 <{rcpt}>: mailbox unavailable (number not reachable)",
    Outcome.NOT_MOBILE: "550 5.1.1 <{rcpt}>: mailbox unavailable (not a mobile number)",
    Outcome.OPTED_OUT: "550 5.7.1 <{rcpt}>: the subscriber has blocked email-to-text messages",
    Outcome.REGION_NOT_ENABLED: "550 5.7.1 <{rcpt}>: relaying to this region is not permitted",
}


@dataclass(slots=True)
class SmtpFaults(Faults):
    """The HTTP emulators' faults plus three that only make sense for SMTP (see the module doc)."""

    perm_fail_rate: float = 0.0
    drop_rate: float = 0.0
    max_per_connection: float = 0.0

    @classmethod
    def from_faults(cls, faults: Faults | None, **extra: Any) -> SmtpFaults:
        """SMTP faults from the CLI's ``Faults`` plus ``--option`` values (strings or numbers)."""
        extra = {k: v for k, v in extra.items() if v is not None}
        if isinstance(faults, SmtpFaults) and not extra:
            return faults
        source = faults or Faults()
        names = [f.name for f in fields(source)]
        result = cls(**{name: getattr(source, name) for name in names})
        result.update(extra)
        return result


class _Session(Session):
    # aiosmtpd logs a deprecation warning whenever it sets login_data; keep it quiet.
    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Server(SMTP):
    """One client connection, with what the emulator needs to count, close or drop it."""

    def __init__(self, emulator: SmtpEmulator, serial: int, **kwargs: Any) -> None:
        super().__init__(_Handler(emulator), **kwargs)
        self.emulator = emulator
        self.serial = serial
        self.mails = 0
        self.close_after_reply = False
        self.abort_instead_of_reply = False
        #: the next reply may wait in ``held`` and leave with the one after it (RFC 2920)
        self.hold_next_reply = False
        self.held: list[bytes] = []

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL and RCPT address with the email package's header parser
        # (and defines a class per call); a bulk sender repeats a few addresses, so each once.
        parsed = self.emulator.addresses.get(arg)
        if parsed is None:
            parsed = self.emulator.addresses.remember(arg, super()._getaddr(arg))
        return parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            self.emulator.live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.emulator.live.discard(self)
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection without a word (no QUIT, no reply)."""
        transport = self.transport
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        elif transport is not None:
            transport.close()

    async def push(self, status: str | bytes) -> None:
        if self.abort_instead_of_reply:
            self.abort()
            return
        reply = (
            status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
            if isinstance(status, str)
            else status
        )
        hold, self.hold_next_reply = self.hold_next_reply, False
        if hold and not self.close_after_reply:
            # RFC 2920 3.1: replies to grouped MAIL and RCPT go out as a unit, with the next
            # reply or once the client's commands read so far are all answered, whichever is first.
            if not self.held:
                self.loop.call_soon(self._send_held)
            self.held.append(reply + b"\r\n")
            return
        if self.held:
            self.emulator.reply_groups += 1
            reply = b"".join(self.held) + reply
            self.held.clear()
        await super().push(reply)
        if self.close_after_reply and self.transport is not None:
            self.transport.close()

    def _send_held(self) -> None:
        held, self.held = self.held, []
        # uvloop's transports are not asyncio.WriteTransport subclasses, but they write.
        transport = cast(asyncio.WriteTransport | None, self.transport)
        if held and transport is not None and not transport.is_closing():
            self.emulator.reply_groups += len(held) > 1
            transport.write(b"".join(held))


class _Handler:
    """aiosmtpd hooks: auth is enforced at MAIL so aiosmtpd never warns about plaintext AUTH."""

    def __init__(self, emulator: SmtpEmulator) -> None:
        self.emulator = emulator

    async def handle_EHLO(
        self, server: _Server, session: Session, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.emulator.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: _Server, session: Session, envelope: Any, address: str, options: list[str]
    ) -> str:
        emulator = self.emulator
        server.hold_next_reply = emulator.pipelining
        await emulator.slow()
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        faults = emulator.faults
        limit = int(faults.max_per_connection)
        if limit and server.mails >= limit:
            server.close_after_reply = True
            return "421 4.7.0 Too many messages on one connection, closing"
        if emulator.roll() < faults.drop_rate:
            server.abort_instead_of_reply = True
            return "421 4.4.2 connection dropped"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: _Server, session: Session, envelope: Any, address: str, options: list[str]
    ) -> str:
        emulator = self.emulator
        server.hold_next_reply = emulator.pipelining
        await emulator.slow()
        if emulator.roll() < emulator.faults.rate_limit_rate:
            return (
                "450 4.2.1 The user you are trying to contact is receiving mail too quickly. "
                "Please resend your message at a later time."
            )
        number = emulator.recipient(address)[0]
        outcome = magic_outcome(number, "") if number.startswith("+") else None
        if outcome in _RCPT_REFUSALS:
            assert outcome is not None
            return _RCPT_REFUSALS[outcome].format(rcpt=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _Server, session: Session, envelope: Any) -> str:
        emulator = self.emulator
        await emulator.slow()
        faults = emulator.faults
        roll = emulator.roll()
        if roll < faults.error_rate:
            return "451 4.3.0 Mail server temporarily rejected message."
        roll -= faults.error_rate
        if roll < faults.perm_fail_rate:
            return "554 5.7.1 Message rejected: content refused by policy."
        roll -= faults.perm_fail_rate
        stored = emulator.store(server, envelope)
        server.mails += 1
        if roll < faults.reset_rate:
            server.abort_instead_of_reply = True
        elif roll - faults.reset_rate < faults.hang_rate:
            await asyncio.sleep(faults.hang_seconds)
        return f"250 2.0.0 OK queued as {stored[0].id if stored else 'nothing'}"


class SmtpEmulator(Emulator):
    """An SMTP relay on loopback that records every mail (see the module doc)."""

    name = "smtp"
    default_credentials = "emulator@smsgate.test:emulator-password"

    def __init__(
        self,
        *,
        credentials: str | None = None,
        faults: Faults | None = None,
        callbacks: Callbacks | None = None,
        inbound_url: str | None = None,
        spool: str | Path | None = None,
        http_port: int | str = 0,
        tls: str = "starttls",
        carrier: str | None = "googlefi",
        perm_fail_rate: float | str | None = None,
        drop_rate: float | str | None = None,
        max_per_connection: float | str | None = None,
        pipelining: bool | str = True,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls={tls!r}: use one of {', '.join(TLS_MODES)}")
        if isinstance(pipelining, str):
            if pipelining.lower() not in ("true", "false"):
                raise ValueError(f"pipelining={pipelining!r}: use true or false")
            pipelining = pipelining.lower() == "true"
        if credentials is not None and ":" not in credentials:
            raise ValueError("credentials must look like USER:PASS")
        smtp_faults = SmtpFaults.from_faults(
            faults,
            perm_fail_rate=perm_fail_rate,
            drop_rate=drop_rate,
            max_per_connection=max_per_connection,
        )
        super().__init__(
            credentials=credentials,
            faults=smtp_faults,
            callbacks=callbacks,
            inbound_url=inbound_url,
        )
        self.faults: SmtpFaults = smtp_faults
        self.spool = Path(spool) if spool else None
        self.http_port = int(http_port)
        self.tls = tls
        self.carrier = carrier or None
        #: advertise PIPELINING (RFC 2920) in the EHLO reply
        self.pipelining = pipelining
        self.smtp_host = "127.0.0.1"
        self.smtp_port = 0
        self.tls_files: TlsFiles | None = None
        self.live: set[_Server] = set()
        self.connections = 0
        self.logins = 0
        self.auth_failures = 0
        #: writes that carried replies to several pipelined commands
        self.reply_groups = 0
        self._server: asyncio.Server | None = None
        self._ssl: Any = None
        self._spooled = 0
        self._serial = 0
        self.addresses: _Memo[tuple[str | None, str | None]] = _Memo()
        self.recipients: _Memo[tuple[str, str | None]] = _Memo()

    # -- identity -----------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def password(self) -> str:
        return self.credentials.partition(":")[2]

    @property
    def ca_file(self) -> str | None:
        return str(self.tls_files.ca_file) if self.tls_files else None

    def provider_url(self) -> str:
        sender = self.username if "@" in self.username else "emulator@smsgate.test"
        options = {"from": sender, "tls": self.tls}
        if self.tls != "none" and self.ca_file:
            options["ca_file"] = self.ca_file
        if self.carrier:
            options["carrier"] = self.carrier
        query = urlencode(options, safe="/@", quote_via=quote)
        user, password = quote(self.username, safe=""), quote(self.password, safe="")
        return f"smtp://{user}:{password}@{self.smtp_host}:{self.smtp_port}?{query}"

    def describe(self) -> list[str]:
        mode = {"starttls": "STARTTLS", "implicit": "implicit TLS", "none": "no TLS"}[self.tls]
        lines = [
            f"smtp emulator listening on {self.smtp_host}:{self.smtp_port} ({mode})",
            f"credentials: {self.credentials}",
        ]
        if self.ca_file:
            lines.append(
                f"CA certificate: {self.ca_file} "
                "(smsgate: ca_file=PATH; default SSL contexts: SSL_CERT_FILE=PATH)"
            )
        lines.append(f"provider URL: {self.provider_url()}")
        lines.append(f"recorded mails: {self.url}/_emulator/messages")
        if self.spool:
            lines.append(f"spool: {self.spool} (one .eml per mail)")
        return lines

    # -- faults and recording -----------------------------------------------------------------

    def roll(self) -> float:
        return self._rng.random()

    async def slow(self) -> None:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)

    def recipient(self, address: str) -> tuple[str, str | None]:
        """The phone number (E.164 where the domain is known) and carrier key of an address."""
        found = self.recipients.get(address)
        if found is None:
            found = self.recipients.remember(address, _recipient(address))
        return found

    def store(self, server: _Server, envelope: Any) -> list[EmulatedMessage]:
        raw: bytes = envelope.original_content or b""
        mail = _read_plain_text(raw) or _read_mime(raw)
        text = mail.body.replace("\r\n", "\n")
        # MIME text ends with a line break the sender did not type.
        text = text[:-1] if text.endswith("\n") else text
        attachments = mail.attachments
        message_id = (_decoded(mail.header("message-id")) or "").strip().strip("<>")
        eml: str | None = None
        if self.spool is not None:
            self._spooled += 1
            self.spool.mkdir(parents=True, exist_ok=True)
            path = self.spool / f"{self._spooled:06d}-{secrets.token_hex(4)}.eml"
            path.write_bytes(raw)
            eml = str(path)
        shared = {
            "mail_from": envelope.mail_from,
            "subject": _decoded(mail.header("subject")),
            "attachments": attachments,
            "connection": server.serial,
            "tls": server.transport is not None
            and server.transport.get_extra_info("sslcontext") is not None,
            "eml": eml,
        }
        stored = []
        # A gateway turns each recipient of a mail into its own text: one record per RCPT.
        sender = _decoded(mail.header("from")) or ""
        for rcpt in envelope.rcpt_tos:
            number, carrier = self.recipient(rcpt)
            message = EmulatedMessage(
                id=message_id or f"emulator-{secrets.token_hex(8)}",
                to=number,
                sender=sender,
                body=text,
                status="accepted",
                created_at=time.time(),
                media=[str(a["filename"]) for a in attachments],
                # The same Message-ID to the same address again is a resend.
                reference=f"{message_id} {rcpt}" if message_id else None,
                fields={"rcpt": rcpt, "carrier": carrier, **shared},
            )
            stored.append(self.record(message))
        return stored

    def summary(self) -> dict[str, Any]:
        return {
            "count": len(self.messages),
            "duplicates": sum(m.duplicate for m in self.messages),
            "connections": self.connections,
            "logins": self.logins,
            "auth_failures": self.auth_failures,
            "reply_groups": self.reply_groups,
            "messages": [_view(m) for m in self.messages],
        }

    def reset(self) -> None:
        super().reset()
        self.connections = self.logins = self.auth_failures = self.reply_groups = 0

    def drop_connections(self) -> int:
        """Drop every client connection now, as a relay does at its idle timeout."""
        live = list(self.live)
        for server in live:
            server.abort()
        return len(live)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        if isinstance(auth_data, LoginPassword):
            # Both comparisons always run: no early exit that times out the user name.
            user_ok = secrets.compare_digest(auth_data.login, self.username.encode())
            password_ok = secrets.compare_digest(auth_data.password, self.password.encode())
            ok = user_ok and password_ok
        if ok:
            self.logins += 1
        else:
            self.auth_failures += 1
        return AuthResult(success=ok, handled=False)

    # -- the abstract HTTP-emulator parts that SMTP does not have -------------------------------

    def add_routes(self, app: web.Application) -> None:
        """No provider API over HTTP: the side port only serves ``/_emulator``."""

    def error_response(self, status: int, kind: str) -> web.Response:
        return web.json_response({"error": kind}, status=status)

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        """Carrier gateways send no delivery receipts; nothing is ever scheduled here."""

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        raise UnsupportedFeature("email-to-SMS has no inbound webhook: replies arrive as email")

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_emulator/messages", self._h_messages)
        app.router.add_post("/_emulator/reset", self._h_reset)
        app.router.add_get("/_emulator/faults", self._h_faults)
        app.router.add_post("/_emulator/faults", self._h_faults)
        return app

    # -- the servers --------------------------------------------------------------------------

    def _context(self) -> Any:
        import ssl

        assert self.tls_files is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_files.cert_file, self.tls_files.key_file)
        return context

    def _protocol(self) -> _Server:
        self.connections += 1
        self._serial += 1
        tls_context = self._ssl if self.tls == "starttls" else None
        return _Server(
            self,
            self._serial,
            hostname="smsgate-emulator",
            ident="smsgate SMTP emulator",
            tls_context=tls_context,
            require_starttls=self.tls == "starttls",
            auth_require_tls=self.tls == "starttls",
            authenticator=self._authenticate,
            loop=asyncio.get_running_loop(),
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start SMTP on ``host:port`` and the JSON side port; returns the side port's URL."""
        self.smtp_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if self.tls != "none":
            self.tls_files = await asyncio.to_thread(generate_tls_files, [self.smtp_host])
            self._ssl = self._context()
        loop = asyncio.get_running_loop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = await loop.create_server(
                self._protocol,
                host,
                port,
                ssl=self._ssl if self.tls == "implicit" else None,
                backlog=1024,
            )
        self.smtp_port = self._server.sockets[0].getsockname()[1]
        return await super().start(host, self.http_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        await super().stop()
        if self.tls_files is not None:
            shutil.rmtree(self.tls_files.directory, ignore_errors=True)


class _Mail(NamedTuple):
    """What the emulator records of a mail's content."""

    #: a header's value by lower-case name (the first one), None when absent
    header: Callable[[str], Any]
    body: str
    attachments: list[dict[str, Any]]


def _read_mime(raw: bytes) -> _Mail:
    """Any mail, read with the email package: the first plain text part and the attachments."""
    # compat32 parsing: the default policy's header objects cost more than the SMTP exchange.
    parsed = email.message_from_bytes(raw)
    body: str | None = None
    attachments = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        content = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if body is None and part.get_content_type() == "text/plain" and not filename:
            body = _text(content, part.get_content_charset())
            continue
        attachments.append(
            {
                "filename": _decoded(filename),
                "content_type": part.get_content_type(),
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
    return _Mail(parsed.get, body or "", attachments)


def _read_plain_text(raw: bytes) -> _Mail | None:
    """A one-part text/plain mail read directly; None for anything else (``_read_mime`` reads it).

    Most mails a gateway gets are exactly that (smsgate's and the seeds'), and the email package
    takes several times longer than the SMTP exchange to read one. Only what is certain here is
    read here: 7-bit header lines, a text/plain type with at most a charset, no disposition, and
    identity or quoted-printable transfer encoding; the values come out as the email package's
    compat32 policy gives them.
    """
    head, blank, payload = raw.partition(b"\r\n\r\n")
    if not blank or not head or head.startswith(b"\r\n") or not head.isascii():
        return None
    headers: dict[str, str] = {}
    name = ""
    for line in head.decode("ascii").split("\r\n"):
        if "\r" in line or "\n" in line:
            return None
        if line[:1] in (" ", "\t"):
            if not name:
                return None
            headers[name] += "\r\n" + line
            continue
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or not _HEADER_NAME.fullmatch(name) or name in headers:
            return None
        headers[name] = value.lstrip(" \t")
    content_type, _, params = headers.get("content-type", "text/plain").partition(";")
    charset = _CHARSET_PARAMETER.fullmatch(params) if params else None
    if (
        content_type.strip().lower() != "text/plain"
        or (params and charset is None)
        or "content-disposition" in headers
    ):
        return None
    encoding = headers.get("content-transfer-encoding", "").lower()
    if encoding == "quoted-printable":
        payload = binascii.a2b_qp(payload)
    elif encoding not in ("", "7bit", "8bit", "binary"):
        return None
    body = _text(payload, charset and (charset.group(1) or charset.group(2)).lower())
    return _Mail(headers.get, body, [])


def _text(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", "replace")
    except LookupError:
        return content.decode("utf-8", "replace")


def _recipient(address: str) -> tuple[str, str | None]:
    from smsgate.carriers import registry
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import normalize

    local, _, domain = address.rpartition("@")
    carriers = registry().by_domain(domain)
    carrier = carriers[0].key if carriers else None
    try:
        if local.startswith("+"):
            return normalize(local, strict=False), carrier
        if carriers and carriers[0].number_format.value == "national":
            return normalize(local, carriers[0].country, strict=False), carrier
        if carriers:
            return normalize(f"+{local}", strict=False), carrier
        # An unknown domain: ten digits read as North American, as most gateways were.
        return normalize(local, "US" if len(local) == 10 else None, strict=False), carrier
    except InvalidRecipient:
        return local, carrier


class _Memo(dict[str, _T]):
    """Results worth keeping per address; a bulk sender repeats a few, so a cap is enough."""

    limit = 65536

    def remember(self, key: str, value: _T) -> _T:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def _decoded(value: Any) -> str | None:
    """A header value with RFC 2047 encoded words decoded."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and "=?" not in value:
        return value  # nothing encoded: the email package would return it as it is
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError):
        return str(value)


def _view(message: EmulatedMessage) -> dict[str, Any]:
    f = message.fields
    return {
        "id": message.id,
        "to": message.to,
        "rcpt": f.get("rcpt"),
        "from": message.sender,
        "mail_from": f.get("mail_from"),
        "subject": f.get("subject"),
        "body": message.body,
        "attachments": f.get("attachments", []),
        "media": message.media,
        "carrier": f.get("carrier"),
        "connection": f.get("connection"),
        "tls": f.get("tls"),
        "eml": f.get("eml"),
        "duplicate": message.duplicate,
        "created_at": message.created_at,
    }
