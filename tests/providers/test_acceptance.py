"""Nothing counted as sent without proof: every provider against servers that answer non-answers.

An HTTP provider's send is accepted only on a 2xx whose body parses in its format and carries its
message id; a redirect is a configuration error naming the ``Location`` (never followed); any
other 2xx is :class:`AmbiguousSend` keeping the raw answer. SMTP: accepted only on 250 after the
message. The canned servers here are independent of the emulators, so a provider cannot pass by
agreeing with its own emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import smsgate
from smsgate.emulators import emulator_class, emulators
from smsgate.errors import AmbiguousSend, InvalidMessage, ProviderUnavailable, TransientError
from smsgate.message import Message, Status
from smsgate.providers import PROVIDERS
from tests.providers.test_smtp import ACCEPTING, ScriptedServer

GOOD = "+15555550100"

#: per provider, a well-formed 2xx answer in its own format that carries no message id
NO_ID: dict[str, bytes] = {
    "twilio": b'{"status": "queued", "to": "+15555550100", "sid": null}',
    "smspm": b'{"status": "success", "messages": [{"toNumber": "15555550100"}]}',
    "smsroute": b'{"status": "queued", "to": "+15555550100"}',
    "vonage": b'{"message-count": "1", "messages": [{"to": "15555550100", "status": "0"}]}',
    "plivo": b'{"api_id": "b2f4", "message": "message(s) queued"}',
    "infobip": b'{"bulkId": "b1", "messages": [{"status": {"groupName": "PENDING"}}]}',
    "sinch": b'{"to": ["15555550100"], "type": "mt_text", "body": "hello"}',
    "clickatell": b'{"messages": [{"accepted": true, "to": "15555550100"}], "errorCode": null}',
    "aws": b'{"ResponseMetadata": {"RequestId": "r-1"}}',
    "telnyx": b'{"data": {"record_type": "message", "to": [{"phone_number": "+15555550100"}]}}',
}

JSON = "application/json"
#: (name, status, content type, body, extra headers): answers that prove nothing
AMBIGUOUS: list[tuple[str, int, str, bytes]] = [
    ("html page", 200, "text/html", b"<!doctype html><html><body>Welcome</body></html>"),
    ("empty object", 200, JSON, b"{}"),
    ("empty body", 200, JSON, b""),
    ("truncated json", 200, JSON, b'{"sid": "SM12'),
    ("json array", 201, JSON, b"[]"),
    ("json string", 200, JSON, b'"ok"'),
    ("no content", 204, JSON, b""),
]


class CannedServer:
    """Answers every request with one canned response; counts the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.content_type = JSON
        self.body = b"{}"
        self.headers: dict[str, str] = {}
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests += 1
                self.send_response(outer.status)
                self.send_header("Content-Type", outer.content_type)
                for name, value in outer.headers.items():
                    self.send_header(name, value)
                if outer.status != 204:
                    self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                if outer.status != 204:
                    self.wfile.write(outer.body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(
        self, status: int, body: bytes, content_type: str = JSON, **headers: str
    ) -> CannedServer:
        self.status, self.body, self.content_type, self.headers = (
            status,
            body,
            content_type,
            headers,
        )
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# SMTP and SMPP are not HTTP: their non-answers are tested in test_smtp.py and test_smpp.py.
HTTP_SCHEMES = sorted(scheme for scheme in PROVIDERS if scheme not in ("smtp", "smpp"))


@pytest.fixture(scope="module")
def canned() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()


def provider_url(scheme: str, base_url: str) -> str:
    emulator = emulator_class(scheme)()
    emulator.url = base_url
    url: str = emulator.provider_url()
    return url


def test_every_http_provider_has_an_emulator_and_a_no_id_answer_here() -> None:
    # A provider added without them would skip the proof below.
    assert set(HTTP_SCHEMES) <= set(emulators())
    assert set(HTTP_SCHEMES) == set(NO_ID)


@pytest.mark.parametrize("scheme", HTTP_SCHEMES)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_names_the_location(
    canned: CannedServer, scheme: str, status: int
) -> None:
    canned.answer(status, b"<html>moved</html>", "text/html", Location="https://login.example/x")
    before = canned.requests
    with (
        smsgate.Gateway.from_url(provider_url(scheme, canned.url)) as gateway,
        pytest.raises(ProviderUnavailable) as info,
    ):
        gateway.send(GOOD, "hello")
    error = info.value
    assert "https://login.example/x" in error.message and f"HTTP {status}" in error.message
    assert error.field == "base_url" and error.failover
    assert canned.requests == before + 1  # asked once, not followed


@pytest.mark.parametrize("scheme", HTTP_SCHEMES)
@pytest.mark.parametrize(("case", "status", "content_type", "body"), AMBIGUOUS)
def test_a_2xx_that_proves_nothing_is_ambiguous_with_the_raw_answer(
    canned: CannedServer, scheme: str, case: str, status: int, content_type: str, body: bytes
) -> None:
    canned.answer(status, body, content_type)
    with (
        smsgate.Gateway.from_url(provider_url(scheme, canned.url)) as gateway,
        pytest.raises(AmbiguousSend) as info,
    ):
        gateway.send(GOOD, "hello")
    error = info.value
    assert error.provider == scheme
    assert f"HTTP {status}" in error.message
    # The answer itself is kept for whoever reads the history.
    assert error.raw == ({} if body == b"{}" else body.decode())


@pytest.mark.parametrize("scheme", HTTP_SCHEMES)
def test_a_2xx_in_the_providers_format_without_an_id_is_ambiguous(
    canned: CannedServer, scheme: str
) -> None:
    canned.answer(200, NO_ID[scheme])
    with smsgate.Gateway.from_url(provider_url(scheme, canned.url)) as gateway:
        with pytest.raises(AmbiguousSend, match="no message id") as info:
            gateway.send(GOOD, "hello")
        # send_many (bulk endpoints included) never counts one as sent either.
        results = gateway.send_many([Message(to=n, body="same") for n in (GOOD, "+15555550101")])
    assert isinstance(info.value.raw, dict)
    assert [r.ok for r in results] == [False, False]
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert all(isinstance(r.error, AmbiguousSend) for r in results)


@pytest.mark.parametrize("scheme", HTTP_SCHEMES)
def test_the_html_page_is_kept_as_the_raw_answer(canned: CannedServer, scheme: str) -> None:
    page = b"<html><body>Service portal - please sign in</body></html>"
    canned.answer(200, page, "text/html; charset=utf-8")
    with (
        smsgate.Gateway.from_url(provider_url(scheme, canned.url)) as gateway,
        pytest.raises(AmbiguousSend, match="text/html") as info,
    ):
        gateway.send(GOOD, "hello")
    assert info.value.raw == page.decode()


@pytest.mark.parametrize("scheme", HTTP_SCHEMES)
def test_a_redirect_on_a_status_lookup_is_not_a_missing_message(
    canned: CannedServer, scheme: str
) -> None:
    import asyncio

    from smsgate.providers import create_provider

    provider = create_provider(provider_url(scheme, canned.url))
    if not provider.capabilities.status_fetch:
        pytest.skip(f"{scheme} has no status lookup")
    canned.answer(301, b"", Location="https://elsewhere.example/")

    async def fetch() -> None:
        try:
            await provider.afetch_status("abc123")
        finally:
            await provider.aclose()

    with pytest.raises(ProviderUnavailable, match=r"elsewhere\.example"):
        asyncio.run(fetch())


# -- SMTP: accepted only on 250 after the message -------------------------------------------


class TestSmtpAcceptance:
    #: the registry's completeness test counts this as SMTP's contract suite
    contract_for = "smtp"

    @pytest.fixture
    def scripted(self) -> Iterator[Callable[[dict[str, bytes]], ScriptedServer]]:
        made: list[ScriptedServer] = []

        def make(replies: dict[str, bytes]) -> ScriptedServer:
            server = ScriptedServer(lambda command: replies[command[:4].upper()])
            made.append(server)
            return server

        yield make
        for server in made:
            server.close()

    def test_250_after_the_message_is_accepted(
        self, scripted: Callable[[dict[str, bytes]], ScriptedServer]
    ) -> None:
        server = scripted(ACCEPTING)
        with smsgate.Gateway.from_url(server.url) as gateway:
            assert gateway.send(GOOD, "hello").ok
        assert len(server.messages) == 1

    @pytest.mark.parametrize(
        "reply",
        [b"251 2.1.5 will forward\r\n", b"354 more please\r\n", b"220 hello again\r\n"],
    )
    def test_another_positive_reply_after_the_message_is_ambiguous(
        self, scripted: Callable[[dict[str, bytes]], ScriptedServer], reply: bytes
    ) -> None:
        server = scripted({**ACCEPTING, ".": reply})
        with (
            smsgate.Gateway.from_url(server.url) as gateway,
            pytest.raises(AmbiguousSend) as info,
        ):
            gateway.send(GOOD, "hello")
        assert info.value.raw["stage"] == "message"
        assert len(server.messages) == 1  # it reached the server: resending could duplicate

    def test_a_garbled_reply_after_the_message_is_ambiguous(
        self, scripted: Callable[[dict[str, bytes]], ScriptedServer]
    ) -> None:
        server = scripted({**ACCEPTING, ".": b"queued, thanks\r\n"})
        with smsgate.Gateway.from_url(server.url) as gateway, pytest.raises(AmbiguousSend):
            gateway.send(GOOD, "hello")

    def test_a_refusal_after_the_message_is_mapped_not_ambiguous(
        self, scripted: Callable[[dict[str, bytes]], ScriptedServer]
    ) -> None:
        server = scripted({**ACCEPTING, ".": b"554 5.6.0 message refused\r\n"})
        with smsgate.Gateway.from_url(server.url) as gateway, pytest.raises(InvalidMessage):
            gateway.send(GOOD, "hello")
        deferred = scripted({**ACCEPTING, ".": b"451 4.3.0 try later\r\n"})
        with smsgate.Gateway.from_url(deferred.url) as gateway, pytest.raises(TransientError):
            gateway.send(GOOD, "hello")
