"""The transport behind a real network's parts: a forward proxy, TLS with a CA of our own, client
certificates, Happy Eyeballs, timeouts, size caps and redirects.

The proxy is tinyproxy from Debian's packages (``apt-get install tinyproxy-bin``; ``.ci/run``
installs it), started per test on a loopback port with a temporary configuration; the tests that
need it skip, saying so, where it is not installed. The TLS servers present certificates from a
CA made here with ``cryptography``. The HTTP servers are the scripted ones of test_transport.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

import smsgate
from smsgate.emulators.base import EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.errors import AmbiguousSend, AuthError, ConfigError, SmsgateError, TransientError
from smsgate.providers import create_provider
from smsgate.providers.transport import (
    HttpRequest,
    HttpTransport,
    Limits,
    ResponseTooLarge,
    Timeout,
    TransportOptions,
    _ResumingContext,
)
from tests.providers.test_transport import Run, Seen, Server, get, response
from tests.support.proxy import SECRET, Proxy, free_port
from tests.support.tls import OwnCA


def transport(url: str | None, **options: object) -> HttpTransport:
    timeout = options.pop("timeout", Timeout(connect=2.0, read=5.0))
    limits = options.pop("limits", Limits(max_connections=4))
    settings = TransportOptions(timeout=timeout, limits=limits, **options)  # type: ignore[arg-type]
    return HttpTransport(url, provider="test", options=settings)


# -- a CA of our own ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OwnCA:
    return OwnCA(tmp_path_factory.mktemp("ca"))


def tls_server(ca: OwnCA, *, require_client_cert: bool = False) -> Server:
    return Server(tls=ca.server_context("127.0.0.1", require_client_cert=require_client_cert))


# -- proxies --------------------------------------------------------------------------------------


def test_http_goes_through_the_proxy_named_in_the_environment(
    run: Run, proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", proxy.url())

    async def main() -> list[Seen]:
        async with Server() as server:
            client = transport(server.url)
            for path in ("/one", "/two?x=1"):
                assert (await get(client, path)).json() == {"target": path}
            await client.aclose()
        return server.seen

    seen = run(main())
    # tinyproxy forwards the absolute-form target as origin-form and says so in Via.
    assert [s.target for s in seen] == ["/one", "/two?x=1"]
    assert all("tinyproxy" in s.headers.get("via", "") for s in seen)
    assert "GET http://127.0.0.1:" in proxy.logged()


def test_no_proxy_sends_directly_and_without_it_the_environment_proxy_is_used(
    run: Run, no_proxy_env: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    no_proxy_env.setenv("http_proxy", dead)

    async def main(expect_direct: bool) -> None:
        async with Server() as server:
            client = transport(server.url)
            if expect_direct:
                assert (await get(client, "/direct")).json() == {"target": "/direct"}
            else:
                with pytest.raises(TransientError, match=r"through the proxy http://127\.0\.0\.1"):
                    await get(client, "/direct")
                assert server.seen == []
            await client.aclose()

    run(main(expect_direct=False))
    no_proxy_env.setenv("no_proxy", "example.com,127.0.0.1")
    run(main(expect_direct=True))


def test_the_proxy_option_beats_the_environment_and_none_goes_direct(
    run: Run, proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")

    async def main() -> list[Seen]:
        async with Server() as server:
            via_option = transport(server.url, proxy=proxy.url())
            direct = transport(server.url, proxy="none")
            await get(via_option, "/proxied")
            await get(direct, "/direct")
            await via_option.aclose()
            await direct.aclose()
        return server.seen

    proxied, direct = run(main())
    assert "tinyproxy" in proxied.headers.get("via", "")
    assert "via" not in direct.headers


def test_proxy_credentials_are_sent_to_the_proxy_only(
    run: Run, auth_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    async def main() -> Seen:
        async with Server() as server:
            client = transport(server.url, proxy=auth_proxy.url(f"alice:{SECRET}@"))
            assert (await get(client, "/with-auth")).status == 200
            await client.aclose()
        return server.seen[0]

    seen = run(main())
    assert "tinyproxy" in seen.headers.get("via", "")
    assert "proxy-authorization" not in seen.headers  # the proxy consumed it


def test_https_goes_through_a_connect_tunnel_with_proxy_auth(
    run: Run, auth_proxy: Proxy, ca: OwnCA, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", auth_proxy.url(f"alice:{SECRET}@"))

    async def main() -> tuple[list[Seen], int]:
        async with tls_server(ca) as server:
            client = transport(server.url, ca_file=str(ca.pem))
            for path in ("/a", "/b", "/c"):
                assert (await get(client, path)).json() == {"target": path}
            await client.aclose()
        return server.seen, server.connections

    seen, connections = run(main())
    # End to end TLS: the proxy saw a CONNECT, never the requests (no Via added inside TLS).
    assert [s.target for s in seen] == ["/a", "/b", "/c"] and connections == 1
    assert all("via" not in s.headers for s in seen)
    assert "CONNECT 127.0.0.1:" in auth_proxy.logged()


def test_refused_proxy_credentials_are_an_auth_error_that_hides_the_password(
    run: Run, auth_proxy: Proxy, ca: OwnCA, no_proxy_env: pytest.MonkeyPatch
) -> None:
    async def main() -> tuple[AuthError, list[Seen]]:
        async with tls_server(ca) as server:
            client = transport(
                server.url, ca_file=str(ca.pem), proxy=auth_proxy.url("alice:wrong-pw@")
            )
            with pytest.raises(AuthError) as info:
                await get(client)
            await client.aclose()
        return info.value, server.seen

    error, seen = run(main())
    assert "refused its credentials" in error.message and error.field == "proxy"
    assert "wrong-pw" not in error.message and "alice" not in error.message
    assert seen == []


def test_a_provider_url_takes_the_proxy_and_never_shows_its_password(
    auth_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    emulator = EmulatorThread(TwilioEmulator(), "127.0.0.1", 0)
    try:
        url = emulator.emulator.provider_url() + f"&proxy={auth_proxy.url(f'alice:{SECRET}@')}"
        with smsgate.Gateway.from_url(url) as gateway:
            result = gateway.send(smsgate.Message(to="+12015550123", body="via the proxy"))
            assert result.ok
            assert SECRET not in repr(gateway) and SECRET not in str(gateway)
        assert emulator.call(emulator.emulator.summary)["count"] == 1
        assert "POST http://127.0.0.1:" in auth_proxy.logged()
        from smsgate.providers.url import ProviderURL

        assert SECRET not in ProviderURL.parse(url).masked()
    finally:
        emulator.stop()


def test_an_unreachable_proxy_is_transient_and_hides_the_password(
    run: Run, no_proxy_env: pytest.MonkeyPatch
) -> None:
    dead = f"http://bob:{SECRET}@127.0.0.1:{free_port()}"

    async def main() -> TransientError:
        client = transport("https://127.0.0.1:9", proxy=dead)
        with pytest.raises(TransientError) as info:
            await get(client)
        await client.aclose()
        return info.value

    error = run(main())
    assert "through the proxy http://127.0.0.1:" in error.message
    assert SECRET not in error.message and "bob" not in error.message


# -- TLS with a CA of our own ---------------------------------------------------------------------


def test_ca_file_trusts_that_ca_and_the_system_store_does_not(
    run: Run, ca: OwnCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    async def main() -> list[Seen]:
        async with tls_server(ca) as server:
            trusting = transport(server.url, ca_file=str(ca.pem))
            assert (await get(trusting, "/trusted")).json() == {"target": "/trusted"}
            system = transport(server.url)
            with pytest.raises(TransientError, match="certificate failed verification"):
                await get(system, "/untrusted")
            await trusting.aclose()
            await system.aclose()
        return server.seen

    assert [s.target for s in run(main())] == ["/trusted"]


def test_a_client_certificate_is_presented_when_the_server_demands_one(
    run: Run, ca: OwnCA, tmp_path: Path
) -> None:
    client_cert = ca.issue("smsgate-client", client=True)
    # One PEM holding certificate and key works too (client_key= omitted).
    combined = tmp_path / "combined.pem"
    combined.write_bytes(client_cert.cert.read_bytes() + client_cert.key.read_bytes())

    async def main() -> tuple[list[Seen], SmsgateError]:
        async with tls_server(ca, require_client_cert=True) as server:
            for options in (
                {"client_cert": str(client_cert.cert), "client_key": str(client_cert.key)},
                {"client_cert": str(combined)},
            ):
                client = transport(server.url, ca_file=str(ca.pem), **options)
                assert (await get(client, "/mtls")).status == 200
                await client.aclose()
            anonymous = transport(server.url, ca_file=str(ca.pem))
            with pytest.raises(SmsgateError) as info:
                await get(anonymous, "/anonymous")
            await anonymous.aclose()
        return server.seen, info.value

    seen, error = run(main())
    # Refused in the handshake: the server never read the anonymous request. Under TLS 1.3 the
    # client has written it by then; a server's "certificate required" alert tells the transport
    # nothing was read (TransientError), a bare close cannot (AmbiguousSend, the safe side).
    assert [s.target for s in seen] == ["/mtls", "/mtls"]
    assert isinstance(error, (TransientError, AmbiguousSend))


async def says_if_resumed(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
    """Answers whether this connection's TLS handshake resumed an earlier session."""
    resumed = writer.get_extra_info("ssl_object").session_reused
    return response(body=json.dumps({"resumed": resumed}).encode())


