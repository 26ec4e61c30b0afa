"""A real HTTP server on loopback that records every webhook it receives."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from aiohttp import web

from smsgate.providers.base import WebhookRequest


@dataclass
class Received:
    request: WebhookRequest
    path: str


class WebhookReceiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        url = f"{self.url}{request.path_qs}"
        self.received.append(
            Received(
                WebhookRequest(
                    url=url, method=request.method, headers=dict(request.headers), body=body
                ),
                request.path,
            )
        )
        return web.Response(status=self.status, text="")

    def wait(
        self, count: int = 1, timeout: float = 10.0, path: str | None = None
    ) -> list[WebhookRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r.request for r in self.received if path is None or r.path == path]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(
            f"expected {count} webhook(s) at {path or 'any path'}, got {len(self.received)}"
        )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
