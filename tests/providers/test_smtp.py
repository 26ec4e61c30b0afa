"""Email-to-SMS over SMTP, against a real aiosmtpd server on loopback (smsgate's SMTP emulator).

The HTTP contract (``tests/providers/contract.py``) does not fit an SMTP provider as a whole (no
webhooks, no Retry-After, media fetched by the client, one country per gateway), so the same
promises are checked here in SMTP terms: the send reaches the gateway address, errors map into
the taxonomy with the code and raw reply kept, ambiguity is reported only after DATA, and no
secret leaks.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import logging
import socket
import socketserver
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import phonenumbers
import pytest

import smsgate
from smsgate.carriers import CarrierDeprecatedWarning, CarrierStatus, NumberFormat, registry
from smsgate.clock import FakeClock
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.smtp import SmtpEmulator, SmtpFaults
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
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.smtp import LongTextWarning, SmtpProvider
from smsgate.providers.url import ProviderURL
from tests.support.proxy import Proxy

GOOD = "+15555550100"
GOOD_2 = "+15555550101"
MAGIC_INVALID = "+15005550001"
MAGIC_OPTED_OUT = "+15005550004"
INJECTION = "\r\nBcc: victim@example.com"


def with_options(url: str, **options: Any) -> str:
    joiner = "&" if "?" in url else "?"
    return url + joiner + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in options.items())


def without_option(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    kept = [part for part in query.split("&") if not part.startswith(f"{name}=")]
    return base + ("?" + "&".join(kept) if kept else "")


def emu(thread: EmulatorThread) -> SmtpEmulator:
    """The running SMTP emulator behind a thread handle (typed)."""
    emulator = thread.emulator
    assert isinstance(emulator, SmtpEmulator)
    return emulator


@pytest.fixture
def start() -> Iterator[Callable[..., EmulatorThread]]:
    running: list[EmulatorThread] = []

    def start(**options: Any) -> EmulatorThread:
        faults = options.pop("faults", None) or SmtpFaults(seed=7)
        thread = SmtpEmulator(faults=faults, **options).run_in_thread()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.stop()


@pytest.fixture
def emulator(start: Callable[..., EmulatorThread]) -> EmulatorThread:
    return start()


def summary(emulator: EmulatorThread) -> dict[str, Any]:
    result: dict[str, Any] = emulator.call(emu(emulator).summary)
    return result


def set_faults(emulator: EmulatorThread, **values: float) -> None:
    emulator.call(lambda: emu(emulator).faults.update(values))


def url_of(emulator: EmulatorThread, **options: Any) -> str:
    return (
        with_options(emu(emulator).provider_url(), **options)
        if options
        else emu(emulator).provider_url()
    )


def gateway(emulator: EmulatorThread, **options: Any) -> smsgate.Gateway:
    return smsgate.Gateway.from_url(url_of(emulator, **options))


# -- sending ---------------------------------------------------------------------------------


def test_send_goes_to_the_gateway_address_with_the_message_id(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        result = gw.send(GOOD, "Your code is 481902")
    assert result.ok and result.status is Status.SENT
    assert result.provider == "smtp"
    assert result.segments == 1 and result.encoding == "GSM-7"
    [stored] = summary(emulator)["messages"]
    assert stored["rcpt"] == "5555550100@msg.fi.google.com"
    assert stored["to"] == GOOD
    assert stored["body"] == "Your code is 481902"
    assert stored["id"] == result.provider_message_id
    assert stored["from"] == stored["mail_from"] == "emulator@smsgate.test"
    assert stored["subject"] is None  # carriers prepend a subject to the text: none unless asked
    assert stored["tls"] is True
    assert result.raw["reply"]["code"] == 250 and result.raw["carrier"] == "googlefi"


def test_unicode_body_subject_and_sender_name_arrive_intact(emulator: EmulatorThread) -> None:
    with gateway(emulator, from_name="Zoë's Café") as gw:
        result = gw.send(GOOD, "Привет 😜 — ça va?", provider_options={"subject": "Zoë: réunion"})
    assert result.encoding == "UCS-2"
    [stored] = summary(emulator)["messages"]
    assert stored["body"] == "Привет 😜 — ça va?"
    assert stored["subject"] == "Zoë: réunion"
    assert stored["from"] == "Zoë's Café <emulator@smsgate.test>"


def test_a_line_starting_with_a_dot_survives_dot_stuffing(emulator: EmulatorThread) -> None:
    body = "first\n.\n..two dots\n.end"
    with gateway(emulator) as gw:
        gw.send(GOOD, body)
    assert summary(emulator)["messages"][0]["body"] == body


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
def test_plain_starttls_and_implicit_tls(start: Callable[..., EmulatorThread], tls: str) -> None:
    emulator = start(tls=tls)
    assert f"tls={tls}" in emu(emulator).provider_url()
    with gateway(emulator) as gw:
        assert gw.send(GOOD, f"over {tls}").ok
    data = summary(emulator)
    assert data["messages"][0]["tls"] is (tls != "none")
    assert data["logins"] == 1


def test_smtps_scheme_means_implicit_tls_on_465() -> None:
    provider = create_provider("smtps://me%40example.com:pw@smtp.example.com?carrier=googlefi")
    assert isinstance(provider, SmtpProvider)
    assert (provider.tls, provider.port) == ("implicit", 465)
    starttls = create_provider("smtp://me%40example.com:pw@smtp.example.com")
    assert isinstance(starttls, SmtpProvider)
    assert (starttls.tls, starttls.port, starttls.sender) == ("starttls", 587, "me@example.com")


# -- connections and logins ------------------------------------------------------------------


def test_one_connection_and_one_login_for_100_messages(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        for i in range(100):
            assert gw.send(GOOD, f"message {i}").ok
    data = summary(emulator)
    assert data["count"] == 100
    assert data["connections"] == 1 and data["logins"] == 1
    assert {m["connection"] for m in data["messages"]} == {1}


def test_send_many_uses_at_most_the_pool_and_logs_in_once_per_connection(
    emulator: EmulatorThread,
) -> None:
    with gateway(emulator, connections=1) as gw:
        results = gw.send_many([Message(to=GOOD, body=f"bulk {i}") for i in range(100)])
    assert all(r.ok for r in results)
    assert (summary(emulator)["connections"], summary(emulator)["logins"]) == (1, 1)
    emulator.call(emu(emulator).reset)
    with gateway(emulator, connections=4) as gw:
        results = gw.send_many([Message(to=GOOD, body=f"bulk {i}") for i in range(100)])
    assert all(r.ok for r in results)
    data = summary(emulator)
    assert data["count"] == 100
    assert 1 <= data["connections"] <= 4 and data["logins"] == data["connections"]


def test_reconnects_after_the_server_drops_an_idle_connection(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        assert gw.send(GOOD, "one").ok
        assert emulator.call(emu(emulator).drop_connections) == 1
        assert gw.send(GOOD, "two").ok
    data = summary(emulator)
    assert data["count"] == 2 and data["connections"] == 2 and data["logins"] == 2


def test_reconnects_when_the_server_closes_a_session_at_mail(
    start: Callable[..., EmulatorThread],
) -> None:
    # The relay answers MAIL on a pooled session with 421 and closes it: nothing was taken, so
    # the provider opens a new session and sends the same mail once.
    emulator = start(max_per_connection=5)
    provider = create_provider(url_of(emulator))
    assert isinstance(provider, SmtpProvider)

    async def run() -> list[smsgate.SendResult]:
        try:
            return [await provider.asend(Message(to=GOOD, body=f"n{i}")) for i in range(12)]
        finally:
            await provider.aclose()

    results = asyncio.run(run())
    assert all(r.ok for r in results)
    data = summary(emulator)
    assert data["count"] == 12 and data["duplicates"] == 0
    assert data["connections"] == 3
    assert provider.stats.reconnects == 2 and provider.stats.logins == 3


def test_a_connection_dropped_before_anything_was_taken_is_transient(
    emulator: EmulatorThread,
) -> None:
    set_faults(emulator, drop_rate=1)
    with gateway(emulator) as gw, pytest.raises(TransientError) as info:
        gw.send(GOOD, "hello")
    assert "nothing was sent" in info.value.message
    assert summary(emulator)["count"] == 0


def test_idle_connections_past_idle_timeout_are_replaced(emulator: EmulatorThread) -> None:
    clock = FakeClock()
    provider = create_provider(url_of(emulator, idle_timeout=30), clock=clock)

    async def run() -> None:
        try:
            await provider.asend(Message(to=GOOD, body="one"))
            clock.advance(31)
            await provider.asend(Message(to=GOOD, body="two"))
        finally:
            await provider.aclose()

    asyncio.run(run())
    assert summary(emulator)["connections"] == 2


# -- pipelining ------------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelining_when_offered_and_refusals_keep_the_session(
    start: Callable[..., EmulatorThread], pipelining: bool
) -> None:
    # With PIPELINING, MAIL, RCPT and DATA of each mail are answered in one group; without it
    # they go one at a time. Either way a refused recipient costs no session.
    emulator = start(pipelining=pipelining)
    numbers = [GOOD, MAGIC_INVALID, GOOD_2, MAGIC_OPTED_OUT, "+15555550102"]
    with gateway(emulator, connections=1) as gw:
        results = gw.send_many([Message(to=n, body=f"to {n}") for n in numbers])
        set_faults(emulator, rate_limit_rate=1)
        [throttled] = gw.send_many([Message(to=GOOD, body="too quick")])
        set_faults(emulator, rate_limit_rate=0)
        assert gw.send(GOOD, "and again").ok
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert isinstance(results[1].error, InvalidRecipient) and results[1].error.code == "550"
    assert isinstance(throttled.error, RateLimited)
    data = summary(emulator)
    assert [m["body"] for m in data["messages"]] == [
        f"to {GOOD}",
        f"to {GOOD_2}",
        "to +15555550102",
        "and again",
    ]
    assert (data["connections"], data["logins"]) == (1, 1)
    assert data["reply_groups"] == (7 if pipelining else 0)


class ScriptedServer:
    """A plain SMTP server on loopback whose replies a test scripts: what a relay rarely does.

    ``answer`` maps a command (``"."`` for the end of a message) to the reply bytes; ``dribble``
    sends every reply a byte at a time.
    """

    def __init__(self, answer: Callable[[str], bytes], *, dribble: bool = False) -> None:
        self.connections = 0
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.send(b"220 scripted ready\r\n")
                while line := self.rfile.readline():
                    command = line.decode("ascii").rstrip("\r\n")
                    outer.commands.append(command)
                    verb = command.partition(" ")[0].upper()
                    if verb == "EHLO":
                        self.send(b"250-scripted\r\n250-PIPELINING\r\n250 HELP\r\n")
                    elif verb == "QUIT":
                        self.send(b"221 bye\r\n")
                        return
                    else:
                        reply = answer(command)
                        self.send(reply)
                        if reply.startswith(b"354") and not self.read_message():
                            return

            def read_message(self) -> bool:
                lines = []
                while (line := self.rfile.readline()) != b".\r\n":
                    if not line:
                        return False
                    lines.append(line)
                outer.messages.append(b"".join(lines))
                self.send(answer("."))
                return True

            def send(self, data: bytes) -> None:
                for piece in [data[i : i + 1] for i in range(len(data))] if dribble else [data]:
                    self.wfile.write(piece)
                    if dribble:
                        time.sleep(0.001)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = (
            f"smtp://127.0.0.1:{self.server.server_address[1]}"
            "?from=me@example.com&tls=none&carrier=googlefi&timeout=5"
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(replies: dict[str, bytes], *, dribble: bool = False) -> ScriptedServer:
        server = ScriptedServer(lambda command: replies[command[:4].upper()], dribble=dribble)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


ACCEPTING = {
    "MAIL": b"250 2.1.0 ok\r\n",
    "RCPT": b"250 2.1.5 ok\r\n",
    "DATA": b"354 go ahead\r\n",
    ".": b"250-2.0.0 queued\r\n250 2.0.0 as 42\r\n",
    "RSET": b"250 2.0.0 reset\r\n",
}


def test_replies_split_anywhere_and_multiline_replies_are_read_whole(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(ACCEPTING, dribble=True)
    with smsgate.Gateway.from_url(server.url) as gw:
        results = [gw.send(GOOD, f"dribbled {i}") for i in range(3)]
    assert all(r.ok for r in results)
    assert results[0].raw["reply"] == {"code": 250, "message": "2.0.0 queued\n2.0.0 as 42"}
    assert server.connections == 1 and len(server.messages) == 3
    assert server.commands[1:4] == [
        "MAIL FROM:<me@example.com>",
        "RCPT TO:<5555550100@msg.fi.google.com>",
        "DATA",
    ]


def test_data_taken_after_a_refused_recipient_costs_the_session(
    scripted: Callable[..., ScriptedServer],
) -> None:
    # RFC 2920 servers refuse DATA when no recipient was taken; one that says 354 now waits for
    # a message, so the provider drops the session rather than send one.
    server = scripted({**ACCEPTING, "RCPT": b"550 5.1.1 no such user\r\n"})
    with smsgate.Gateway.from_url(server.url) as gw:
        for _ in range(2):
            with pytest.raises(InvalidRecipient) as info:
                gw.send(GOOD, "hello")
            assert info.value.code == "550"
    assert server.connections == 2 and server.messages == []


def test_a_garbled_reply_is_transient_and_costs_the_session(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted({**ACCEPTING, "MAIL": b"hello there\r\n"})
    with smsgate.Gateway.from_url(server.url) as gw:
        for _ in range(2):
            with pytest.raises(TransientError) as info:
                gw.send(GOOD, "hello")
            assert "garbled reply" in info.value.message and "at MAIL" in info.value.message
    assert server.connections == 2 and server.messages == []


# -- MMS -------------------------------------------------------------------------------------


class MediaServer:
    """A loopback HTTP server with a few files (the provider must fetch nothing off the host)."""

    def __init__(self, files: dict[str, tuple[str, bytes]]) -> None:
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/cat.png")
                    self.end_headers()
                    return
                found = outer.files.get(self.path)
                if found is None:
                    self.send_error(404)
                    return
                content_type, data = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.fixture
def media() -> Iterator[MediaServer]:
    server = MediaServer(
        {"/cat.png": ("image/png", PNG), "/notes.pdf": ("application/pdf", b"%PDF")}
    )
    yield server
    server.close()


def test_mms_attaches_media_and_goes_to_the_mms_domain(
    emulator: EmulatorThread, media: MediaServer
) -> None:
    with gateway(emulator, allow_private_media="true") as gw:
        result = gw.send(
            GOOD,
            "look",
            media=(f"{media.url}/cat.png",),
            provider_options={"carrier": "uscellular"},
        )
    assert result.ok
    [stored] = summary(emulator)["messages"]
    assert stored["rcpt"] == "5555550100@mms.uscc.net"
    assert stored["body"] == "look"
    [attachment] = stored["attachments"]
    assert attachment["filename"] == "cat.png" and attachment["content_type"] == "image/png"
    assert attachment["sha256"] == hashlib.sha256(PNG).hexdigest() and attachment["size"] == len(
        PNG
    )


def test_media_redirects_are_followed_on_loopback_only_when_allowed(
    emulator: EmulatorThread, media: MediaServer
) -> None:
    with gateway(emulator, allow_private_media="true") as gw:
        assert gw.send(GOOD, "", media=(f"{media.url}/moved",)).ok
    assert media.requests == ["/moved", "/cat.png"]
    assert summary(emulator)["messages"][0]["attachments"][0]["size"] == len(PNG)


def test_media_on_a_private_address_is_refused_by_default(
    emulator: EmulatorThread, media: MediaServer
) -> None:
    with gateway(emulator) as gw, pytest.raises(InvalidMessage) as info:
        gw.send(GOOD, "look", media=(f"{media.url}/cat.png?sig=SECRET",))
    assert "private address" in info.value.message and "SECRET" not in info.value.message
    assert media.requests == [] and summary(emulator)["count"] == 0


@pytest.mark.parametrize(
    ("path", "options", "error", "words"),
    [
        ("/cat.png", {"media_max_bytes": 100}, InvalidMessage, "past 100 bytes"),
        ("/notes.pdf", {}, InvalidMessage, "application/pdf"),
        ("/missing.png", {}, InvalidMessage, "HTTP 404"),
    ],
)
def test_bad_media_is_refused_before_any_mail(
    emulator: EmulatorThread,
    media: MediaServer,
    path: str,
    options: dict[str, Any],
    error: type[SmsgateError],
    words: str,
) -> None:
    with (
        gateway(emulator, allow_private_media="true", **options) as gw,
        pytest.raises(error) as info,
    ):
        gw.send(GOOD, "look", media=(f"{media.url}{path}",))
    assert words in str(info.value)
    assert summary(emulator)["connections"] == 0


def test_a_carrier_without_an_mms_gateway_refuses_media_before_fetching(
    emulator: EmulatorThread, media: MediaServer
) -> None:
    with gateway(emulator, allow_private_media="true") as gw, pytest.raises(UnsupportedFeature):
        gw.send(
            GOOD, "look", media=(f"{media.url}/cat.png",), provider_options={"carrier": "cspire"}
        )
    assert media.requests == []


# -- carriers and addressing -----------------------------------------------------------------


def _example(region: str) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert number is not None, region
    return number


def test_every_carrier_in_the_registry_is_addressed_correctly(emulator: EmulatorThread) -> None:
    expected: dict[str, tuple[str, str]] = {}
    messages = []
    for carrier in registry():
        number = _example(carrier.country)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.national_significant_number(number)
        local = {
            NumberFormat.NATIONAL: national,
            NumberFormat.INTERNATIONAL: f"{number.country_code}{national}",
            NumberFormat.E164: f"+{number.country_code}{national}",
        }[carrier.number_format]
        message = Message(
            to=e164,
            body=f"to {carrier.key}",
            provider_options={"carrier": carrier.key, "force": True},
        )
        messages.append(message)
        expected[message.id] = (f"{local}@{carrier.sms_domain}", e164)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CarrierDeprecatedWarning)
        with gateway(emulator) as gw:
            results = gw.send_many(messages)
    assert [r.error for r in results if not r.ok] == []
    stored = {m["id"]: m for m in summary(emulator)["messages"]}
    assert len(stored) == len(registry())
    for result in results:
        mail = stored[result.provider_message_id]
        assert (mail["rcpt"], mail["to"]) == expected[result.id]


def test_dead_carrier_is_refused_with_what_happened_and_when(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw, pytest.raises(UnsupportedFeature) as info:
        gw.send(GOOD, "hello", provider_options={"carrier": "att"})
    assert (
        "AT&T closed its email-to-text gateway on 2025-06-17; use an API provider"
        in info.value.message
    )
    assert info.value.code == "carrier_dead" and info.value.field == "carrier"
    assert info.value.failover and not info.value.retryable
    assert summary(emulator)["connections"] == 0


@pytest.mark.parametrize("how", ["message", "url"])
def test_force_sends_through_a_dead_gateway_with_a_warning(
    emulator: EmulatorThread, how: str
) -> None:
    options = {"force": True} if how == "message" else {}
    url_options = {"force": "true"} if how == "url" else {}
    with (
        gateway(emulator, **url_options) as gw,
        pytest.warns(CarrierDeprecatedWarning, match="AT&T closed"),
    ):
        result = gw.send(GOOD, "hello", provider_options={"carrier": "att", **options})
    assert result.ok
    assert summary(emulator)["messages"][0]["rcpt"] == "5555550100@txt.att.net"


def test_deprecated_carrier_warns_and_logs(
    emulator: EmulatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="smsgate")
    with gateway(emulator) as gw, pytest.warns(CarrierDeprecatedWarning, match="2027-03-31"):
        assert gw.send(GOOD, "hello", provider_options={"carrier": "verizon"}).ok
    assert "deprecated" in caplog.text
    assert summary(emulator)["messages"][0]["rcpt"] == "5555550100@vtext.com"


def test_a_deprecated_gateway_is_dead_after_its_sunset(emulator: EmulatorThread) -> None:
    after = datetime(2027, 4, 1, tzinfo=UTC).timestamp()
    assert (
        registry().require("verizon").status_on(datetime(2027, 4, 1).date()) is CarrierStatus.DEAD
    )
    with (
        smsgate.Gateway.from_url(url_of(emulator), clock=FakeClock(after)) as gw,
        pytest.raises(UnsupportedFeature),
    ):
        gw.send(GOOD, "hello", provider_options={"carrier": "verizon"})
    assert summary(emulator)["count"] == 0


def test_a_dead_default_carrier_fails_over_to_the_next_provider(emulator: EmulatorThread) -> None:
    dead = without_option(url_of(emulator), "carrier") + "&carrier=tmobile"
    override = without_option(url_of(emulator), "carrier") + "&domain=sms.gateway.example"
    with smsgate.Gateway.from_url(dead, override) as gw:
        result = gw.send(GOOD, "hello")
    assert result.ok and result.provider == "smtp2"
    assert summary(emulator)["messages"][0]["rcpt"] == "5555550100@sms.gateway.example"


def test_no_known_carrier_is_unsupported_so_an_api_provider_can_take_it(
    emulator: EmulatorThread,
) -> None:
    with (
        smsgate.Gateway.from_url(without_option(url_of(emulator), "carrier")) as gw,
        pytest.raises(UnsupportedFeature) as info,
    ):
        gw.send(GOOD, "hello")
    assert "--carrier" in info.value.message and info.value.failover


def test_a_number_outside_the_carriers_country(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        with pytest.raises(InvalidRecipient):  # the caller named the carrier: their mistake
            gw.send("+447700900123", "hi", provider_options={"carrier": "boost"})
        with pytest.raises(UnsupportedFeature):  # the provider's default does not fit: fail over
            gw.send("+447700900123", "hi")
    assert summary(emulator)["connections"] == 0


def test_an_unknown_carrier_key_names_the_closest_one(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw, pytest.raises(InvalidMessage, match="did you mean 'verizon'"):
        gw.send(GOOD, "hi", provider_options={"carrier": "verizn"})
    with pytest.raises(ConfigError, match="carrier='nope'"):
        create_provider(url_of(emulator, carrier="nope"))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_contacts_file_gives_the_carrier_for_a_number(
    emulator: EmulatorThread, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"contacts{suffix}"
    if suffix == ".toml":
        path.write_text(
            '[me]\nnumber = "1234567890"\ncarrier = "boost"\n\n'
            '[mum]\nnumber = "+15555550101"\ncarrier = "fi"\n'
        )
    else:
        # Seed 000's own shape.
        path.write_text(
            json.dumps(
                {
                    "me": {"carrier": "boost", "number": "1234567890"},
                    "mum": {"number": GOOD_2, "carrier": "fi"},
                }
            )
        )
    url = without_option(url_of(emulator), "carrier") + f"&contacts={quote(str(path))}"
    provider = create_provider(url)
    assert isinstance(provider, SmtpProvider) and provider.contacts is not None
    me = provider.contacts.number("me")
    assert me == "+11234567890"
    with smsgate.Gateway(provider) as gw:
        gw.send(me, "hi me")
        gw.send(provider.contacts.number("mum"), "hi mum")
        gw.send(
            GOOD_2,
            "by number, carrier from the message",
            provider_options={"carrier": "uscellular"},
        )
    rcpts = [m["rcpt"] for m in summary(emulator)["messages"]]
    assert rcpts == [
        "1234567890@sms.myboostmobile.com",
        "5555550101@msg.fi.google.com",
        "5555550101@email.uscc.net",
    ]


def test_long_texts_warn(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        with pytest.warns(LongTextWarning, match="150 GSM-7 units"):
            gw.send(GOOD, "x" * 150)
        with warnings.catch_warnings():
            warnings.simplefilter("error", LongTextWarning)
            gw.send(GOOD, "x" * 140)
        with pytest.warns(LongTextWarning, match="UCS-2"):
            gw.send(GOOD, "é" * 60 + "😜" * 10)


def test_resending_the_same_message_carries_the_same_message_id(emulator: EmulatorThread) -> None:
    message = Message(to=GOOD, body="once")
    with gateway(emulator) as gw:
        first, second = gw.send(message), gw.send(message)
    assert first.provider_message_id == second.provider_message_id
    assert summary(emulator)["duplicates"] == 1


# -- header injection ------------------------------------------------------------------------


def _forge(message: Message, **fields: Any) -> Message:
    """A message whose fields skipped Message's own checks: the provider must still refuse it."""
    for name, value in fields.items():
        object.__setattr__(message, name, value)
    return message