def test_new_connections_resume_the_tls_session_an_earlier_one_received(
    run: Run, ca: OwnCA
) -> None:
    async def main() -> tuple[Any, list[Any], int]:
        async with Server(says_if_resumed, tls=ca.server_context("127.0.0.1")) as server:
            client = transport(server.url, ca_file=str(ca.pem), limits=Limits(max_connections=4))
            first = await get(client, "/first")
            # Four at once: one on the first connection, three on new ones.
            answers = await asyncio.gather(*(get(client, f"/{i}") for i in range(4)))
            await client.aclose()
        return first.json(), [a.json() for a in answers], server.connections

    first, answers, connections = run(main())
    assert first == {"resumed": False}
    assert connections == 4
    assert sorted(a["resumed"] for a in answers) == [False, True, True, True]


def test_a_new_transport_resumes_the_session_an_earlier_one_with_the_same_trust_received(
    run: Run, ca: OwnCA, tmp_path: Path
) -> None:
    # A Gateway per batch makes a new transport each time; only the same CA file and the same
    # client identity may share sessions (a copy of the file, edited, is another context).
    copy = tmp_path / "copy.pem"
    copy.write_bytes(ca.pem.read_bytes())

    async def main() -> list[object]:
        answers: list[object] = []
        async with Server(says_if_resumed, tls=ca.server_context("127.0.0.1")) as server:
            for ca_file in (ca.pem, ca.pem, copy):
                client = transport(server.url, ca_file=str(ca_file))
                answers.append((await get(client, "/")).json()["resumed"])
                await client.aclose()
            copy.write_bytes(ca.pem.read_bytes() + b"\n")
            client = transport(server.url, ca_file=str(copy))
            answers.append((await get(client, "/")).json()["resumed"])
            await client.aclose()
        return answers

    assert run(main()) == [False, True, False, False]
    same = TransportOptions(ca_file=str(ca.pem))
    assert same.ssl_context() is TransportOptions(ca_file=str(ca.pem)).ssl_context()
    assert same.ssl_context() is not TransportOptions(ca_file=str(copy)).ssl_context()
    client_cert = ca.issue("smsgate-client", client=True)
    presenting = TransportOptions(
        ca_file=str(ca.pem), client_cert=str(client_cert.cert), client_key=str(client_cert.key)
    )
    assert presenting.ssl_context() is not same.ssl_context()


