"""smsgate's one HTTP client: HTTP/1.1 keep-alive pools, proxies, TLS trust, timeouts, size caps.

Every HTTP request the package makes goes through it: provider API calls, user webhooks
(server/webhooks_out.py) and the SMTP provider's media fetches. aiohttp's client remains only in
the emulators, which play the providers.

**Why our own.** A small client on asyncio's Protocol API with ``httptools`` (llhttp) parsing
the responses. A provider API needs one thing from HTTP: a request out and its response back
over a reused connection. aiohttp's client spends most of its CPU on what no provider uses
(cookie jars, redirect following, URL objects, tracing hooks, payload lookups); this one writes
each request as bytes in one call and parses the response as it arrives. bench/bulk_direct.py
against one loopback Twilio-compatible server, on an idle machine (when issue 12 was filed):
25,000 msg/s and 40 µs of client CPU per message over HTTP, 14,000 msg/s and 69 µs over TLS,
against bare aiohttp's 7,500 and 6,600 msg/s and the twilio SDK async client's 5,300 and 5,000.
On the 2-core machine shared with other work (load average 4 to 18), against the bench's lean
Twilio fake, client CPU per message is the steadier figure: HTTP 68-79 µs (aiohttp 169-225, SDK
230-311), TLS 106-131 µs (aiohttp 218-264, SDK 278-319); the rates swing with the neighbours
(four runs: HTTP 1.7-3.1x aiohttp and 2.6-3.9x the SDK, TLS 1.4-1.7x and 1.5-2.0x). Since TLS
sessions outlive a transport and each request's head, JSON answer and result cost less (load
average 4 to 7): HTTP 53-69 µs, TLS 89-112 µs (four runs), and 42-46 and 73-79 µs at load
average 1.4 (three runs, where the code before did 56-74 and 103-128); callgrind counts 22%
fewer client instructions per message over HTTP, 30% fewer over TLS. Instructions are the figure
a neighbour cannot move: bench/bulk_instructions.py counts a 4,000-message slice at 240,000 a
message over HTTP and 377,000 over TLS (its 100 handshakes included), against the twilio SDK's
971,000 and 1,198,000 and bare aiohttp's 711,000 and 935,000.

Over TLS a pool opens a connection per request in flight, up to ``max_connections``, each with a
handshake (about 1 ms of client CPU with OpenSSL 3.0, and the server's signature). New
connections resume the session the newest one to that host received (:class:`_ResumingContext`;
0.84 ms instead of 1.05 per handshake measured here, and no signature for the server). Transports
whose options trust the same CA files and present the same client certificate share one context
(:meth:`TransportOptions.ssl_context`), so a new transport (a Gateway per batch) resumes the
sessions an earlier one received instead of loading a context afresh and opening every
connection with a full handshake; and a connection that resumed does not read its session back
(CPython copies it through DER, decoding the certificate again). In callgrind a new connection
(with its first request) costs the client 12.4 million instructions before either change, 6.2
million with the shared context, about 4.5 with both. The handshakes still weigh: 100
connections for 4,000 messages cost about 112,000 instructions per message, nearly a third of a
message over TLS (of each connection's 4.5 million, CPython's copy of the session takes 1.65
and OpenSSL's handshake 2.2), and on loopback 16 connections carried 100 requests in flight with
about 30% less CPU at both ends than 100 did.
A pool that opens fewer connections than requests in flight must not cost a real network its
throughput, where a connection's round trip, not CPU, sets the pace and each connection adds to
it; until it can tell the two apart, the pool opens what is asked, and ``max_connections``
lowers it where the provider is near.

**Scope.** HTTP/1.1 only, one request at a time per connection (no pipelining, no HTTP/2);
``Content-Length`` and chunked bodies, gzip and deflate decoded. It does:

- proxies: ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` read as ``urllib.request`` reads them
  (``getproxies`` and ``proxy_bypass``), once per pool; or a ``proxy=`` option (``none`` to ignore
  the environment); ``user:password@`` in the proxy URL becomes ``Proxy-Authorization: Basic``.
  Plain HTTP goes to the proxy in absolute form; HTTPS goes through a ``CONNECT`` tunnel, TLS
  end to end. The proxy itself is spoken to in plain HTTP (an ``https://`` proxy URL is refused);
- TLS: the system's CAs or a ``ca_file=``, host name checks always, SNI, a client certificate
  (``client_cert=``, ``client_key=``), session resumption;
- Happy Eyeballs (RFC 8305) for names with several addresses: asyncio's own
  (``happy_eyeballs_delay``), aiohappyeyeballs on uvloop, whose ``create_connection`` lacks it;
- timeouts (:class:`Timeout`): connect, write, read (between response bytes) and total; one
  timer per pool checks them all, so they cost no timer per request;
- a cap on the decoded response body (``max_response_bytes``), enforced while it arrives.

It does not: follow redirects (a 3xx comes back as a 3xx, ``HttpResponse.ok`` false), keep
cookies, retry, resend, or speak to a proxy over TLS. Option names and one-line docs are in
:data:`TRANSPORT_OPTIONS`; :meth:`TransportOptions.from_query` reads them from a provider URL.
Secrets never appear in its messages: URLs are shown without userinfo and query, proxies
without credentials.

The transport's one job beyond moving bytes is to say *how* a request failed, because that decides
whether resending is safe: a refused connection never reached the provider (``TransientError``),
while a read timeout or a reset after the request was written may have (``AmbiguousSend``).

That includes a pooled keep-alive connection the server closes just as we reuse it. Browsers
resend such a request on a new connection, but the failure looks the same whether the server
dropped the connection while idle (nothing was read) or after it read and acted on the request
(a crash, a worker restart, a proxy timing out the upstream): no byte of a response tells them
apart. RFC 9110 (9.2.2) allows an automatic resend only for idempotent requests, and a send is
not idempotent whatever method carries it (SMSPM's API takes sends as GET too). So the transport
never resends a request it wrote: it reports ``AmbiguousSend`` and leaves the decision to the
caller's policy, which knows whether the provider drops repeated idempotency keys. What it does
instead is make the race rare. A close the loop has seen never costs a request:

- a connection the server closed while idle is dropped as soon as the loop sees the close (in
  ``eof_received``, a loop turn before ``connection_lost``);
- a connection whose transport is already closing (asyncio closes it on a read error before the
  protocol hears of it) is never handed out nor written to; should one reach a write anyway, the
  request fails as ``TransientError``: nothing was sent.

And a close still on its way when the request is written is made unlikely:

- idle connections are dropped after ``KEEPALIVE_SECONDS``, or a second before the idle timeout
  the server announces in ``Keep-Alive: timeout=N``;
- the most recently used idle connection (the least likely to have timed out) is reused first.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import sys
import time
import urllib.request
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar, cast
from urllib.parse import quote, quote_plus, unquote, urlencode, urlsplit

import aiohappyeyeballs
import httptools

from smsgate import jsonscan
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InvalidMessage,
    SmsgateError,
    TransientError,
)
from smsgate.message import JsonObject
from smsgate.redact import redact_url
from smsgate.slots import slot_setter

logger = logging.getLogger("smsgate.http")

#: the longest an idle keep-alive connection is kept for reuse
KEEPALIVE_SECONDS = 30.0
#: stop reusing a connection this long before the idle timeout the server announced ends
KEEPALIVE_MARGIN = 1.0

#: request headers the transport sets and a request may override
_DEFAULT_HEADERS = {
    "user-agent": "User-Agent: smsgate\r\n",
    "accept": "Accept: */*\r\n",
    "accept-encoding": "Accept-Encoding: gzip, deflate\r\n",
}
#: request headers that only the transport sets: they frame the message on the connection
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
#: characters a request target may carry as they are (RFC 3986 reserved and unreserved, and "%")
_UNSAFE_IN_TARGET = re.compile(r"[^A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]")
#: ASCII as quote_plus writes it in a form: unreserved characters as they are, space as "+"
_FORM_ESCAPES = {
    code: "+" if char == " " else char if char in "_.-~" or char.isalnum() else f"%{code:02X}"
    for code, char in ((code, chr(code)) for code in range(128))
}
_KEEPALIVE_TIMEOUT = re.compile(rb"timeout\s*=\s*(\d+)", re.IGNORECASE)
_NEVER = float("inf")
#: request heads a pool keeps (:meth:`HttpTransport._serialize`)
_MAX_HEADS = 64
#: what HttpResponse holds before its body is parsed (None is a parse's result: not JSON)
_UNPARSED: Any = object()
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed for each stage of an exchange.

    ``connect``: opening the connection (TCP, the proxy's CONNECT, the TLS handshake);
    ``write``: handing the whole request to the kernel once the connection is open;
    ``read``: waiting for the next response byte once the request is written (so a response that
    keeps trickling in never trips it: ``total`` bounds that);
    ``total``: the whole request, from asking for a connection to the last response byte
    (``None``: no bound beyond the others).
    """

    connect: float = 5.0
    read: float = 15.0
    write: float = 15.0
    total: float | None = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """At most ``max_connections`` connections open per keep-alive pool, so as many requests in
    flight. A transport keeps one pool per event loop (the sync API runs its own loop), plus one
    per loop for each other origin that requests name by absolute URL: the limit holds per pool,
    not across them. A response body (decoded) larger than ``max_response_bytes`` fails the
    request."""

    max_connections: int = 100
    max_response_bytes: int = 10_000_000


