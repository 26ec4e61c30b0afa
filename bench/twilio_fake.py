"""The benchmarks' lean Twilio fake: what the Messages API answers a valid send, no more.

    .venv/bin/python bench/twilio_fake.py PORT        (prints "provider URL: twilio://...")

An asyncio protocol on uvloop that parses requests with httptools, checks the credentials and the
To/From/Body fields, and answers ``201`` with the message resource Twilio returns (the
emulator's fields, a fresh ``SM...`` sid each). ``GET /_emulator/messages`` answers how many sends
it accepted since ``POST /_emulator/reset`` and how many of them repeated an earlier recipient,
sender and body (every bench sends unique bodies, so any repeat is a message sent twice).

Why the benchmarks use it rather than smsgate's emulator (``--server emulator`` still runs that):
the emulator is an aiohttp application with fault injection, callbacks and introspection, and
costs about 200 µs of CPU per request, about what the fastest clients cost. On a 2-core machine
the server then competes with the client and with PostgreSQL for the cores, and the benchmark
measures the emulator instead of the client. A provider's API runs elsewhere in production; this
fake costs about 40 µs per request, so the clients set the pace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import ssl
import subprocess
import sys
from email.utils import formatdate
from urllib.parse import parse_qsl

import httptools
from emulator_process import read_provider_url

SENDER = "+15005550006"
FAKE_ACCOUNT_SID = "AC" + "b7" * 16
FAKE_AUTH_TOKEN = "5e" * 16


def start_fake(port: int) -> tuple[subprocess.Popen[str], str]:
    """The fake serving plain HTTP on ``port`` in a process of its own, and its provider URL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, read_provider_url(proc, "twilio")


async def serve_fake(
    port: int, tls_port: int | None, context: ssl.SSLContext | None, stop: asyncio.Event
) -> None:
    """Serve on ``port`` (and with TLS on ``tls_port``) until ``stop`` is set."""
    state = _FakeState(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: _TwilioFake(state), "127.0.0.1", port, backlog=1024)
    ]
    if tls_port is not None:
        servers.append(
            await loop.create_server(
                lambda: _TwilioFake(state), "127.0.0.1", tls_port, ssl=context, backlog=1024
            )
        )
    print(
        f"provider URL: twilio://{FAKE_ACCOUNT_SID}:{FAKE_AUTH_TOKEN}@{SENDER}"
        f"?base_url=http://127.0.0.1:{port}",
        flush=True,
    )
    await stop.wait()
    for server in servers:
        server.close()


class _TwilioFake(asyncio.Protocol):
    """One connection to the bench's Twilio fake: what the API answers a valid send, no more.

    httptools parses each request; a send is checked (credentials, To, From, Body) and answered
    ``201`` with the resource Twilio returns (the emulator's fields), a fresh ``SM...`` sid each.
    """

    def __init__(self, state: _FakeState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorization = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(400, b'{"message": "malformed request"}', keep_alive=False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        status, answer = self.state.handle(self.parser.get_method(), url, self.authorization, body)
        self.authorization = b""
        self._answer(status, answer, keep_alive=self.parser.should_keep_alive())

    def _answer(self, status: int, body: bytes, *, keep_alive: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        if not keep_alive:
            self.transport.close()


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class _FakeState:
    """The fake's account, and the sends it accepted since the last reset."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        token = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.authorization = f"Basic {token}".encode()
        self.path = f"/2010-04-01/Accounts/{account_sid}/Messages.json".encode()
        self.count = 0
        #: (recipient, sender, body) of every send since the reset, and how many repeated one
        self.seen: set[tuple[str, str, str]] = set()
        self.duplicates = 0
        #: never reset: every sid the fake gives out is new
        self.serial = 0

    def handle(
        self, method: bytes, url: bytes, authorization: bytes, body: bytes
    ) -> tuple[int, bytes]:
        if url == b"/_emulator/messages":
            counts = {"count": self.count, "duplicates": self.duplicates}
            return 200, json.dumps(counts).encode()
        if url == b"/_emulator/reset":
            self.count = self.duplicates = 0
            self.seen.clear()
            return 200, b"{}"
        if method != b"POST" or url != self.path:
            return 404, b'{"code": 20404, "message": "not found", "status": 404}'
        if authorization != self.authorization:
            return 401, b'{"code": 20003, "message": "Authenticate", "status": 401}'
        form = dict(parse_qsl(body.decode()))
        to, sender, text = form.get("To"), form.get("From"), form.get("Body")
        if not to or not sender or not text:
            return (
                400,
                b'{"code": 21604, "message": "To, From and Body are required", "status": 400}',
            )
        self.count += 1
        key = (to, sender, text)
        if key in self.seen:
            self.duplicates += 1
        self.seen.add(key)
        self.serial += 1
        sid = f"SM{self.serial:032x}"
        created = formatdate(usegmt=False)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "messaging_service_sid": None,
            "body": text,
            "status": "queued",
            "num_segments": "1",
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "uri": f"{uri}.json",
            "subresource_uris": {"media": f"{uri}/Media.json"},
        }
        return 201, json.dumps(resource).encode()


def main() -> None:
    from smsgate.eventloop import run

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve_fake(int(sys.argv[1]), None, None, stop)

    run(serve())


if __name__ == "__main__":
    main()
