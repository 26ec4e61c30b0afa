"""HTTP transport on aiohttp: one keep-alive pool per provider, timeouts, bounded concurrency.

The transport's one job beyond moving bytes is to say *how* a request failed, because that decides
whether resending is safe: a refused connection never reached the provider (``TransientError``),
while a read timeout or a reset after the request was written may have (``AmbiguousSend``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from smsgate.errors import AmbiguousSend, TransientError

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger("smsgate.http")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds for connecting and for waiting on the response once the request is written."""

    connect: float = 5.0
    read: float = 15.0


@dataclass(frozen=True, slots=True)
class Limits:
    """At most ``max_connections`` requests in flight per provider (one keep-alive pool)."""

    max_connections: int = 100


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    params: Mapping[str, str] | list[tuple[str, str]] | None = None
    data: Mapping[str, Any] | list[tuple[str, str]] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The parsed JSON body, or ``None`` when the body is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@lru_cache(maxsize=64)
def basic_auth(user: str, password: str) -> str:
    """An ``Authorization: Basic`` header value (cached: it is built for every request)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class HttpTransport:
    """A keep-alive aiohttp session per event loop (sync callers run on their own loop)."""

    def __init__(self, base_url: str, *, provider: str, timeout: Timeout, limits: Limits) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self.limits = limits
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limits.max_connections,
                limit_per_host=self.limits.max_connections,
                keepalive_timeout=30,
                enable_cleanup_closed=True,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout.connect, sock_read=self.timeout.read
                ),
                auto_decompress=True,
                # Provider APIs set no cookies we need; skipping the jar saves work per request.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "smsgate"},
            )
            self._sessions[loop] = session
        return session

    async def request(self, request: HttpRequest) -> HttpResponse:
        import aiohttp

        session = self._session()
        url = request.path if "://" in request.path else f"{self.base_url}{request.path}"
        headers = request.headers
        if request.auth is not None:
            headers = {**headers, "Authorization": basic_auth(*request.auth)}
        data: Any = request.data
        if data is not None and not isinstance(data, bytes | str):
            # Encode forms here, as aiohttp's FormData would (urlencode, doseq): its generic
            # payload lookup and FormData objects cost about three times the encoding itself.
            data = urlencode(data, doseq=True).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        started = time.perf_counter()
        try:
            async with session.request(
                request.method,
                url,
                params=request.params,
                data=data,
                json=request.json,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                response = HttpResponse(resp.status, resp.headers, body)
        except aiohttp.ConnectionTimeoutError:
            raise TransientError(
                f"timed out connecting to {self.provider}", provider=self.provider
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransientError(
                f"could not connect to {self.provider} ({exc.os_error.strerror or 'refused'})",
                provider=self.provider,
            ) from None
        except (TimeoutError, aiohttp.SocketTimeoutError):
            raise AmbiguousSend(
                f"no response from {self.provider} within {self.timeout.read:g} s; "
                "the message may have been accepted",
                provider=self.provider,
            ) from None
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise AmbiguousSend(
                f"connection to {self.provider} dropped after the request was sent "
                f"({type(exc).__name__}); the message may have been accepted",
                provider=self.provider,
            ) from None
        except aiohttp.ClientError as exc:
            raise TransientError(
                f"HTTP error talking to {self.provider}: {type(exc).__name__}",
                provider=self.provider,
            ) from None
        if logger.isEnabledFor(logging.DEBUG):
            # Path only: some providers (SMSPM) put credentials in the query string.
            logger.debug(
                "%s %s %s -> %d in %.1f ms",
                self.provider,
                request.method,
                request.path.split("?", 1)[0] if "://" not in request.path else "<absolute url>",
                response.status,
                (time.perf_counter() - started) * 1000,
            )
        return response

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.items()), {}
        for loop, session in sessions:
            if loop is asyncio.get_running_loop():
                await session.close()
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(session.close(), loop)