@pytest.mark.parametrize("sessions", ["tickets", "stateful"])
def test_connections_that_resumed_leave_the_session_they_resumed_to_the_next_ones(
    run: Run, ca: OwnCA, tmp_path: Path, sessions: str
) -> None:
    # Each new transport offers the session the first connection received: the connections that
    # resumed it do not replace it, and the server takes it again and again (session tickets, or
    # a session cache on the server without tickets).
    own_ca = tmp_path / "ca.pem"  # a context of this test's own, no session from others
    own_ca.write_bytes(ca.pem.read_bytes())
    server_context = ca.server_context("127.0.0.1")
    if sessions == "stateful":
        server_context.options |= ssl.OP_NO_TICKET

    async def main() -> list[object]:
        answers: list[object] = []
        async with Server(says_if_resumed, tls=server_context) as server:
            for _ in range(6):
                client = transport(server.url, ca_file=str(own_ca))
                answers.append((await get(client, "/")).json()["resumed"])
                await client.aclose()
        return answers

    assert run(main()) == [False, True, True, True, True, True]
    context = TransportOptions(ca_file=str(own_ca)).ssl_context()
    assert isinstance(context, _ResumingContext) and not context.single_use


class _FakeTLS:
    """What keep_session reads of a connection: its SSL object, resumed or not, and its session."""

    def __init__(self, resumed: bool, session: object) -> None:
        self.session_reused = resumed
        self.session = session

    def get_extra_info(self, name: str) -> object:
        assert name == "ssl_object"
        return self


class _FakeSession:
    has_ticket = True


