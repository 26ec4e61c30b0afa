"""The HTTP transport against real loopback servers: scripted asyncio servers and the emulators.

Each scripted server reads real HTTP/1.1 requests off its sockets and answers with raw bytes, so
the tests see what went over the wire (connections opened, requests read) and can misbehave the
way servers do: close a connection, stall, stream chunks, compress. Every test runs on asyncio's
loop and on uvloop (what the Gateway and the worker use).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

import pytest

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.tls import generate_tls_files
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.errors import AmbiguousSend, ConfigError, InvalidMessage, TransientError
from smsgate.providers import create_provider
from smsgate.providers import transport as transport_module
from smsgate.providers.transport import (
    HttpRequest,
    HttpResponse,
    HttpTransport,
    Limits,
    Timeout,
    basic_auth,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


# -- a scripted HTTP/1.1 server -----------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server read it off the socket."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int


#: what the server does with a request: the raw bytes to send back, or None to close the
#: connection without answering
Script = Callable[["Seen", asyncio.StreamWriter], Awaitable[bytes | None]]


def response(
    status: int = 200,
    body: bytes = b"{}",
    headers: tuple[tuple[str, str], ...] = (),
    *,
    version: str = "1.1",
) -> bytes:
    head = [f"HTTP/{version} {status} Whatever", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def ok(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
    return response(body=json.dumps({"target": seen.target}).encode())


class Server:
    """An HTTP/1.1 server on 127.0.0.1 answering each request as ``script`` says."""

    def __init__(self, script: Script = ok, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.seen: list[Seen] = []
        self.connections = 0
        self.open = 0
        self.most_open = 0
        #: connections whose socket is closed at both ends
        self.closed = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for(self, predicate: Callable[[], bool], limit: float = 5.0) -> None:
        deadline = time.monotonic() + limit
        while not predicate():
            assert time.monotonic() < deadline, "the server never reached the expected state"
            await asyncio.sleep(0.005)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        serial = self.connections
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = {}
                for line in filter(None, lines):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, target, headers, body, serial)
                self.seen.append(seen)
                answer = await self.script(seen, writer)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"\r\nconnection: close\r\n" in answer.lower():
                    break
        except asyncio.CancelledError:
            pass  # shutting down; Python 3.11's streams log a cancelled handler as an error
        finally:
            self.open -= 1
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.closed += 1


async def settle() -> None:
    """Let the client's side of the loop see what the server just did (a close, a write)."""
    await asyncio.sleep(0.02)
    for _ in range(5):
        await asyncio.sleep(0)


def transport_for(
    url: str, *, connections: int = 10, read: float = 5.0, connect: float = 2.0
) -> HttpTransport:
    return HttpTransport(
        url,
        provider="test",
        timeout=Timeout(connect=connect, read=read),
        limits=Limits(max_connections=connections),
    )


async def get(transport: HttpTransport, path: str = "/", **kwargs: Any) -> HttpResponse:
    return await transport.request(HttpRequest("GET", path, **kwargs))


# -- keep-alive and the pool ----------------------------------------------------------------------


def test_keep_alive_reuses_one_connection_for_many_requests(run: Run) -> None:
    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            for i in range(50):
                answer = await get(transport, f"/n/{i}")
                assert answer.status == 200 and answer.json() == {"target": f"/n/{i}"}
            await transport.aclose()
        assert server.connections == 1 and len(server.seen) == 50

    run(main())