def test_injection_in_the_sender_is_refused_with_nothing_sent(emulator: EmulatorThread) -> None:
    with pytest.raises(InvalidMessage):
        Message(to=GOOD, body="hi", sender="me@example.com" + INJECTION)
    provider = create_provider(url_of(emulator))
    for sender in (
        "me@example.com" + INJECTION,
        "Shop" + INJECTION,
        "Shop\u2028Bcc: x@example.com",
    ):
        with pytest.raises(InvalidMessage) as info:
            asyncio.run(provider.asend(_forge(Message(to=GOOD, body="hi"), sender=sender)))
        assert info.value.field == "sender"
    assert summary(emulator)["connections"] == 0


def test_injection_in_the_subject_is_refused_with_nothing_sent(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        for subject in (
            "hi" + INJECTION,
            "hi\nBcc: x@example.com",
            "hi\x0bthere",
            "hi\u2029Bcc: x",
        ):
            with pytest.raises(InvalidMessage) as info:
                gw.send(GOOD, "hi", provider_options={"subject": subject})
            assert info.value.field == "subject"
    with pytest.raises(ConfigError):
        create_provider(url_of(emulator, subject="hi" + INJECTION))
    assert summary(emulator)["connections"] == 0


def test_injection_in_the_number_is_refused_with_nothing_sent(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw, pytest.raises(InvalidRecipient):
        gw.send(GOOD + INJECTION, "hi")
    provider = create_provider(url_of(emulator))
    with pytest.raises(InvalidRecipient):
        asyncio.run(provider.asend(_forge(Message(to=GOOD, body="hi"), to=GOOD + INJECTION)))
    assert summary(emulator)["connections"] == 0


def test_injection_in_the_from_address_or_name_is_refused_at_configuration(
    emulator: EmulatorThread,
) -> None:
    base = without_option(url_of(emulator), "from")
    for options in (
        {"from": "me@example.com" + INJECTION},
        {"from_name": "Shop" + INJECTION},
        {"helo": "x\r\nRSET"},
    ):
        with pytest.raises(ConfigError):
            create_provider(with_options(base, **options))
    with pytest.raises(ConfigError):
        create_provider(with_options(base, domain="evil.example\r\nBcc: x"))


def test_injection_in_a_contacts_file_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "contacts.json"
    path.write_text(json.dumps({"me": {"number": "5555550100" + INJECTION, "carrier": "fi"}}))
    with pytest.raises(ConfigError):
        create_provider(f"smtp://u%40example.com:p@127.0.0.1?tls=none&contacts={quote(str(path))}")


# -- errors ----------------------------------------------------------------------------------


def test_5xx_at_rcpt_names_the_recipient_and_keeps_the_reply(emulator: EmulatorThread) -> None:
    with gateway(emulator) as gw:
        with pytest.raises(InvalidRecipient) as info:
            gw.send(MAGIC_INVALID, "hello")
        # The refused transaction was reset: the same session carries the next mail.
        assert gw.send(GOOD, "after a refusal").ok
        with pytest.raises(InvalidRecipient) as opted_out:
            gw.send(MAGIC_OPTED_OUT, "hello")
    error = info.value
    assert (
        error.code == "550"
        and error.provider == "smtp"
        and not error.retryable
        and not error.failover
    )
    assert "5005550001@msg.fi.google.com" in error.message and MAGIC_INVALID in error.message
    assert error.raw["stage"] == "rcpt" and error.raw["enhanced"] == "5.1.1"
    assert opted_out.value.raw["enhanced"] == "5.7.1"
    data = summary(emulator)
    assert data["count"] == 1 and data["connections"] == 1


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("error_rate", TransientError, "451"),
        ("rate_limit_rate", RateLimited, "450"),
        ("perm_fail_rate", InvalidMessage, "554"),
    ],
)
def test_4xx_and_5xx_replies_map_into_the_taxonomy(
    emulator: EmulatorThread, fault: str, error: type[SmsgateError], code: str
) -> None:
    set_faults(emulator, **{fault: 1})
    with gateway(emulator) as gw, pytest.raises(error) as info:
        gw.send(GOOD, "hello")
    assert info.value.code == code and info.value.raw["code"] == int(code)
    assert "5555550100@msg.fi.google.com" in info.value.message
    assert summary(emulator)["count"] == 0