def test_a_server_that_takes_each_session_once_gets_every_connection_s_own_session(
    ca: OwnCA,
) -> None:
    # No server OpenSSL lets Python configure refuses a session it has resumed (TLS 1.3 stateful
    # sessions with anti-replay do): the bookkeeping is driven with stand-ins instead.
    context = _ResumingContext.default(str(ca.pem))
    host = "api.example.com"

    def connect(resumes: bool) -> _FakeTLS:
        offered = context.sessions.get(host)
        connection = _FakeTLS(resumes and offered is not None, _FakeSession())
        if offered is not None:
            context.offered[connection] = offered  # type: ignore[index]
        return connection

    first = connect(resumes=False)
    context.keep_session(host, first)  # type: ignore[arg-type]
    assert context.sessions[host] is first.session
    second = connect(resumes=True)
    context.keep_session(host, second)  # type: ignore[arg-type]
    assert context.sessions[host] is first.session  # resumed: the session stays
    third = connect(resumes=False)  # refused right after resuming one: single-use
    context.keep_session(host, third)  # type: ignore[arg-type]
    assert host in context.single_use and context.sessions[host] is third.session
    fourth = connect(resumes=True)
    context.keep_session(host, fourth)  # type: ignore[arg-type]
    assert context.sessions[host] is fourth.session  # from now on each one's own
    # Elsewhere, a refusal long after the session was stored is an expiry, not a single use.
    other = "other.example.com"
    context.sessions[other] = _FakeSession()  # type: ignore[assignment]
    context.stored_at[other] = time.monotonic() - 3600
    context.resumed.add(other)
    late = _FakeTLS(False, _FakeSession())
    context.offered[late] = context.sessions[other]  # type: ignore[index]
    context.keep_session(other, late)  # type: ignore[arg-type]
    assert other not in context.single_use and context.sessions[other] is late.session


def test_a_session_another_server_cannot_resume_costs_a_full_handshake_not_a_failure(
    run: Run, ca: OwnCA
) -> None:
    # Two servers on one host name, each with its own ticket keys: the session the first gave
    # is offered to the second, which cannot decrypt it and does a full handshake.
    async def main() -> list[object]:
        async with (
            Server(says_if_resumed, tls=ca.server_context("127.0.0.1")) as one,
            Server(says_if_resumed, tls=ca.server_context("127.0.0.1")) as other,
        ):
            client = transport(None, ca_file=str(ca.pem))
            answers = [(await get(client, f"{url}/x")).json() for url in (one.url, other.url)]
            await client.aclose()
        return answers

    assert run(main()) == [{"resumed": False}, {"resumed": False}]