#: proxy option values that mean "connect directly, whatever the environment says"
_NO_PROXY_VALUES = frozenset({"none", "direct", "off"})

#: the transport options every HTTP provider URL takes, with a one-line doc each: what a
#: provider's option declarations include, so that every provider reads them the same way
TRANSPORT_OPTIONS: dict[str, str] = {
    "connect_timeout": "seconds to open a connection (TCP, proxy tunnel, TLS); default 5",
    "timeout": "seconds to wait for each response byte once the request is written; default 15",
    "write_timeout": "seconds to hand the whole request to the network; default 15",
    "total_timeout": "seconds for the whole request, 0 for no bound; default 60",
    "max_connections": "connections (so requests in flight) per keep-alive pool; default 100",
    "max_response_bytes": "largest response body accepted, decoded; default 10000000",
    "proxy": "http://[user:password@]host:port of a forward proxy, or none; default: the "
    "HTTP_PROXY / HTTPS_PROXY / NO_PROXY environment",
    "ca_file": "PEM file of the CAs to trust instead of the system's",
    "client_cert": "PEM file of a client certificate (with its key, or see client_key)",
    "client_key": "PEM file of the client certificate's private key",
}


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How a transport connects: timeouts, limits, proxy and TLS trust. Parse a provider URL's
    query with :meth:`from_query`; the option names are :data:`TRANSPORT_OPTIONS`' keys."""

    timeout: Timeout = field(default_factory=Timeout)
    limits: Limits = field(default_factory=Limits)
    #: a proxy URL; ``"none"`` to ignore the environment; ``None`` to read the environment
    proxy: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    #: RFC 8305's "Connection Attempt Delay": the head start of each address over the next
    happy_eyeballs_delay: float = 0.25

    def __post_init__(self) -> None:
        if self.limits.max_connections < 1:
            raise ConfigError(
                f"max_connections must be at least 1, got {self.limits.max_connections}",
                field="max_connections",
            )
        if self.proxy is not None and self.proxy.lower() not in _NO_PROXY_VALUES:
            _Proxy.parse(self.proxy, "proxy")
        for name in ("ca_file", "client_cert", "client_key"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(
                    f"{name}={path!r} is not a readable file; give the path of a PEM file",
                    field=name,
                )
        if self.client_key is not None and self.client_cert is None:
            raise ConfigError(
                "client_key is set without client_cert; give the certificate too",
                field="client_cert",
            )
        if self.ca_file is not None or self.client_cert is not None:
            self.ssl_context()  # a file that is not PEM fails where the URL is read

    @classmethod
    def from_query(cls, options: Mapping[str, str]) -> TransportOptions:
        """The transport options in a provider URL's query (other names are left alone)."""

        def seconds(name: str, default: float) -> float:
            value = _number(options, name, default)
            if value <= 0:
                raise ConfigError(
                    f"{name}={options[name]!r} must be more than 0 seconds", field=name
                )
            return value

        total = _number(options, "total_timeout", 60.0)
        if total < 0:
            raise ConfigError(
                f"total_timeout={options['total_timeout']!r} must be 0 (no bound) or more",
                field="total_timeout",
            )
        max_bytes = _number(options, "max_response_bytes", 10_000_000)
        if max_bytes < 1 or max_bytes != int(max_bytes):
            raise ConfigError(
                f"max_response_bytes={options['max_response_bytes']!r} must be a whole number "
                "of bytes, at least 1",
                field="max_response_bytes",
            )
        connections = _number(options, "max_connections", 100)
        if connections != int(connections):
            raise ConfigError(
                f"max_connections={options['max_connections']!r} must be a whole number",
                field="max_connections",
            )
        return cls(
            timeout=Timeout(
                connect=seconds("connect_timeout", 5.0),
                read=seconds("timeout", 15.0),
                write=seconds("write_timeout", 15.0),
                total=total or None,
            ),
            limits=Limits(max_connections=int(connections), max_response_bytes=int(max_bytes)),
            proxy=options.get("proxy") or None,
            ca_file=options.get("ca_file") or None,
            client_cert=options.get("client_cert") or None,
            client_key=options.get("client_key") or None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: these CAs (or the system's), host name checks on, the client
        certificate if any; it resumes TLS sessions (:class:`_ResumingContext`).

        Options that trust the same files, unchanged on disk, and present the same client
        certificate get the same context (:func:`_context_key`): its sessions outlive one
        transport, so a new one (a Gateway per batch) resumes them instead of 100 full handshakes.
        """
        key = _context_key(self.ca_file, self.client_cert, self.client_key)
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = self._new_ssl_context()
            while len(_CONTEXTS) > _MAX_CONTEXTS:
                _CONTEXTS.pop(next(iter(_CONTEXTS)), None)  # the oldest
        return context

    def _new_ssl_context(self) -> _ResumingContext:
        try:
            context = _ResumingContext.default(self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"ca_file={self.ca_file!r} cannot be loaded ({exc}); give a PEM file of CA "
                "certificates",
                field="ca_file",
            ) from None
        if self.client_cert is not None:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"client_cert={self.client_cert!r} cannot be loaded ({exc}); give PEM files "
                    "of the certificate and of its unencrypted key (client_key=)",
                    field="client_cert",
                ) from None
        return context


#: the contexts :meth:`TransportOptions.ssl_context` made, by :func:`_context_key`
_CONTEXTS: dict[tuple[object, ...], _ResumingContext] = {}
#: a process uses a handful of trust configurations; a bound all the same
_MAX_CONTEXTS = 32
#: environment variables the context's CA and key-log set-up reads
_TLS_ENVIRONMENT = ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE")


def _context_key(
    ca_file: str | None, client_cert: str | None, client_key: str | None
) -> tuple[object, ...]:
    """What a context is made from: the files (as they are now on disk, so an edited or replaced
    file gets a new context), and for the system's CAs where OpenSSL finds them and the
    environment that moves them. Equal keys trust the same CAs and present the same client
    certificate, so a session one made is as safe to resume for the other."""
    paths: list[str | None] = [ca_file, client_cert, client_key]
    if ca_file is None:
        defaults = ssl.get_default_verify_paths()
        paths += [defaults.cafile, defaults.capath]
    environment = (
        () if sys.flags.ignore_environment else tuple(map(os.environ.get, _TLS_ENVIRONMENT))
    )
    return (*((path, _file_identity(path)) for path in paths), environment)


def _file_identity(path: str | None) -> tuple[int, ...] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class _ResumingContext(ssl.SSLContext):
    """A client context whose connections resume the last TLS session of the same host.

    A full handshake costs both ends a key exchange, a signature and a certificate chain check
    (about 1 ms of client CPU with OpenSSL 3.0); a resumed one (a session ticket, RFC 8446 2.2)
    skips the signature and the chain. A pool opens up to ``max_connections`` connections at
    once, so all but the first few resume. The session is the one the newest connection to that
    host received, after its first response (the ticket arrives after the handshake). A server
    that refuses it (an expired or single-use ticket) answers with a full handshake, so an
    offer costs nothing when it fails. Sessions are keyed by host name: two ports of one host
    are one TLS identity, as the certificate check sees them.

    A connection that resumed does not replace the session it resumed: most servers' tickets
    can be used again, and reading a session out of a connection costs as much as a third of
    the handshake (CPython copies it through DER, decoding the server's certificate again).
    A server whose sessions resume once only (stateful TLS 1.3 sessions) shows itself by
    refusing, within :data:`_SINGLE_USE_SECONDS` of storing it, a session that has already
    resumed a connection; from then on every connection's own session is kept for that host.
    """

    sessions: dict[str | None, ssl.SSLSession]
    #: when each host's session was stored (``time.monotonic``)
    stored_at: dict[str | None, float]
    #: hosts whose stored session has resumed a connection
    resumed: set[str | None]
    #: hosts whose server takes each session once only
    single_use: set[str | None]
    #: the session each pending connection was offered
    offered: weakref.WeakKeyDictionary[ssl.SSLObject, ssl.SSLSession]

    @classmethod
    def default(cls, ca_file: str | None) -> _ResumingContext:
        """What ``ssl.create_default_context(cafile=ca_file)`` makes, as this class."""
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
        context.sessions, context.stored_at = {}, {}
        context.resumed, context.single_use = set(), set()
        context.offered = weakref.WeakKeyDictionary()
        if sys.version_info >= (3, 13):
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        if ca_file is not None:
            context.load_verify_locations(ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            context.keylog_filename = keylog
        return context

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        # asyncio and uvloop both start a connection's TLS here, with no session to offer.
        if session is not None or server_side:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        host = server_hostname.decode() if isinstance(server_hostname, bytes) else server_hostname
        session = self.sessions.get(host)
        ssl_object = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if session is not None:
            self.offered[ssl_object] = session
        return ssl_object

    def keep_session(self, host: str, transport: asyncio.BaseTransport) -> None:
        """Offer ``transport``'s session to the next connections to ``host``, if resumable
        (and unless it resumed a session that can be offered again)."""
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        offered = self.offered.pop(ssl_object, None)
        stored = self.sessions.get(host)
        if ssl_object.session_reused:
            if offered is not None and offered is stored:
                self.resumed.add(host)
            if host not in self.single_use:
                return
        elif (
            offered is not None
            and offered is stored
            and host in self.resumed
            and time.monotonic() - self.stored_at[host] < _SINGLE_USE_SECONDS
        ):
            self.single_use.add(host)
        session = ssl_object.session
        if session is not None and session.has_ticket:
            self.sessions[host] = session
            self.stored_at[host] = time.monotonic()
            self.resumed.discard(host)


#: a stored session refused this soon after it resumed a connection was single-use (an expired
#: one is refused too, but hours after it was stored)
_SINGLE_USE_SECONDS = 60.0


def _number(options: Mapping[str, str], name: str, default: float) -> float:
    value = options.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"option {name}={value!r} must be a number", field=name)
    return number


@dataclass(frozen=True, slots=True)
class _Proxy:
    """A forward proxy: where to connect, and the Proxy-Authorization line to send it."""

    host: str
    port: int
    #: "Proxy-Authorization: Basic ...\r\n", or "" without credentials
    authorization: str
    #: the proxy URL without its credentials, for messages
    shown: str

    @classmethod
    def parse(cls, url: str, what: str) -> _Proxy:
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme != "http" or not parts.hostname:
            why = (
                "the transport speaks plain HTTP to the proxy (and TLS to the server through "
                "its CONNECT tunnel)"
                if parts is not None and parts.scheme == "https"
                else "it is not an http://host:port URL"
            )
            raise ConfigError(
                f"{what} {redact_url(url)!r} cannot be used: {why}; write it as "
                "http://[user:password@]proxy.example:3128",
                field="proxy",
            )
        authorization = ""
        if parts.username is not None:
            credentials = basic_auth(unquote(parts.username), unquote(parts.password or ""))
            authorization = f"Proxy-Authorization: {credentials}\r\n"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(parts.hostname, port or 80, authorization, f"http://{host}:{port or 80}")

    @classmethod
    def for_origin(cls, origin: _Origin, configured: str | None) -> _Proxy | None:
        """The proxy requests to ``origin`` go through: the configured one, else the
        environment's as ``urllib.request`` reads it (``NO_PROXY`` applies to it), else none."""
        if configured is not None:
            if configured.lower() in _NO_PROXY_VALUES:
                return None
            return cls.parse(configured, "proxy")
        url = urllib.request.getproxies().get("https" if origin.tls else "http")
        if not url or urllib.request.proxy_bypass(f"{origin.host}:{origin.port}"):
            return None
        variable = "HTTPS_PROXY" if origin.tls else "HTTP_PROXY"
        return cls.parse(url, f"the {variable} environment variable's proxy")


class ResponseTooLarge(AmbiguousSend):
    """The response body went past the transport's ``max_response_bytes``; the request was sent."""


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    params: Mapping[str, str] | list[tuple[str, str]] | None = None
    #: a form (mapping or pairs), or the body itself (bytes, or str sent as UTF-8)
    data: Mapping[str, Any] | list[tuple[str, str]] | bytes | str | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    #: a tighter cap than the transport's ``Limits.max_response_bytes`` for this response
    max_response_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response as the server sent it: a 3xx is a 3xx (the transport follows no redirect),
    the body decoded from gzip or deflate."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    #: what :meth:`json` parsed, kept: a send's answer is read by the acceptance check and by
    #: the provider's parser, and parsing it is the costliest step of reading it
    _parsed: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """A 2xx: the only answer that can mean success (a 3xx means "ask elsewhere")."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The parsed JSON body, or ``None`` when the body is not JSON. An object comes back as
        a :class:`JsonObject`, which remembers the body it was parsed from. The body is parsed
        once: every call returns the same value, so a caller must not change it."""
        value = self._parsed
        if value is not _UNPARSED:
            return value
        body = self.body
        try:
            if body[:1] == b"{" and body[1:2] not in (b"\x00", b""):
                # an object in UTF-8 (no BOM, not UTF-16), as json.loads would decode it
                value = jsonscan.loads(body.decode("utf-8", "surrogatepass"))
            else:
                value = json.loads(body)
        except ValueError:
            value = None
        if type(value) is dict:
            value = JsonObject(value)
            value.body = self.body
        _set_parsed(self, value)
        return value


# A response per request, built slot by slot (smsgate.slots says why).
_set_status = slot_setter(HttpResponse, "status")
_set_headers = slot_setter(HttpResponse, "headers")
_set_body = slot_setter(HttpResponse, "body")
_set_parsed = slot_setter(HttpResponse, "_parsed")


def _new_response(status: int, headers: Headers, body: bytes) -> HttpResponse:
    response: HttpResponse = object.__new__(HttpResponse)
    _set_status(response, status)
    _set_headers(response, headers)
    _set_body(response, body)
    _set_parsed(response, _UNPARSED)
    return response


class Headers(Mapping[str, str]):
    """Response header fields with case-insensitive names; a repeated field's values joined by
    ", " (RFC 9110 5.3). Decoded on first use: most responses are read for their body only."""

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields
        self._index: dict[str, tuple[str, str]] | None = None

    def _lookup(self) -> dict[str, tuple[str, str]]:
        if self._index is None:
            index: dict[str, tuple[str, str]] = {}
            for raw_name, raw_value in self._fields:
                name = raw_name.decode("latin-1")
                value = raw_value.decode("utf-8", "replace")
                key = name.lower()
                seen = index.get(key)
                index[key] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> str:
        return self._lookup()[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._lookup().values())

    def __len__(self) -> int:
        return len(self._lookup())

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@lru_cache(maxsize=64)
def basic_auth(user: str, password: str) -> str:
    """An ``Authorization: Basic`` header value (cached: it is built for every request)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where connections go (scheme, host, port) and the request head lines they all share."""

    tls: bool
    host: str
    port: int
    #: host[:port] as the Host header and a CONNECT request name it
    authority: str
    #: the Host line and the default headers, in the order they are sent
    default_head: str

    @classmethod
    def parse(cls, url: str, what: str = "base_url") -> tuple[_Origin, str]:
        """The origin of ``url`` and its path and query (the request target).

        Errors name ``what`` and show the URL without its userinfo and query (where secrets go).
        """
        example = "e.g. https://api.example.com"
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigError(
                f"{what} {redact_url(url)!r} is not a valid URL ({exc}); write it as {example}",
                field=what,
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{what} {redact_url(url)!r} is not an http:// or https:// URL with a host; "
                f"write it as {example}",
                field=what,
            )
        if "@" in parts.netloc:
            fix = (
                "put credentials in the provider URL (scheme://credentials@sender), not in base_url"
                if what == "base_url"
                else "they are never sent; use HttpRequest.auth"
            )
            raise ConfigError(
                f"{what} {redact_url(url)!r} carries credentials (user:password@); {fix}",
                field=what,
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ConfigError(
                f"{what} {redact_url(url)!r} has an invalid port; use one from 1 to 65535",
                field=what,
            )
        tls = parts.scheme == "https"
        default_port = 443 if tls else 80
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if port is not None and port != default_port:
            host = f"{host}:{port}"
        head = f"Host: {host}\r\n" + "".join(_DEFAULT_HEADERS.values())
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return cls(tls, parts.hostname, port or default_port, host, head), target

    def head_without(self, overridden: set[str]) -> str:
        """The default head lines minus those a request sets itself."""
        return "".join(
            line
            for line in self.default_head.splitlines(keepends=True)
            if line.partition(":")[0].lower() not in overridden
        )


def validate_base_url(url: str) -> None:
    """Raise ``ConfigError`` (field ``base_url``) unless ``url`` can be a transport's base URL."""
    _Origin.parse(url.rstrip("/"), "base_url")


class HttpTransport:
    """Keep-alive connection pools per event loop (sync callers run on their own loop).

    ``base_url`` is prepended to relative request paths; without one (``None``) every request
    names an absolute URL (webhooks, media). ``provider`` names the other side in errors.
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        provider: str,
        timeout: Timeout | None = None,
        limits: Limits | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        if options is None:
            options = TransportOptions(timeout=timeout or Timeout(), limits=limits or Limits())
        elif timeout is not None or limits is not None:
            raise ValueError("give timeout and limits inside options, or options not at all")
        self.options = options
        self.provider = provider
        self.timeout = options.timeout
        self.limits = options.limits
        self.base_url = base_url.rstrip("/") if base_url is not None else None
        self._origin: _Origin | None = None
        #: the base URL's path: every request path is appended to it
        self._prefix = ""
        if self.base_url is not None:
            self._origin, prefix = _Origin.parse(self.base_url)
            self._prefix = prefix.partition("?")[0]
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        #: pools for requests whose path is an absolute URL elsewhere than the base URL
        self._other_pools: dict[tuple[asyncio.AbstractEventLoop, _Origin], _Pool] = {}
        self._ssl_context: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The options' CAs (system CAs by default), host name checks on (built on first use:
        loading the system CAs takes a while)."""
        if self._ssl_context is None:
            self._ssl_context = self.options.ssl_context()
        return self._ssl_context

    def _pool(self, origin: _Origin | None) -> _Pool:
        loop = asyncio.get_running_loop()
        if origin is None or origin == self._origin:
            pool = self._pools.get(loop)
            if pool is None or pool.closed:
                if self._origin is None:
                    raise ValueError(
                        "this transport has no base_url: request an absolute http(s):// URL"
                    )
                pool = self._pools[loop] = self._new_pool(loop, self._origin)
            return pool
        other = self._other_pools.get((loop, origin))
        if other is None or other.closed:
            other = self._other_pools[(loop, origin)] = self._new_pool(loop, origin)
        return other

    def _new_pool(self, loop: asyncio.AbstractEventLoop, origin: _Origin) -> _Pool:
        # Pools of loops that were closed (a caller's asyncio.run per call) hold dead sockets.
        # list() copies the keys in one step: another loop's thread may add a pool meanwhile.
        for key in list(self._pools):
            if key.is_closed():
                self._pools.pop(key, None)
        for pair, pool in list(self._other_pools.items()):
            # Absolute URLs name ever new hosts (webhook receivers, media hosts): a pool with
            # nothing open or waiting is dropped rather than kept for a host that may not return.
            if pair[0].is_closed():
                self._other_pools.pop(pair, None)
            elif pair[0] is loop and pool.open == 0 and not pool.waiters:
                self._other_pools.pop(pair, None)
                pool.close()
        # The proxy is chosen once per pool: the environment is read when the pool is made.
        return _Pool(self, origin, loop, _Proxy.for_origin(origin, self.options.proxy))

    async def request(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; the response whatever its status (redirects are not followed).

        Raises ``TransientError`` when nothing was sent (no connection, a write refused before
        its first byte) and ``AmbiguousSend`` when the request may have reached the server
        (no response, or a broken one, after it was written).
        """
        path = request.path
        absolute = "://" in path
        if absolute:
            origin, target = _Origin.parse(path, "request URL")
            pool = self._pool(origin)
            target = target or "/"
        else:
            target = self._prefix + path
            pool = self._pool(None)
        payload = self._serialize(request, pool, target)
        started = pool.loop.time()
        total = self.timeout.total
        deadline = _NEVER if total is None else started + total
        connection = pool.take_idle()
        if connection is None:
            connection = await pool.acquire(deadline)
        try:
            response = await connection.exchange(
                payload,
                request.method == "HEAD",
                deadline,
                request.max_response_bytes or self.limits.max_response_bytes,
            )
        except BaseException:
            pool.drop(connection)
            raise
        pool.release(connection)
        if logger.isEnabledFor(logging.DEBUG):
            # Path only: a query string can carry credentials (APIs that take them as GET
            # parameters) or phone numbers (lookups that filter by recipient).
            logger.debug(
                "%s %s %s -> %d in %.1f ms",
                self.provider,
                request.method,
                "<absolute url>" if absolute else path.split("?", 1)[0],
                response.status,
                (pool.loop.time() - started) * 1000,
            )
        return response

    def _serialize(self, request: HttpRequest, pool: _Pool, target: str) -> bytes:
        """The request as bytes; refuses, before any I/O, what cannot be sent as asked."""
        body, content_type = _encode_body(request)
        auth = request.auth
        if request.headers or request.params or not (auth is None or type(auth) is tuple):
            head = self._head(request, pool, target, content_type)
        else:
            # A provider sends every message to one path with the same credentials: the head
            # up to Content-Length is the same bytes each time, built once per pool.
            key = (request.method, target, auth, content_type)
            cached = pool.heads.get(key)
            if cached is None:
                cached = self._head(request, pool, target, content_type)
                if len(pool.heads) >= _MAX_HEADS:
                    pool.heads.clear()  # paths with ids in them (status lookups) never repeat
                pool.heads[key] = cached
            head = cached
        if body or request.method in _METHODS_WITH_BODY:
            return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        return head + b"\r\n"

    def _head(
        self, request: HttpRequest, pool: _Pool, target: str, content_type: str | None
    ) -> bytes:
        """The request line and the header lines but Content-Length, as bytes."""
        origin = pool.origin
        if _UNSAFE_IN_TARGET.search(target) is not None:
            # Spaces, line breaks, non-ASCII: percent-encoded, never sent raw.
            target = quote(target.partition("#")[0], safe="/:@!$&'()*+,;=?%[]~")
        if request.params:
            target += ("&" if "?" in target else "?") + urlencode(request.params, doseq=True)
        headers = request.headers
        # Through a proxy (plain HTTP), the target is the absolute URL (RFC 9112 3.2.2).
        parts = [f"{request.method} {pool.target_prefix}{target} HTTP/1.1\r\n"]
        if headers:
            names = {name.lower() for name in headers}
            if not names.isdisjoint(_FRAMING_HEADERS) or (
                request.auth is not None and "authorization" in names
            ):
                raise ValueError(
                    f"headers {sorted(names & (_FRAMING_HEADERS | {'authorization'}))} are set by "
                    "the transport (use HttpRequest.auth for Authorization)"
                )
            parts.append(
                origin.default_head
                if names.isdisjoint(_DEFAULT_HEADERS) and "host" not in names
                else origin.head_without(names)
            )
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
                bad = next(n for n, v in headers.items() if "\r" in n + v or "\n" in n + v)
                raise InvalidMessage(
                    f"the {bad} header contains a line break; remove CR and LF from its value",
                    field=bad,
                )
            parts.append(lines)
            if "content-type" in names:
                content_type = None
        else:
            parts.append(origin.default_head)
        if pool.proxy_head:
            parts.append(pool.proxy_head)  # through a proxy, with credentials
        if request.auth is not None:
            parts.append(f"Authorization: {basic_auth(*request.auth)}\r\n")
        if content_type is not None:
            parts.append(f"Content-Type: {content_type}\r\n")
        return "".join(parts).encode()

    async def aclose(self) -> None:
        pools = [*self._pools.items(), *((key[0], pool) for key, pool in self._other_pools.items())]
        self._pools, self._other_pools = {}, {}
        for loop, pool in pools:
            if loop is asyncio.get_running_loop():
                await pool.aclose()
            elif not loop.is_closed() and loop.is_running():
                loop.call_soon_threadsafe(pool.close)


def _encode_body(request: HttpRequest) -> tuple[bytes, str | None]:
    """The body and the Content-Type it implies (None when there is no body)."""
    data = request.data
    if data is not None:
        if request.json is not None:
            raise ValueError("an HttpRequest takes data or json, not both")
        if isinstance(data, bytes):
            return data, "application/octet-stream"
        if isinstance(data, str):
            return data.encode(), "text/plain; charset=utf-8"
        return _form_encode(data), "application/x-www-form-urlencoded"
    if request.json is not None:
        return json.dumps(request.json).encode(), "application/json"
    return b"", None


def _form_encode(data: Mapping[str, Any] | list[tuple[str, str]]) -> bytes:
    """``urlencode(data, doseq=True)``, about three times faster for what sends carry: text."""
    # A list (what providers build) skips the ABC check a Mapping needs.
    pairs = data if type(data) is list else data.items() if isinstance(data, Mapping) else data
    encoded = []
    escapes = _FORM_ESCAPES
    for name, value in pairs:
        if type(name) is not str or type(value) is not str:
            return urlencode(data, doseq=True).encode()  # sequences, numbers, bytes
        # str.translate runs in C; quote_plus calls Python code for every byte.
        encoded.append(
            f"{name.translate(escapes) if name.isascii() else quote_plus(name)}="
            f"{value.translate(escapes) if value.isascii() else quote_plus(value)}"
        )
    return "&".join(encoded).encode()


class _Pool:
    """Keep-alive connections to one origin on one loop: at most ``max_connections`` open.

    ``open`` counts connections open or being opened. A request takes the most recently used idle
    connection, else opens one if under the limit, else queues; a released connection goes to
    the longest-waiting request first, so waiters are served in arrival order.
    """

    def __init__(
        self,
        transport: HttpTransport,
        origin: _Origin,
        loop: asyncio.AbstractEventLoop,
        proxy: _Proxy | None,
    ) -> None:
        self.provider = transport.provider
        self.timeout = transport.timeout
        self.limit = transport.limits.max_connections
        self.transport = transport
        self.origin = origin
        self.loop = loop
        self.proxy = proxy
        #: a plain-HTTP request through a proxy names the origin in its target, and carries the
        #: proxy's credentials; through a CONNECT tunnel (HTTPS) the proxy sees neither
        proxied = proxy is not None and not origin.tls
        self.target_prefix = f"http://{origin.authority}" if proxied else ""
        #: None unless requests go to the proxy as plain HTTP: the Proxy-Authorization line
        self.proxy_head = proxy.authorization if proxy is not None and proxied else None
        #: request heads by (method, target, auth, content type), up to Content-Length
        self.heads: dict[tuple[str, str, tuple[str, str] | None, str | None], bytes] = {}
        self.open = 0
        self.idle: list[_Connection] = []
        #: a waiter gets a connection, or None: a place in the pool to open one in
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.connections: set[_Connection] = set()
        self.sweeper: asyncio.TimerHandle | None = None
        #: checks the write, read and total timeouts of every pending exchange: one timer per
        #: pool, because a timer per request costs about 8 µs of CPU (uvloop), more than parsing
        #: the response
        self.watchdog: asyncio.TimerHandle | None = None
        #: how often it checks: a timeout fires up to this late (a tenth of it, at most 1 s)
        shortest = min(self.timeout.read, self.timeout.write, self.timeout.total or _NEVER)
        self.watch_interval = min(1.0, max(0.01, shortest / 10))
        self.closed = False

    def take_idle(self) -> _Connection | None:
        """The most recently used idle connection still fit for a request, if any (no wait)."""
        idle = self.idle
        if idle:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                connection.idle = False
                if connection.expires_at > now and connection.usable:
                    return connection
                self.drop(connection)
        return None

    async def acquire(self, deadline: float = _NEVER) -> _Connection:
        """A connection: idle, new, or handed over when one is free; by ``deadline`` (loop time)
        or ``TransientError`` (nothing was sent)."""
        if deadline == _NEVER:
            return await self._acquire()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._acquire()
        except TimeoutError:
            raise TransientError(
                f"no connection to {self.provider} within the total timeout "
                f"({self.timeout.total:g} s); nothing was sent",
                provider=self.provider,
            ) from None

    async def _acquire(self) -> _Connection:
        while True:
            connection = self.take_idle()
            if connection is not None:
                return connection
            if self.open < self.limit and not self.waiters:
                self.open += 1
                return await self.connect()
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(waiter.result())
                raise
            if handed is None:
                return await self.connect()
            if handed.usable:
                return handed
            # Closed between the hand-over and now: free its place (if drop() has not) and queue
            # again.
            self.drop(handed)

    def _give_back(self, handed: _Connection | None) -> None:
        """Return what a waiter was handed and cannot use: a connection, or its place (None)."""
        if handed is None:
            self.open -= 1
            self._grant()
        else:
            self.release(handed)

    def _grant(self) -> None:
        """Give free places in the pool to waiting requests, first come first served."""
        while self.waiters and self.open < self.limit:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.open += 1
                waiter.set_result(None)

    async def connect(self) -> _Connection:
        """Open a connection in a place already counted in ``open``."""
        try:
            async with asyncio.timeout(self.timeout.connect):
                connection = await self._open()
        except BaseException as exc:
            self._give_back(None)
            raise self._connect_error(exc) from None
        if not connection.usable:  # closed by the server before we could write a byte
            connection.close()
            self._give_back(None)
            raise TransientError(
                f"{self.provider} closed the connection as soon as it opened",
                provider=self.provider,
            )
        connection.pooled = True
        self.connections.add(connection)
        return connection

    async def _open(self) -> _Connection:
        """Connect directly, through a proxy (HTTP) or through a proxy's CONNECT tunnel (TLS)."""
        origin, proxy = self.origin, self.proxy
        context = self.transport.ssl_context() if origin.tls else None
        if proxy is None or not origin.tls:
            host, port = (origin.host, origin.port) if proxy is None else (proxy.host, proxy.port)
            _, connection = await self._create_connection(
                lambda: _Connection(self), host, port, context, origin.host if context else None
            )
            return connection
        assert context is not None
        raw, handshake = await self._create_connection(
            lambda: _TunnelHandshake(self.loop), proxy.host, proxy.port, None, None
        )
        try:
            raw.write(
                f"CONNECT {origin.authority} HTTP/1.1\r\nHost: {origin.authority}\r\n"
                f"{proxy.authorization}\r\n".encode()
            )
            status = await handshake.answered
            if not 200 <= status < 300:
                raise _ProxyRefused(status)
            connection = _Connection(self)
            tls = await self.loop.start_tls(raw, connection, context, server_hostname=origin.host)
        except BaseException:
            raw.abort()
            raise
        assert tls is not None
        connection.connection_made(tls)
        return connection

    async def _create_connection(
        self,
        factory: Callable[[], _P],
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> tuple[asyncio.Transport, _P]:
        """``loop.create_connection`` with Happy Eyeballs (RFC 8305) for a name with several
        addresses: asyncio's own where the loop has it, else aiohappyeyeballs (uvloop's
        ``create_connection`` takes no ``happy_eyeballs_delay``)."""
        loop = self.loop
        delay = self.transport.options.happy_eyeballs_delay
        sock = None
        if _is_ip_address(host):
            pass
        elif isinstance(loop, asyncio.BaseEventLoop):
            transport, protocol = await loop.create_connection(
                factory,
                host,
                port,
                ssl=context,
                server_hostname=server_hostname,
                happy_eyeballs_delay=delay,
                interleave=1,
            )
            return transport, protocol
        else:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=delay, interleave=1, loop=loop
            )
        try:
            if sock is not None:
                transport, protocol = await loop.create_connection(
                    factory, sock=sock, ssl=context, server_hostname=server_hostname
                )
            else:
                transport, protocol = await loop.create_connection(
                    factory, host, port, ssl=context, server_hostname=server_hostname
                )
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        return transport, protocol

    def _connect_error(self, exc: BaseException) -> BaseException:
        """What a failed connect means: nothing reached the provider, so resending is safe."""
        provider = self.provider
        via = f" through the proxy {self.proxy.shown}" if self.proxy is not None else ""
        if isinstance(exc, _ProxyRefused):
            shown = self.proxy.shown if self.proxy is not None else "?"
            if exc.status in (401, 407):
                # 407 is the standard answer; tinyproxy answers a tunnel request with 401.
                return AuthError(
                    f"the proxy {shown} refused its credentials (HTTP {exc.status}) when "
                    f"asked to connect to {provider}; fix the user:password in the proxy URL",
                    provider=provider,
                    field="proxy",
                )
            return TransientError(
                f"the proxy {shown} refused to connect to {provider} "
                f"(HTTP {exc.status}); nothing was sent",
                provider=provider,
                field="proxy",
            )
        if isinstance(exc, TimeoutError):
            return TransientError(f"timed out connecting to {provider}{via}", provider=provider)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TransientError(
                f"{provider}'s TLS certificate failed verification ({exc.verify_message})",
                provider=provider,
            )
        if isinstance(exc, ssl.SSLError):
            return TransientError(
                f"TLS handshake with {provider} failed ({exc.reason or exc})", provider=provider
            )
        if isinstance(exc, OSError):
            return TransientError(
                f"could not connect to {provider}{via} ({exc.strerror or type(exc).__name__})",
                provider=provider,
            )
        return exc

    def release(self, connection: _Connection) -> None:
        """Take back a connection whose exchange ended; keep it if the response allows."""
        if connection.exchanges == 1 and self.origin.tls and connection.transport is not None:
            context = self.transport.ssl_context()
            if isinstance(context, _ResumingContext):
                context.keep_session(self.origin.host, connection.transport)
        if not connection.reusable or not connection.usable or self.closed:
            self.drop(connection)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.expires_at = self.loop.time() + connection.keepalive
        connection.idle = True
        self.idle.append(connection)
        if self.sweeper is None:
            self.sweeper = self.loop.call_at(connection.expires_at, self._sweep)

    def drop(self, connection: _Connection) -> None:
        """Close ``connection`` and free its place in the pool (once, however often called)."""
        connection.close()
        if connection.idle:
            connection.idle = False
            self.idle.remove(connection)
        if connection.pooled:
            connection.pooled = False
            self.connections.discard(connection)
            self.open -= 1
            self._grant()

    def _sweep(self) -> None:
        """Close connections idle past their keep-alive time, so idle sockets do not pile up."""
        self.sweeper = None
        now = self.loop.time()
        for connection in [c for c in self.idle if c.expires_at <= now]:
            self.drop(connection)
        if self.idle:
            soonest = min(connection.expires_at for connection in self.idle)
            self.sweeper = self.loop.call_at(soonest, self._sweep)

    def watch(self) -> None:
        """Fail exchanges past a timeout: the write not done in ``Timeout.write``, no response
        byte for ``Timeout.read``, not done by the total deadline. Re-arms while any wait."""
        self.watchdog = None
        now = self.loop.time()
        timeout = self.timeout
        waiting = False
        for connection in list(self.connections):
            if connection.waiter is None:
                continue
            transport = connection.transport
            if now >= connection.deadline:
                connection.timed_out("total timeout", timeout.total or 0.0)
            elif transport is not None and transport.get_write_buffer_size():
                if now - connection.written_at >= timeout.write:
                    connection.timed_out("write timeout", timeout.write)
                    continue
                # The read timeout counts from the end of the write, not from its start.
                connection.last_read = now
                waiting = True
            elif now - connection.last_read >= timeout.read:
                connection.timed_out("read timeout", timeout.read)
            else:
                waiting = True
        if waiting:
            self.watchdog = self.loop.call_at(now + self.watch_interval, self.watch)

    def close(self) -> None:
        self.closed = True
        for timer in (self.sweeper, self.watchdog):
            if timer is not None:
                timer.cancel()
        self.sweeper = self.watchdog = None
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    TransientError(
                        f"the {self.provider} transport was closed before the request was sent",
                        provider=self.provider,
                    )
                )
        for connection in list(self.connections):
            if connection.waiter is not None:
                connection.fail(
                    AmbiguousSend(
                        f"the {self.provider} transport was closed while waiting for the "
                        "response; the message may have been accepted",
                        provider=self.provider,
                    )
                )
            self.drop(connection)

    async def aclose(self, limit: float = 1.0) -> None:
        """Close every connection and wait (``limit`` s at most) until the sockets are closed.

        A TLS connection closes over a few loop turns; a caller that stops its loop right after
        (the sync Gateway does) would otherwise leave sockets open.
        """
        closing = list(self.connections)
        self.close()
        losses = [c.lost for c in closing if not c.lost.done()]
        if losses:
            await asyncio.wait(losses, timeout=limit)


class _ProxyRefused(Exception):
    """The proxy answered CONNECT with something other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _TunnelHandshake(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT (with llhttp); TLS to the origin starts after it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = httptools.HttpResponseParser(self)
        #: the proxy's status code, or the reason it never gave one
        self.answered: asyncio.Future[int] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(OSError(errno.EPROTO, f"the proxy's answer is not HTTP ({exc})"))

    def on_headers_complete(self) -> None:
        # A 2xx to CONNECT has no body: the tunnel starts right after the head. llhttp, not
        # knowing the request was CONNECT, would wait for a body: the parser stops here.
        if not self.answered.done():
            self.answered.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            OSError(errno.ECONNRESET, "the proxy closed the connection before answering CONNECT")
        )

    def _fail(self, exc: OSError) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its response (httptools callbacks)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        #: the pending exchange's result; None while idle
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.fields: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.status = 0
        self.head_only = False
        self.headers_done = False
        self.received = False
        self.exchanges = 0
        #: when the pending exchange last made progress (written, or a response byte read)
        self.last_read = 0.0
        #: when the pending request was handed to the transport, and its size in bytes
        self.written_at = 0.0
        self.written = 0
        #: loop time by which the pending exchange must end (``Timeout.total``)
        self.deadline = _NEVER
        #: the pending response's body cap and the body bytes received so far
        self.max_bytes = 0
        self.size = 0
        #: whether the last response leaves the connection open for another request
        self.reusable = False
        self.keepalive = KEEPALIVE_SECONDS
        self.expires_at = 0.0
        #: counted in the pool's ``open`` / in its idle list
        self.pooled = False
        self.idle = False
        self.dead = False

    # -- driven by the request ----------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open at both ends as far as the loop knows: a request written to it can be answered.

        A transport can be closing before this protocol hears of it: asyncio closes it on a read
        error and calls ``connection_lost`` a loop turn later.
        """
        return not self.dead and self.transport is not None and not self.transport.is_closing()

    def exchange(
        self,
        payload: bytes,
        head_only: bool,
        deadline: float = _NEVER,
        max_bytes: int | None = None,
    ) -> asyncio.Future[HttpResponse]:
        """Write ``payload``; the future resolves to the response or fails with the reason.

        Raises ``TransientError`` when the connection cannot take the write: nothing was sent.
        """
        transport = self.transport
        if transport is None or not self.usable:
            # The pool hands out no closing connection; this guards the write all the same,
            # because asyncio would drop the bytes (or send them on a socket it is closing).
            raise self._not_sent("it is closing")
        self.head_only = head_only
        self.headers_done = self.received = self.reusable = False
        self.deadline = deadline
        self.max_bytes = max_bytes or self.pool.transport.limits.max_response_bytes
        self.size = 0
        try:
            transport.write(payload)
        except (RuntimeError, OSError) as exc:
            # A transport refuses the write before sending a byte: uvloop raises RuntimeError for
            # a closed handle, both loops for a write after write_eof(); send errors are reported
            # through connection_lost instead.
            raise self._not_sent(type(exc).__name__) from None
        self.exchanges += 1
        waiter = self.waiter = self.loop.create_future()
        self.last_read = self.written_at = self.loop.time()
        self.written = len(payload)
        if self.pool.watchdog is None:
            self.pool.watch()
        return waiter

    def _not_sent(self, why: str) -> TransientError:
        self.close()
        provider = self.pool.provider
        return TransientError(
            f"the connection to {provider} could not take the request ({why}); nothing was sent",
            provider=provider,
        )

    def fail(self, error: SmsgateError) -> None:
        """End the pending exchange, if any, with ``error``; the connection cannot be reused."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close(abort=True)

    def close(self, *, abort: bool = False) -> None:
        if self.dead:
            return
        self.dead = True
        # A request abandoned mid-exchange (cancelled) leaves the connection in an unknown state.
        abort = abort or self.waiter is not None
        self.waiter = None
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def timed_out(self, what: str, seconds: float) -> None:
        """End the pending exchange: ``what`` (a timeout) passed ``seconds`` before it ended."""
        provider = self.pool.provider
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        # On plain TCP the buffer holds the request's own bytes: all of them still there means
        # the kernel took none. (Under TLS it holds records, whose size tells nothing.)
        if not self.pool.origin.tls and buffered >= self.written and not self.received:
            error: SmsgateError = TransientError(
                f"{provider} took no byte of the request within the {what} ({seconds:g} s); "
                "nothing was sent",
                provider=provider,
            )
        else:
            if buffered:
                what_failed = f"the request to {provider} was not fully written"
            elif self.received:
                what_failed = f"no complete response from {provider}"
            else:
                what_failed = f"no response from {provider}"
            error = AmbiguousSend(
                f"{what_failed} within {seconds:g} s (the {what}); "
                "the message may have been accepted",
                provider=provider,
            )
        self.fail(error)

    # -- asyncio.Protocol ----    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # The server spoke out of turn (some send a 408 before closing an idle connection).
            self.pool.drop(self)
            return
        self.received = True
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._failed_after_send("it switched protocols")
        except httptools.HttpParserError as exc:
            self._failed_after_send(f"malformed response: {exc}")

    def eof_received(self) -> bool | None:
        # The server closed its side. Out of the pool now, not a loop turn later when
        # connection_lost runs: a request in that turn would be written to a closing connection.
        # A connection with an exchange pending ends in connection_lost (a body may end here).
        if self.waiter is None:
            self.pool.drop(self)
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.dead = True
        if self.waiter is None:
            self.pool.drop(self)  # idle (or just handed over): its place is free
        elif exc is None and self._body_ends_at_close():
            self._complete(reusable=False)
        elif (
            isinstance(exc, ssl.SSLError)
            and "ALERT" in str(exc.reason)
            and self.exchanges == 1
            and not self.received
        ):
            # TLS 1.3 lets the client write before the server has checked its certificate; a
            # server refusing it answers the first request with an alert and closes. It never
            # read the request as HTTP: nothing was sent.
            provider = self.pool.provider
            self.fail(
                TransientError(
                    f"{provider} ended the TLS handshake ({exc.reason}); check client_cert= "
                    "and client_key=; nothing was sent",
                    provider=provider,
                    field="client_cert",
                )
            )
        else:
            self._failed_after_send(type(exc).__name__ if exc else "closed by the server")

    def _failed_after_send(self, why: str) -> None:
        provider = self.pool.provider
        if not self.received and self.exchanges > 1:
            # A reused keep-alive connection closed before any response byte: the server may
            # have timed it out unread, or read the request and then gone; see the module doc.
            message = (
                f"{provider} closed a reused keep-alive connection without answering ({why}); "
                "the message may have been accepted"
            )
        else:
            message = (
                f"connection to {provider} dropped after the request was sent ({why}); "
                "the message may have been accepted"
            )
        self.fail(AmbiguousSend(message, provider=provider))

    def _body_ends_at_close(self) -> bool:
        """Whether the response is complete at end of stream (no length, not chunked)."""
        if not self.headers_done or self.head_only:
            return False
        if self.status in (204, 304) or 100 <= self.status < 200:
            return False
        names = {name.lower() for name, _ in self.fields}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.head_only and self.status >= 200:
            # llhttp cannot be told a HEAD response has no body; finish here, never reuse.
            self._complete(reusable=False)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_bytes:
            self._too_large()
            return
        self.chunks.append(body)

    def _too_large(self) -> None:
        if self.waiter is not None:
            provider = self.pool.provider
            self.fail(
                ResponseTooLarge(
                    f"{provider}'s response is larger than {self.max_bytes} bytes (the "
                    "max_response_bytes limit); the message may have been accepted",
                    provider=provider,
                    field="max_response_bytes",
                )
            )

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            # An interim response (100 Continue, 103 Early Hints): the real one follows.
            self.fields = []
            self.chunks = []
            self.headers_done = False
            return
        self._complete(reusable=self.parser.should_keep_alive())

    def _complete(self, *, reusable: bool) -> None:
        waiter, self.waiter = self.waiter, None
        # Fresh lists: bytes after this response must not reach the one handed out.
        fields, chunks = self.fields, self.chunks
        self.fields, self.chunks = [], []
        if waiter is None or waiter.done():
            self.reusable = False  # a response nobody asked for: the connection is confused
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = None
        for name, value in fields:
            # Length first: a cheap filter before comparing names case-insensitively.
            if len(name) == 16 and name.lower() == b"content-encoding":
                encoding = value
            elif len(name) == 10 and name.lower() == b"keep-alive" and reusable:
                announced = _KEEPALIVE_TIMEOUT.search(value)
                if announced is not None:
                    seconds = int(announced.group(1)) - KEEPALIVE_MARGIN
                    self.keepalive = min(KEEPALIVE_SECONDS, seconds)
                    reusable = seconds > 0
        if reusable and self.pool.proxy_head is not None and not _says_keep_alive(fields):
            # Forward proxies (tinyproxy, for one) close the connection after each response
            # without saying so: a reuse would race that close and end ambiguous.
            reusable = False
        if encoding is not None:
            try:
                body = _decode(body, encoding, self.max_bytes)
            except OverflowError:
                self.waiter = waiter
                self._too_large()
                return
            except zlib.error:
                self.reusable = reusable
                waiter.set_exception(
                    AmbiguousSend(
                        f"{self.pool.provider}'s response body could not be decoded "
                        f"({encoding.decode('latin-1')}); the message may have been accepted",
                        provider=self.pool.provider,
                    )
                )
                return
        self.reusable = reusable
        waiter.set_result(_new_response(self.status, Headers(fields), body))


def _says_keep_alive(fields: list[tuple[bytes, bytes]]) -> bool:
    """Whether a Connection or Proxy-Connection field says ``keep-alive``."""
    return any(
        name.lower() in (b"connection", b"proxy-connection") and b"keep-alive" in value.lower()
        for name, value in fields
    )


def _decode(body: bytes, content_encoding: bytes, limit: int) -> bytes:
    """Undo gzip and deflate codings, last applied first; other codings are left as they are.

    Raises ``OverflowError`` when a decoded body would pass ``limit`` bytes (a small gzip body
    can inflate a thousandfold): decoding stops there, never holding more than the limit.
    """
    for coding in reversed(content_encoding.lower().split(b",")):
        coding = coding.strip()
        if coding in (b"gzip", b"x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, limit)
        elif coding == b"deflate":
            # RFC 9110 says zlib-wrapped; some servers send a raw deflate stream.
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except zlib.error:
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        elif coding not in (b"identity", b""):
            break
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    body = inflater.decompress(data, limit + 1)
    if len(body) > limit:
        raise OverflowError(limit)
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return body
