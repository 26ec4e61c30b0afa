"""Serving the app on uvicorn: in the foreground (``smsgate serve``), on a thread (tests), or in
the caller's event loop (``smsgate demo``).

The listening socket is bound before the app is built, so ``--port 0`` works and, without a
configured ``public_url``, the callback URLs given to providers name the port actually bound.
Uvicorn turns SIGINT/SIGTERM into a graceful shutdown: it stops accepting connections, lets
requests in flight finish, then the app's shutdown stops the worker, which finishes or releases
the messages it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import uvicorn
from fastapi import FastAPI

from smsgate.config import Config
from smsgate.server.app import create_app
from smsgate.server.settings import ServerSettings

#: seconds uvicorn lets requests in flight finish on shutdown
GRACEFUL_SECONDS = 30


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def local_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    elif host == "0.0.0.0":
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def uvicorn_server(
    app: FastAPI, *, log_level: str = "info", access_log: bool = False
) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level=log_level,
            access_log=access_log,
            server_header=False,
            # the peer address stays the connection's: the app trusts a proxy's header only
            # from the proxies its config names ([verify] trusted_proxies), while uvicorn's
            # default would take X-Forwarded-For from any loopback peer
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            backlog=2048,
        )
    )


def serve(
    config: Config,
    settings: ServerSettings,
    *,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Bind, build and serve until SIGINT/SIGTERM (the ``smsgate serve`` command)."""
    sock = bind(settings.host, settings.port)
    url = local_url(sock)
    if settings.public_url is None:
        settings = replace(settings, public_url=url)
    app = create_app(config, settings=settings)
    settle_heap()
    server = uvicorn_server(app, log_level=log_level)
    if on_ready is not None:
        on_ready(url)
    # Uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the
    # handler that was there before it; with these no-op handlers, a graceful stop exits 0.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def settle_heap() -> None:
    """Keep the cyclic garbage collector from eating the server's CPU.

    What exists now (modules, the app, its schemas) lives as long as the process, yet the
    collector would walk all of it at every full collection; and with the default threshold a
    10,000-message batch, whose objects all stay alive until it is answered, sets off a young
    collection every 700 allocations, each walking the batch again as it is promoted. Measured
    on the api_throughput bench: 3 s of the gateway's 6.5 s of CPU before, 1 s after. Garbage
    made so far is collected first, so freezing keeps only what is alive; reference counting
    still frees everything else at once, so the higher threshold only delays reference cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _stopped(signum: int, frame: object) -> None:
    """Receives the signal uvicorn raises again after its graceful shutdown."""


class ServerThread:
    """The app served on a background thread at ``url`` (a free loopback port by default).

    ``make_app(url)`` builds the app once the socket is bound, so callbacks can name the port.
    """

    def __init__(
        self,
        make_app: Callable[[str], FastAPI],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        timeout: float = 30.0,
    ) -> None:
        self._sock = bind(host, port)
        self.url = local_url(self._sock)
        self.app = make_app(self.url)
        self.server = uvicorn_server(self.app, log_level=log_level)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="smsgate-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by the starting thread
            self._error = exc

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise TimeoutError("the server did not stop in time")

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class Served:
    """A server running in the current event loop (see :func:`serving`)."""

    url: str
    app: FastAPI
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def serving(
    make_app: Callable[[str], FastAPI],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    timeout: float = 30.0,
) -> AsyncIterator[Served]:
    """Serve in this event loop while the block runs, then shut down gracefully (the worker
    finishes or gives back what it holds). ``make_app(url)`` builds the app once the socket is
    bound: ``async with serving(lambda url: create_app(config, settings=...)) as served: ...``.
    """
    sock = bind(host, port)
    url = local_url(sock)
    try:
        app = make_app(url)
        server = uvicorn_server(app, log_level=log_level)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="smsgate-serve")
        deadline = time.monotonic() + timeout
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise TimeoutError("the server did not start in time")
            await asyncio.sleep(0.01)
        try:
            yield Served(url, app, server)
        finally:
            server.should_exit = True
            await task
    finally:
        sock.close()