def test_tls_options_that_cannot_work_are_refused_where_the_url_is_read(
    ca: OwnCA, tmp_path: Path
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    base = "twilio://ACxxxxxxxx:token@+15005550006?"
    cases = {
        "ca_file=/nonexistent/ca.pem": "ca_file",
        f"ca_file={not_pem}": "ca_file",
        f"client_cert={not_pem}": "client_cert",
        f"client_key={ca.pem}": "client_cert",
        "proxy=https://proxy.example:3128": "proxy",
        "proxy=ftp://proxy.example": "proxy",
        "timeout=soon": "timeout",
        "total_timeout=-1": "total_timeout",
        "write_timeout=0": "write_timeout",
        "max_response_bytes=1.5": "max_response_bytes",
    }
    for query, field in cases.items():
        with pytest.raises(ConfigError) as info:
            create_provider(base + query)
        assert info.value.field == field, query


def test_transport_options_read_from_a_provider_url() -> None:
    provider = create_provider(
        "twilio://ACxxxxxxxx:token@+15005550006?timeout=3&connect_timeout=1.5&write_timeout=2"
        "&total_timeout=0&max_response_bytes=5000&max_connections=7&proxy=none"
    )
    options = provider.transport_options
    assert options.timeout == Timeout(connect=1.5, read=3.0, write=2.0, total=None)
    assert options.limits == Limits(max_connections=7, max_response_bytes=5000)
    assert options.proxy == "none"


# -- Happy Eyeballs -------------------------------------------------------------------------------


def test_a_host_name_connects_through_happy_eyeballs(run: Run) -> None:
    """By name, connections go through Happy Eyeballs: asyncio's (happy_eyeballs_delay=) on
    asyncio's loop, aiohappyeyeballs on uvloop. Where localhost is both ::1 and 127.0.0.1, the
    server listening on 127.0.0.1 only, the refused ::1 attempt must not fail the request."""

    async def main() -> None:
        async with Server() as server:
            port = server.url.rpartition(":")[2]
            client = transport(f"http://localhost:{port}")
            started = time.monotonic()
            assert (await get(client, "/he")).json() == {"target": "/he"}
            assert time.monotonic() - started < 1.5
            await client.aclose()
        assert server.seen[0].headers["host"] == f"localhost:{port}"

    run(main())


# -- timeouts -------------------------------------------------------------------------------------


def test_a_trickling_response_is_cut_by_the_total_timeout(run: Run) -> None:
    async def trickle(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(50):  # a byte every 0.05 s: the read timeout never fires
            await asyncio.sleep(0.05)
            writer.write(b"1\r\nx\r\n")
        return b"0\r\n\r\n"

    async def main() -> float:
        async with Server(trickle) as server:
            client = transport(server.url, timeout=Timeout(read=0.3, total=0.5))
            started = time.monotonic()
            with pytest.raises(AmbiguousSend, match=r"within 0.5 s \(the total timeout\)"):
                await get(client)
            elapsed = time.monotonic() - started
            await client.aclose()
        return elapsed

    assert 0.5 <= run(main()) < 1.5


def test_the_total_timeout_bounds_the_wait_for_a_connection_and_nothing_is_sent(
    run: Run,
) -> None:
    async def stall(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        await asyncio.sleep(0.6)
        return response()

    async def main() -> None:
        async with Server(stall) as server:
            client = transport(
                server.url, timeout=Timeout(read=5, total=5), limits=Limits(max_connections=1)
            )
            first = asyncio.ensure_future(get(client, "/first"))
            await asyncio.sleep(0.05)
            # The next request on the same pool gets a tighter bound: it waits for the one
            # connection, which the first request holds for 0.6 s.
            client.timeout = Timeout(read=5, total=0.3)
            with pytest.raises(TransientError, match="nothing was sent"):
                await get(client, "/second")
            assert (await first).status == 200
            await client.aclose()
        assert [s.target for s in server.seen] == ["/first"]

    run(main())


def test_a_server_that_stops_reading_trips_the_write_timeout(run: Run) -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []

        async def accept() -> None:
            sock, _ = await asyncio.get_running_loop().sock_accept(listener)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            accepted.append(sock)  # never read from

        acceptor = asyncio.ensure_future(accept())
        client = transport(f"http://127.0.0.1:{port}", timeout=Timeout(read=5, write=0.3, total=10))
        started = time.monotonic()
        with pytest.raises(AmbiguousSend, match=r"not fully written within 0.3 s"):
            await client.request(HttpRequest("POST", "/upload", data=b"x" * 64_000_000))
        assert time.monotonic() - started < 2.0
        await client.aclose()
        await acceptor
        for sock in accepted:
            sock.close()
        listener.close()

    run(main())


# -- response size cap and redirects --------------------------------------------------------------


def test_a_response_past_the_size_cap_fails_without_being_held(run: Run) -> None:
    big = b"y" * 3_000_000
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB of zeros in about 50 kB

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        if seen.target == "/bomb":
            return response(body=bomb, headers=(("Content-Encoding", "gzip"),))
        return response(body=big if seen.target == "/big" else b"small")

    async def main() -> None:
        async with Server(answer) as server:
            client = transport(server.url, limits=Limits(max_response_bytes=1_000_000))
            for path in ("/big", "/bomb"):
                with pytest.raises(ResponseTooLarge, match="larger than 1000000 bytes"):
                    await get(client, path)
            assert (await get(client, "/fine")).body == b"small"
            # A request may ask for less than the transport's cap.
            with pytest.raises(ResponseTooLarge):
                await get(client, "/fine", max_response_bytes=3)
            await client.aclose()

    run(main())


def test_a_redirect_is_returned_as_it_is_never_followed(run: Run) -> None:
    async def moved(seen: Seen, writer: asyncio.StreamWriter) -> bytes:
        if seen.target == "/old":
            return response(301, b"", (("Location", "/new"),))
        return response(body=b'{"sid": "SM1"}')

    async def main() -> None:
        async with Server(moved) as server:
            client = transport(server.url)
            answer = await client.request(HttpRequest("POST", "/old", data={"To": "+1"}))
            assert answer.status == 301 and not answer.ok
            assert answer.headers["location"] == "/new"
            await client.aclose()
        assert [s.target for s in server.seen] == ["/old"]

    run(main())


def test_pools_for_hosts_named_by_absolute_url_do_not_pile_up(run: Run) -> None:
    """Webhooks and media name ever new hosts: an idle pool is dropped when another is made."""

    async def main() -> None:
        client = transport(None)
        for number in range(5):
            async with Server() as server:
                answer = await get(client, f"{server.url}/host-{number}")
                assert answer.json() == {"target": f"/host-{number}"}
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        assert len(client._other_pools) == 1
        with pytest.raises(ValueError, match="absolute"):
            await get(client, "/relative")
        await client.aclose()

    run(main())