def test_the_pool_limit_holds_under_concurrency(run: Run) -> None:
    in_flight = 0
    most_in_flight = 0

    async def slow(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await ok(seen, writer)

    async def main() -> None:
        async with Server(slow) as server:
            transport = transport_for(server.url, connections=3)
            answers = await asyncio.gather(*(get(transport, f"/{i}") for i in range(30)))
            await transport.aclose()
        assert [a.json()["target"] for a in answers] == [f"/{i}" for i in range(30)]
        assert server.connections == 3 and server.most_open == 3
        assert most_in_flight == 3

    run(main())


def test_waiting_requests_are_served_in_arrival_order(run: Run) -> None:
    async def slow(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        await asyncio.sleep(0.002)
        return await ok(seen, writer)

    async def main() -> None:
        async with Server(slow) as server:
            transport = transport_for(server.url, connections=1)
            await asyncio.gather(*(get(transport, f"/{i}") for i in range(12)))
            await transport.aclose()
        assert [s.target for s in server.seen] == [f"/{i}" for i in range(12)]

    run(main())


def test_a_cancelled_request_frees_its_connection(run: Run) -> None:
    async def hang_first(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        if seen.target == "/hang":
            await asyncio.sleep(60)
        return await ok(seen, writer)

    async def main() -> None:
        async with Server(hang_first) as server:
            transport = transport_for(server.url, connections=1)
            hung = asyncio.ensure_future(get(transport, "/hang"))
            await server.wait_for(lambda: len(server.seen) == 1)
            hung.cancel()
            answer = await asyncio.wait_for(get(transport, "/next"), 2)
            assert answer.json() == {"target": "/next"}
            await transport.aclose()
        # The abandoned exchange's connection was closed, not reused for the next request.
        assert server.connections == 2

    run(main())


def test_connection_close_is_honoured(run: Run) -> None:
    async def closing(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return response(headers=(("Connection", "close"),))

    async def main() -> None:
        async with Server(closing) as server:
            transport = transport_for(server.url)
            for _ in range(3):
                assert (await get(transport)).status == 200
            await transport.aclose()
        assert server.connections == 3

    run(main())


def test_an_http_1_0_answer_is_not_reused_unless_it_says_keep_alive(run: Run) -> None:
    async def old(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        headers = (("Connection", "keep-alive"),) if seen.target == "/keep" else ()
        return response(version="1.0", headers=headers)

    async def main() -> None:
        async with Server(old) as server:
            transport = transport_for(server.url)
            await get(transport, "/a")
            await get(transport, "/b")
            assert server.connections == 2
            await get(transport, "/keep")
            await get(transport, "/keep")
            await transport.aclose()
        assert server.connections == 3

    run(main())


def test_an_announced_keep_alive_timeout_is_honoured(run: Run) -> None:
    # "timeout=1" leaves no safe time to reuse the connection (one second of margin).
    async def short(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return response(headers=(("Keep-Alive", "timeout=1, max=100"),))

    async def main() -> None:
        async with Server(short) as server:
            transport = transport_for(server.url)
            for _ in range(3):
                await get(transport)
            await transport.aclose()
        assert server.connections == 3

    run(main())


def test_idle_connections_are_closed_after_the_keepalive_time(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport_module, "KEEPALIVE_SECONDS", 0.05)

    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            await get(transport)
            await server.wait_for(lambda: server.closed == 1)  # we closed it, unasked
            assert (await get(transport)).status == 200
            await transport.aclose()
        assert server.connections == 2

    run(main())


def test_an_idle_connection_the_server_dropped_is_not_reused(run: Run) -> None:
    async def answer_then_drop(seen: Seen, writer: asyncio.StreamWriter) -> bytes | None:
        writer.write(response())
        await writer.drain()
        return None  # close, as a server does when its idle timeout ends

    async def main() -> None:
        async with Server(answer_then_drop) as server:
            transport = transport_for(server.url)
            await get(transport)
            await server.wait_for(lambda: server.closed == 1)
            await settle()
            assert (await get(transport)).status == 200
            await transport.aclose()
        assert server.connections == 2 and len(server.seen) == 2

    run(main())


def test_a_server_speaking_out_of_turn_on_an_idle_connection_is_dropped(run: Run) -> None:
    async def then_408(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        # Some servers send a 408 on an idle connection before closing it.
        asyncio.get_running_loop().call_later(0.01, writer.write, response(408))
        return await ok(seen, writer)

    async def main() -> None:
        async with Server(then_408) as server:
            transport = transport_for(server.url)
            await get(transport, "/a")
            await server.wait_for(lambda: server.closed == 1)  # we dropped it
            answer = await get(transport, "/b")
            assert answer.status == 200 and answer.json() == {"target": "/b"}
            await transport.aclose()
        assert server.connections == 2

    run(main())


def test_an_unasked_response_right_behind_the_answer_is_not_taken_for_the_next(
    run: Run,
) -> None:
    async def twice(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        extra = response(500, b"stray", (("X-Stray", "1"),))
        return response(body=json.dumps({"target": seen.target}).encode()) + extra

    async def main() -> None:
        async with Server(twice) as server:
            transport = transport_for(server.url)
            first = await get(transport, "/a")
            second = await get(transport, "/b")
            await transport.aclose()
        assert first.json() == {"target": "/a"} and "X-Stray" not in first.headers
        assert second.status == 200 and second.json() == {"target": "/b"}
        assert server.connections == 2

    run(main())


def test_aclose_closes_the_connections(run: Run) -> None:
    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            await asyncio.gather(*(get(transport) for _ in range(3)))
            assert server.open == 3
            await transport.aclose()
            await server.wait_for(lambda: server.open == 0)

    run(main())


def test_one_transport_serves_several_event_loops(run: Run) -> None:
    """The sync twins run on a loop of their own; each loop gets its own pool."""
    emulator = EmulatorThread(TwilioEmulator(), "127.0.0.1", 0)
    try:
        transport = transport_for(emulator.url)

        async def fetch() -> int:
            return (await get(transport, "/_emulator/messages")).status

        assert run(fetch()) == 200
        assert run(fetch()) == 200  # a new loop: the first one's pool is gone with it
        assert asyncio.run_coroutine_threadsafe(fetch(), emulator.loop).result(5) == 200
        asyncio.run_coroutine_threadsafe(transport.aclose(), emulator.loop).result(5)
    finally:
        emulator.stop()


# -- response bodies ------------------------------------------------------------------------------


def test_chunked_responses_are_reassembled(run: Run) -> None:
    async def chunked(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b'{"a": ', b'"chunked"', b"}"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.005)
        return b"0\r\n\r\n"

    async def main() -> None:
        async with Server(chunked) as server:
            transport = transport_for(server.url)
            for _ in range(2):
                assert (await get(transport)).json() == {"a": "chunked"}
            await transport.aclose()
        assert server.connections == 1

    run(main())


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw deflate
    ],
)
def test_compressed_responses_are_decoded(
    run: Run, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    payload = json.dumps({"sid": "SM1", "padding": "x" * 500}).encode()

    async def compressed(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        assert "gzip" in seen.headers["accept-encoding"]
        return response(body=compress(payload), headers=(("Content-Encoding", coding),))

    async def main() -> None:
        async with Server(compressed) as server:
            transport = transport_for(server.url)
            assert (await get(transport)).body == payload
            await transport.aclose()

    run(main())


def test_a_gzipped_chunked_response_is_decoded(run: Run) -> None:
    packed = gzip.compress(b'{"ok": true}')

    async def both(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        halves = (packed[:10], packed[10:])
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n"
        )

    async def main() -> None:
        async with Server(both) as server:
            transport = transport_for(server.url)
            assert (await get(transport)).json() == {"ok": True}
            await transport.aclose()

    run(main())


def test_a_body_that_ends_at_close_is_read_whole(run: Run) -> None:
    async def until_close(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"whole": ')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"true}")
        return None

    async def main() -> None:
        async with Server(until_close) as server:
            transport = transport_for(server.url)
            assert (await get(transport)).json() == {"whole": True}
            await transport.aclose()

    run(main())


def test_an_interim_response_is_skipped(run: Run) -> None:
    async def early_hints(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + response(201, b'{"final": 1}')

    async def main() -> None:
        async with Server(early_hints) as server:
            transport = transport_for(server.url)
            answer = await get(transport)
            assert answer.status == 201 and answer.json() == {"final": 1}
            assert "Link" not in answer.headers
            await transport.aclose()

    run(main())


def test_a_head_response_ends_at_its_headers(run: Run) -> None:
    async def head(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"

    async def main() -> None:
        async with Server(head) as server:
            transport = transport_for(server.url, read=2)
            answer = await asyncio.wait_for(transport.request(HttpRequest("HEAD", "/")), 1)
            assert answer.status == 200 and answer.body == b""
            assert answer.headers["content-length"] == "1234"
            await transport.aclose()

    run(main())


def test_response_headers_are_case_insensitive(run: Run) -> None:
    async def throttled(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        headers = (("retry-after", "7"), ("X-Thing", "a"), ("x-thing", "b"))
        return response(429, headers=headers)

    async def main() -> None:
        async with Server(throttled) as server:
            transport = transport_for(server.url)
            answer = await get(transport)
            await transport.aclose()
        assert answer.status == 429
        assert answer.headers["Retry-After"] == answer.headers.get("RETRY-AFTER") == "7"
        assert "Retry-After" in answer.headers and "Missing" not in answer.headers
        assert answer.headers["X-THING"] == "a, b"
        assert dict(answer.headers)["X-Thing"] == "a, b"

    run(main())


# -- the request on the wire ----------------------------------------------------------------------


def test_requests_carry_host_agent_auth_length_and_the_body(run: Run) -> None:
    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url + "/api/")
            form = [("To", "+15555550100"), ("Body", "Hi & bye = 100% €")]
            await transport.request(
                HttpRequest("POST", "/send", data=form, auth=("AC1", "tok"), headers={"X-K": "1"})
            )
            await transport.request(
                HttpRequest("POST", "/json", json={"to": "+1", "text": "é"}, headers={})
            )
            await get(transport, "/list?page=2", params={"to": "+1 555", "at": "a&b"})
            await get(transport, "/with space/ünï")
            await transport.aclose()
        port = server.url.rpartition(":")[2]
        form_request, json_request, query, odd_path = server.seen
        assert form_request.method == "POST" and form_request.target == "/api/send"
        assert form_request.headers["host"] == f"127.0.0.1:{port}"
        assert form_request.headers["user-agent"] == "smsgate"
        assert form_request.headers["authorization"] == basic_auth("AC1", "tok")
        assert form_request.headers["x-k"] == "1"
        assert form_request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form_request.body == urlencode(form).encode()
        assert form_request.headers["content-length"] == str(len(form_request.body))
        assert json_request.headers["content-type"] == "application/json"
        assert json.loads(json_request.body) == {"to": "+1", "text": "é"}
        assert query.target == "/api/list?page=2&to=%2B1+555&at=a%26b"
        assert "content-length" not in query.headers
        assert odd_path.target == "/api/with%20space/%C3%BCn%C3%AF"

    run(main())


def test_a_line_break_in_a_header_is_refused_before_any_io(run: Run) -> None:
    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            request = HttpRequest("POST", "/", headers={"Idempotency-Key": "k\r\nX-Evil: 1"})
            with pytest.raises(InvalidMessage) as info:
                await transport.request(request)
            await transport.aclose()
        assert info.value.field == "Idempotency-Key"
        assert server.connections == 0

    run(main())


def test_an_absolute_url_goes_to_its_own_host(run: Run) -> None:
    async def main() -> None:
        async with Server() as base, Server() as other:
            transport = transport_for(base.url)
            answer = await get(transport, f"{other.url}/elsewhere?x=1")
            await transport.aclose()
        assert answer.json() == {"target": "/elsewhere?x=1"}
        assert base.connections == 0 and other.connections == 1

    run(main())


def test_debug_logs_never_show_the_query_string(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            await get(transport, "/send?token=SECRET1", params={"hash": "SECRET2"})
            await transport.aclose()

    with caplog.at_level(logging.DEBUG, logger="smsgate.http"):
        run(main())
    assert "test GET /send -> 200" in caplog.text
    assert "SECRET" not in caplog.text


# -- failures: what reached the provider ----------------------------------------------------------


def test_a_refused_connection_is_transient(run: Run) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    async def main() -> None:
        transport = transport_for(f"http://127.0.0.1:{port}")
        with pytest.raises(TransientError) as info:
            await get(transport)
        assert "could not connect to test" in info.value.message
        # The failed attempt gave its place back: the pool is not wedged.
        with pytest.raises(TransientError):
            await get(transport)
        await transport.aclose()

    run(main())


def test_a_close_after_the_request_was_read_is_ambiguous(run: Run) -> None:
    async def vanish(seen: Seen, writer: asyncio.StreamWriter) -> None:
        return None

    async def main() -> None:
        async with Server(vanish) as server:
            transport = transport_for(server.url)
            with pytest.raises(AmbiguousSend) as info:
                await transport.request(HttpRequest("POST", "/send", data={"To": "+1"}))
            await transport.aclose()
        assert "dropped after the request was sent" in info.value.message
        assert len(server.seen) == 1

    run(main())


def test_a_reused_connection_closed_without_an_answer_is_ambiguous_and_not_resent(
    run: Run,
) -> None:
    async def second_vanishes(seen: Seen, writer: asyncio.StreamWriter) -> bytes | None:
        return None if seen.target == "/second" else response()

    async def main() -> None:
        async with Server(second_vanishes) as server:
            transport = transport_for(server.url)
            await get(transport, "/first")
            with pytest.raises(AmbiguousSend) as info:
                await transport.request(HttpRequest("POST", "/second"))
            await settle()  # room for a resend, were there one
            await transport.aclose()
        assert "reused keep-alive connection" in info.value.message
        assert [s.target for s in server.seen] == ["/first", "/second"]  # sent once only

    run(main())


def test_a_silent_server_is_a_read_timeout_and_ambiguous(run: Run) -> None:
    async def stall(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        await asyncio.sleep(30)
        return response()

    async def main() -> float:
        async with Server(stall) as server:
            transport = transport_for(server.url, read=0.2)
            started = time.monotonic()
            with pytest.raises(AmbiguousSend) as info:
                await get(transport)
            elapsed = time.monotonic() - started
            await transport.aclose()
        assert "no response from test within 0.2 s" in info.value.message
        return elapsed

    assert 0.2 <= run(main()) < 1.0


def test_the_read_timeout_counts_from_the_last_byte_received(run: Run) -> None:
    async def trickle(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):  # 0.4 s in all, never 0.25 s without a byte
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
        return b"0\r\n\r\n"

    async def main() -> None:
        async with Server(trickle) as server:
            transport = transport_for(server.url, read=0.25)
            assert (await get(transport)).body == b"xxxx"
            await transport.aclose()

    run(main())


def test_a_malformed_response_is_ambiguous(run: Run) -> None:
    async def garbage(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        return b"HTTP/1.1 2x0 Nope\r\n\r\n"

    async def main() -> None:
        async with Server(garbage) as server:
            transport = transport_for(server.url)
            with pytest.raises(AmbiguousSend, match="malformed response"):
                await get(transport)
            await transport.aclose()

    run(main())


# -- a connection the server closes while it sits idle --------------------------------------------


async def answer_then_close(seen: Seen, writer: asyncio.StreamWriter) -> bytes | None:
    """Answer, then close the connection, as a server does when its keep-alive timeout ends."""
    writer.write(await ok(seen, writer))
    await writer.drain()
    return None


def test_a_request_sent_as_the_loop_sees_the_close_goes_on_a_new_connection(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop read the server's close (eof_received) and closes our side; connection_lost
    comes a loop turn later. A request started in that turn must not be written to the closing
    connection: nothing was sent yet, so it goes on a new one (never an AmbiguousSend)."""
    followers: list[asyncio.Task[HttpResponse]] = []
    transports: list[HttpTransport] = []
    #: whether the pool still counted the first connection when its eof_received returned
    kept: list[bool] = []
    eof_received = transport_module._Connection.eof_received

    def send_again_as_the_close_is_seen(connection: Any) -> bool | None:
        if followers:
            return eof_received(connection)
        # Its first step runs in the next loop turn, before the connection_lost that the close
        # following this call schedules.
        followers.append(asyncio.ensure_future(get(transports[0], "/second")))
        keep_open = eof_received(connection)
        kept.append(connection.pooled or connection.idle)
        return keep_open

    monkeypatch.setattr(
        transport_module._Connection, "eof_received", send_again_as_the_close_is_seen
    )

    async def main() -> HttpResponse:
        async with Server(answer_then_close) as server:
            transports.append(transport_for(server.url))
            await get(transports[0], "/first")
            await server.wait_for(lambda: bool(followers))
            answer = await followers[0]
            await transports[0].aclose()
        assert [s.target for s in server.seen] == ["/first", "/second"]
        assert [s.connection for s in server.seen] == [1, 2]
        assert kept == [False]  # dropped as the loop saw the close
        return answer

    assert run(main()).json() == {"target": "/second"}


def test_the_pool_never_hands_out_a_closing_connection(run: Run) -> None:
    """A transport can be closing before the protocol hears of it (a read error closes it and
    calls connection_lost a loop turn later): the pool skips it and frees its place."""

    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url, connections=2)
            await asyncio.gather(get(transport, "/a"), get(transport, "/b"))
            pool = transport._pools[asyncio.get_running_loop()]
            stale = list(pool.idle)
            assert len(stale) == 2
            for connection in stale:
                assert connection.transport is not None
                connection.transport.close()
                assert connection.transport.is_closing() and not connection.dead
            # The last guard, should a closing connection reach an exchange anyway: refused
            # before any write, so resending is safe.
            with pytest.raises(TransientError, match="nothing was sent"):
                stale[0].exchange(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n", False)
            # No loop turn between the closes and the request: the protocols have not been told.
            answer = await get(transport, "/c")
            assert answer.json() == {"target": "/c"}
            assert pool.open == 1 and pool.connections.isdisjoint(stale)
            await transport.aclose()
        assert sorted(s.target for s in server.seen) == ["/a", "/b", "/c"]
        assert server.seen[-1].connection == 3

    run(main())


def test_a_write_the_socket_refuses_is_transient_not_a_raw_error(run: Run) -> None:
    """A transport that refuses the write (RuntimeError; uvloop raises one for a closed handle)
    sent nothing: the caller gets a TransientError, never an exception outside smsgate's."""

    async def main() -> None:
        async with Server() as server:
            transport = transport_for(server.url)
            await get(transport, "/first")
            [connection] = transport._pools[asyncio.get_running_loop()].idle
            assert connection.transport is not None
            connection.transport.write_eof()  # not closing, but every write now raises
            with pytest.raises(TransientError, match="nothing was sent") as info:
                await get(transport, "/second")
            assert not isinstance(info.value, AmbiguousSend)
            assert (await get(transport, "/third")).json() == {"target": "/third"}
            await transport.aclose()
        assert [s.target for s in server.seen] == ["/first", "/third"]

    run(main())


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "complaint"),
    [
        ("ftp://files.example.com/v1", "is not an http:// or https:// URL with a host"),
        ("https:///v1", "is not an http:// or https:// URL with a host"),
        ("api.example.com/v1", "is not an http:// or https:// URL with a host"),
        ("https://api.example.com:99999/v1", "has an invalid port"),
        ("http://[::1/v1", "is not a valid URL"),
        ("https://USERSECRET:PWSECRET@api.example.com/v1", "put credentials in the provider URL"),
    ],
)
def test_a_bad_base_url_is_refused_when_the_provider_is_built(
    base_url: str, complaint: str
) -> None:
    url = "twilio://AC123:TOKENSECRET@+15017122661?base_url=" + quote(
        base_url + "?key=QUERYSECRET#FRAGSECRET", safe=""
    )
    with pytest.raises(ConfigError) as info:
        create_provider(url)  # no send, no I/O: the provider is only built
    error = info.value
    assert error.field == "base_url"
    assert complaint in error.message and "base_url" in error.message
    for secret in ("USERSECRET", "PWSECRET", "QUERYSECRET", "FRAGSECRET", "TOKENSECRET"):
        assert secret not in str(error) and secret not in repr(error)


def test_a_base_url_error_shows_where_it_points_without_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        create_provider(
            "twilio://AC123:TOKEN@+15017122661?base_url="
            + quote("https://user:PW@api.example.com:8443/v1?key=K", safe="")
        )
    assert "'https://***@api.example.com:8443/v1?key=***'" in info.value.message


def test_a_good_base_url_is_kept_as_given() -> None:
    provider = create_provider(
        "twilio://AC123:TOKEN@+15017122661?base_url=" + quote("http://127.0.0.1:8001/", safe="")
    )
    assert provider.base_url == "http://127.0.0.1:8001"


def test_a_base_url_given_as_an_override_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        create_provider("twilio://AC123:TOKEN@+15017122661", base_url="ftp://x.example/v1")
    assert info.value.field == "base_url"


def test_the_provider_repr_hides_a_base_url_query() -> None:
    provider = create_provider(
        "twilio://AC123:TOKEN@+15017122661?base_url="
        + quote("https://api.example.com/v1?key=QUERYSECRET", safe="")
    )
    assert "QUERYSECRET" not in repr(provider) and "TOKEN" not in repr(provider)
    assert "https://api.example.com/v1?key=***" in repr(provider)


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield generate_tls_files(["localhost"], tmp_path_factory.mktemp("tls"))


def server_context(files: Any, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)

    def remember(_sock: Any, name: str | None, _context: Any) -> None:
        names.append(str(name))

    context.sni_callback = remember
    return context


def test_https_verifies_the_certificate_and_sends_sni(
    run: Run, tls_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system trust store, as providers get it, with our throwaway CA in it.
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(tls_files.ca_file)))
    names: list[str] = []

    async def main() -> None:
        async with Server(tls=server_context(tls_files, names)) as server:
            port = server.url.rpartition(":")[2]
            transport = transport_for(f"https://localhost:{port}")
            for _ in range(3):
                assert (await get(transport, "/secure")).json() == {"target": "/secure"}
            await transport.aclose()
        assert server.connections == 1
        assert server.seen[0].headers["host"] == f"localhost:{port}"

    run(main())
    assert names == ["localhost"]


def test_https_refuses_an_untrusted_certificate_before_sending(
    run: Run, tls_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    async def main() -> None:
        async with Server(tls=server_context(tls_files, [])) as server:
            port = server.url.rpartition(":")[2]
            transport = transport_for(f"https://localhost:{port}")
            with pytest.raises(TransientError, match="certificate failed verification"):
                await get(transport)
            await transport.aclose()
        assert server.seen == []

    run(main())


# -- against the emulators (aiohttp's server) -----------------------------------------------------


def test_many_concurrent_sends_through_a_small_pool_reach_the_emulator_once_each(
    run: Run,
) -> None:
    emulator = EmulatorThread(TwilioEmulator(), "127.0.0.1", 0)
    try:
        provider = create_provider(emulator.emulator.provider_url() + "&max_connections=4")
        messages = [
            smsgate.Message(to=f"+1201555{100 + i % 100:04d}", body=f"code {i}") for i in range(300)
        ]

        async def main() -> list[smsgate.SendResult]:
            try:
                return await provider.asend_many(messages)
            finally:
                await provider.aclose()

        results = run(main())
        assert all(r.ok for r in results)
        summary = emulator.call(emulator.emulator.summary)
        assert summary["count"] == 300 and summary["duplicates"] == 0
    finally:
        emulator.stop()


def test_a_json_object_remembers_the_bytes_it_came_from() -> None:
    from smsgate.message import JsonObject
    from smsgate.outbox.store import dumps
    from smsgate.providers.transport import HttpResponse

    body = '{"sid": "SM1",  "body": "caf\u00e9 ✓"}'.encode()
    parsed = HttpResponse(200, {}, body).json()
    assert type(parsed) is JsonObject and parsed == {"sid": "SM1", "body": "café ✓"}
    assert dumps(parsed) == body.decode()  # stored as the provider sent it, spacing and all
    utf16 = HttpResponse(200, {}, '{"sid": "SM2"}'.encode("utf-16")).json()
    assert dumps(utf16) == '{"sid":"SM2"}'  # not UTF-8: encoded again, as text
    assert HttpResponse(200, {}, b"[1, 2]").json() == [1, 2]