def test_send_many_keeps_order_and_isolates_failures(emulator: EmulatorThread) -> None:
    numbers = [GOOD, MAGIC_INVALID, GOOD_2, MAGIC_OPTED_OUT, "+15555550102"]
    with gateway(emulator) as gw:
        results = gw.send_many([Message(to=n, body="Your order shipped") for n in numbers])
    assert [r.to for r in results] == numbers
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert results[1].status is Status.REJECTED and isinstance(results[1].error, InvalidRecipient)
    assert sorted(m["to"] for m in summary(emulator)["messages"]) == sorted(
        [GOOD, GOOD_2, "+15555550102"]
    )


@pytest.mark.parametrize(
    ("code", "text", "stage", "sender", "error", "words"),
    [
        (
            535,
            "5.7.8 Authentication credentials invalid",
            "auth",
            None,
            AuthError,
            "refused the login",
        ),
        (
            534,
            "5.7.9 Application-specific password required",
            "auth",
            None,
            AuthError,
            "app password",
        ),
        (
            454,
            "4.7.0 Temporary authentication failure",
            "auth",
            None,
            TransientError,
            "could not check",
        ),
        (530, "5.7.0 Authentication required", "mail", None, AuthError, "refused the login"),
        (421, "4.3.2 Service not available", "connect", None, TransientError, "not taking mail"),
        (
            554,
            "5.3.2 No SMTP service here",
            "connect",
            None,
            ProviderUnavailable,
            "refused the session",
        ),
        (553, "5.1.8 Sender address rejected", "mail", None, ProviderUnavailable, "fix from="),
        (553, "5.1.8 Sender address rejected", "mail", "me@example.com", InvalidMessage, "sender"),
        (552, "5.3.4 Message size exceeds fixed limit", "mail", None, InvalidMessage, "too large"),
        (
            550,
            "5.4.5 Daily user sending quota exceeded",
            "rcpt",
            None,
            ProviderUnavailable,
            "quota",
        ),
        (552, "5.2.2 Mailbox full", "rcpt", None, InvalidMessage, "refused the mail"),
        (551, "5.1.6 User not local", "rcpt", None, InvalidRecipient, "refused the recipient"),
        (550, "5.1.1 Unknown user", "message", None, InvalidRecipient, "refused the recipient"),
        (
            550,
            "5.7.1 Message rejected as spam",
            "message",
            None,
            InvalidMessage,
            "rejected the message",
        ),
        (450, "4.2.1 receiving mail too quickly", "rcpt", None, RateLimited, "throttling"),
        (452, "4.5.3 Too many recipients", "rcpt", None, TransientError, "deferred"),
    ],
)
def test_reply_codes_by_stage(
    code: int, text: str, stage: str, sender: str | None, error: type[SmsgateError], words: str
) -> None:
    provider = create_provider("smtp://me%40example.com:pw@smtp.example.com?carrier=googlefi")
    assert isinstance(provider, SmtpProvider)
    message = Message(to=GOOD, body="hi", sender=sender)
    mapped = provider._reply_error(code, text, stage, provider.plan(message), message)
    assert isinstance(mapped, error) and type(mapped) is error
    assert words in mapped.message
    assert mapped.code == str(code) and mapped.raw["message"] == text


# -- timeouts, refusals, TLS -----------------------------------------------------------------


def test_a_timeout_after_data_is_ambiguous_and_the_mail_did_arrive(
    emulator: EmulatorThread,
) -> None:
    set_faults(emulator, hang_rate=1, hang_seconds=3)
    with gateway(emulator, timeout=0.3) as gw, pytest.raises(AmbiguousSend) as info:
        gw.send(GOOD, "hello")
    assert "may have been accepted" in info.value.message
    assert summary(emulator)["count"] == 1  # resending blindly would duplicate


def test_a_reset_after_data_is_ambiguous(emulator: EmulatorThread) -> None:
    set_faults(emulator, reset_rate=1)
    with gateway(emulator) as gw, pytest.raises(AmbiguousSend):
        gw.send(GOOD, "hello")
    assert summary(emulator)["count"] == 1


def test_a_timeout_before_data_is_transient_and_nothing_arrived(emulator: EmulatorThread) -> None:
    set_faults(emulator, latency=1)
    with gateway(emulator, timeout=0.3) as gw, pytest.raises(TransientError) as info:
        gw.send(GOOD, "hello")
    assert "MAIL" in info.value.message and "nothing was sent" in info.value.message
    set_faults(emulator, latency=0)
    assert summary(emulator)["count"] == 0


def test_a_refused_connection_is_transient(emulator: EmulatorThread) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = url_of(emulator).replace(f":{emu(emulator).smtp_port}?", f":{port}?")
    with smsgate.Gateway.from_url(url) as gw, pytest.raises(TransientError) as info:
        gw.send(GOOD, "hello")
    assert info.value.retryable and info.value.failover
    assert "nothing was sent" in info.value.message


def test_an_untrusted_certificate_is_refused_not_ignored(emulator: EmulatorThread) -> None:
    with (
        smsgate.Gateway.from_url(without_option(url_of(emulator), "ca_file")) as gw,
        pytest.raises(ProviderUnavailable) as info,
    ):
        gw.send(GOOD, "hello")
    assert info.value.field == "ca_file" and "ca_file=" in info.value.message
    assert summary(emulator)["logins"] == 0 and summary(emulator)["count"] == 0


def test_a_server_without_starttls_gets_no_password(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(tls="none")
    url = url_of(emulator).replace("tls=none", "tls=starttls")
    with smsgate.Gateway.from_url(url) as gw, pytest.raises(ProviderUnavailable, match="STARTTLS"):
        gw.send(GOOD, "hello")
    assert summary(emulator)["logins"] == 0 and summary(emulator)["auth_failures"] == 0


def test_no_password_in_clear_text_to_a_remote_host() -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        create_provider("smtp://me%40example.com:pw@smtp.example.com?tls=none")
    assert create_provider("smtp://relay.example.com:25?tls=none&from=me@example.com&carrier=fi")


# -- authentication and secrets --------------------------------------------------------------


def test_bad_credentials_are_an_auth_error_after_one_attempt(emulator: EmulatorThread) -> None:
    url = url_of(emulator).replace(":emulator-password@", ":not-the-password@")
    with smsgate.Gateway.from_url(url) as gw, pytest.raises(AuthError) as info:
        gw.send(GOOD, "hello")
    assert info.value.failover and not info.value.retryable and info.value.code == "535"
    data = summary(emulator)
    assert data["auth_failures"] == 1 and data["logins"] == 0 and data["count"] == 0


def test_no_secret_in_logs_reprs_or_errors(
    start: Callable[..., EmulatorThread], caplog: pytest.LogCaptureFixture
) -> None:
    password, wrong = "s3cr3t-P@ss/word", "wr0ng-P@ss/word"
    emulator = start(credentials=f"me@example.com:{password}")
    caplog.set_level(logging.DEBUG)
    url = url_of(emulator)
    texts: list[str] = []
    with smsgate.Gateway.from_url(url) as gw:
        texts += [repr(gw), repr(next(iter(gw.providers.values())))]
        gw.send(GOOD, "hello")
        try:
            gw.send(MAGIC_INVALID, "hello")
        except smsgate.SmsgateError as exc:
            texts += [str(exc), repr(exc), json.dumps(exc.raw)]
    with smsgate.Gateway.from_url(
        url.replace(quote(password, safe=""), quote(wrong, safe=""))
    ) as gw:
        try:
            gw.send(GOOD, "hello")
        except AuthError as exc:
            texts += [str(exc), repr(exc), json.dumps(exc.raw)]
    texts.append(ProviderURL.parse(url).masked())
    joined = caplog.text + "\n".join(texts)
    assert "refused the login" in joined
    for secret in (password, wrong, quote(password, safe=""), quote(wrong, safe="")):
        assert secret not in joined


# -- entry points ----------------------------------------------------------------------------


def test_smsgate_send_with_carrier(emulator: EmulatorThread) -> None:
    import shutil
    import subprocess
    import sys

    beside = Path(sys.executable).with_name("smsgate")
    command = [str(beside)] if beside.exists() else [shutil.which("smsgate") or "smsgate"]
    out = subprocess.run(
        [
            *command,
            "send",
            GOOD_2,
            "hi from the CLI",
            "--carrier",
            "boost",
            "--provider",
            url_of(emulator),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["status"] == "sent" and printed["provider"] == "smtp"
    [stored] = summary(emulator)["messages"]
    assert (
        stored["rcpt"] == "5555550101@sms.myboostmobile.com"
        and stored["id"] == printed["provider_message_id"]
    )
    dead = subprocess.run(
        [*command, "send", GOOD, "hi", "--carrier", "att", "--provider", url_of(emulator)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        dead.returncode == 1
        and "AT&T closed its email-to-text gateway on 2025-06-17" in dead.stderr
    )
    assert "emulator-password" not in dead.stderr + out.stdout + out.stderr


def test_async_use_from_the_callers_own_loop(emulator: EmulatorThread) -> None:
    async def run() -> list[smsgate.SendResult]:
        async with smsgate.Gateway.from_url(url_of(emulator, connections=3)) as gw:
            first = await gw.asend(GOOD, "async one")
            many = await gw.asend_many([Message(to=GOOD_2, body=f"async {i}") for i in range(20)])
            return [first, *many]

    results = asyncio.run(run())
    assert all(r.ok for r in results) and len(results) == 21
    data = summary(emulator)
    assert data["count"] == 21 and data["connections"] <= 3


def test_media_is_fetched_through_the_environment_proxy(
    emulator: EmulatorThread,
    media: MediaServer,
    proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """Media fetches use smsgate's one HTTP client, proxy settings included."""
    no_proxy_env.setenv("HTTP_PROXY", proxy.url())
    with gateway(emulator, allow_private_media="true") as gw:
        assert gw.send(GOOD, "", media=(f"{media.url}/moved",)).ok
    assert media.requests == ["/moved", "/cat.png"]
    assert proxy.logged().count("GET http://127.0.0.1:") == 2


def test_an_unreachable_media_host_is_transient_and_hides_the_query(
    emulator: EmulatorThread,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with gateway(emulator, allow_private_media="true") as gw, pytest.raises(TransientError) as info:
        gw.send(GOOD, "", media=(f"http://127.0.0.1:{port}/cat.png?sig=SECRET",))
    assert "could not fetch media" in info.value.message and "SECRET" not in info.value.message
    assert info.value.field == "media" and summary(emulator)["connections"] == 0
