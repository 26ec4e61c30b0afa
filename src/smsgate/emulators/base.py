"""What every HTTP provider emulator shares: the server, faults, callbacks, introspection.

An emulator is a product feature: users run it (``smsgate emulate twilio``) to test their own code
without a provider account. Each speaks one provider's wire contract; this base adds the parts
that are the same everywhere:

- ``GET /_emulator/messages`` lists accepted messages and counts duplicates (the same idempotency
  key or client reference, or, where a provider has none, the same recipient, sender and body);
  ``POST /_emulator/reset`` forgets them;
- ``GET /_emulator/codes?to=NUMBER`` answers the last one-time code texted to a number (the first
  run of 4 to 10 digits standing alone in the newest message to it), so a sign-up test reads the
  code the way the phone would, offline;
- ``GET|POST /_emulator/faults`` reads or sets seeded fault injection: latency, a 503 rate, a 429
  rate with ``Retry-After``, connection resets and hangs (both *after* the message was accepted,
  which is what makes a send ambiguous);
- delivery callbacks signed in the provider's real scheme, after a delay, with an outcome mix;
- ``POST /_emulator/inbound`` posts the provider's inbound webhook to a URL, and an emulator that
  sets ``stop_words`` remembers an inbound STOP (:meth:`Emulator.track_keyword`) so that later
  sends to that number can fail the way the provider fails them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from aiohttp import ClientSession, ClientTimeout, web

logger = logging.getLogger("smsgate.emulators")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INTROSPECTION_PREFIX = "/_emulator/"
#: a one-time code in a text: 4 to 10 digits not inside a longer word or number
_CODE = re.compile(r"(?<![0-9A-Za-z])[0-9]{4,10}(?![0-9A-Za-z])")


@dataclass(slots=True)
class Faults:
    """Seeded fault injection on the provider's API routes (never on ``/_emulator``)."""

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 60.0
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(known))}")
            if key == "seed":
                self.seed = None if value is None else int(value)
            else:
                setattr(self, key, float(value))


@dataclass(slots=True)
class Callbacks:
    """When and how the emulator reports delivery: seconds after acceptance and an outcome mix."""

    delay: float = 0.2
    outcomes: dict[str, float] = field(default_factory=lambda: {"delivered": 1.0})

    @staticmethod
    def parse_outcomes(text: str) -> dict[str, float]:
        """``"delivered=0.9,undelivered=0.05,failed=0.05"`` into weights."""
        outcomes: dict[str, float] = {}
        for item in text.split(","):
            name, _, weight = item.partition("=")
            outcomes[name.strip()] = float(weight or 1)
        return outcomes


@dataclass(slots=True)
class EmulatedMessage:
    id: str
    to: str
    sender: str
    body: str
    status: str
    created_at: float
    media: list[str] = field(default_factory=list)
    reference: str | None = None
    callback_url: str | None = None
    segments: int = 1
    duplicate: bool = False
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Emulator(ABC):
    """Base of the HTTP provider emulators."""

    name: ClassVar[str]
    default_credentials: ClassVar[str]
    #: the outcome names a provider reports in callbacks
    outcome_names: ClassVar[tuple[str, ...]] = ("delivered", "undelivered", "failed")
    #: inbound texts that opt the sender out of messages from the number it texted, and back in
    #: (empty: this emulator does not track opt-outs)
    stop_words: ClassVar[frozenset[str]] = frozenset()
    start_words: ClassVar[frozenset[str]] = frozenset()
    #: the largest message-list page served (tests lower it to exercise paging)
    max_page_size: int = 1000

    def __init__(
        self,
        *,
        credentials: str | None = None,
        faults: Faults | None = None,
        callbacks: Callbacks | None = None,
        inbound_url: str | None = None,
    ) -> None:
        self.credentials = credentials or self.default_credentials
        self.faults = faults or Faults()
        self.callbacks = callbacks or Callbacks()
        self.inbound_url = inbound_url
        self.messages: list[EmulatedMessage] = []
        self.by_id: dict[str, EmulatedMessage] = {}
        self._seen: set[Any] = set()
        self._rng = random.Random(self.faults.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.callback_log: list[dict[str, Any]] = []
        #: (recipient, sender) pairs, as :func:`address_key` forms, opted out by an inbound STOP
        self.opted_out: set[tuple[str, str]] = set()
        #: the query of every message-list request (the lookups reconcile makes), for tests
        self.list_queries: list[dict[str, str]] = []
        #: after this many list pages served, list requests answer 503; None: never
        self.list_pages_before_failure: int | None = None

    # -- what a provider emulator writes ------------------------------------------------------

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the provider's API routes."""

    @abstractmethod
    def provider_url(self) -> str:
        """The smsgate provider URL that points a client at this emulator."""

    @abstractmethod
    def error_response(self, status: int, kind: str) -> web.Response:
        """The provider's error body for an injected fault (``kind``: unavailable, throttled)."""

    @abstractmethod
    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        """Post the provider's signed status callback(s) for ``message`` ending in ``outcome``."""

    @abstractmethod
    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        """Post the provider's signed inbound-message webhook; return the HTTP status received."""

    def describe(self) -> list[str]:
        """Lines printed at start: credentials and how to point a client here."""
        return [
            f"{self.name} emulator listening on {self.url}",
            f"credentials: {self.credentials}",
            f"provider URL: {self.provider_url()}",
        ]

    # -- shared behaviour ---------------------------------------------------------------------

    def record(self, message: EmulatedMessage) -> EmulatedMessage:
        """Keep an accepted message and schedule its own receipts.

        ``duplicate`` is an observer's mark for tests (same reference, or where the request has
        none, same recipient, sender, body and media); it changes nothing the emulator does. A
        provider drops a repeat only by a key it honours, and its emulator does that before it
        gets here (Telnyx's and smsroute's Idempotency-Key): a message that reaches ``record``
        was accepted, gets its own id, and its own receipts, as at the real provider.
        """
        key = message.reference or (message.to, message.sender, message.body, tuple(message.media))
        message.duplicate = key in self._seen
        self._seen.add(key)
        self.messages.append(message)
        self.by_id[message.id] = message
        if message.callback_url:
            self._spawn(self._callback_later(message))
        return message

    def list_request(self, request: web.Request) -> web.Response | None:
        """Record a message-list request; the injected failure to answer with, if one is due."""
        self.list_queries.append(dict(request.query))
        failing_after = self.list_pages_before_failure
        if failing_after is not None and len(self.list_queries) > failing_after:
            return self.error_response(503, "unavailable")
        return None

    def choose_outcome(self) -> str:
        names = list(self.callbacks.outcomes)
        weights = [self.callbacks.outcomes[n] for n in names]
        return self._rng.choices(names, weights)[0]

    async def _callback_later(self, message: EmulatedMessage) -> None:
        await asyncio.sleep(self.callbacks.delay)
        try:
            await self.deliver_callback(message, self.choose_outcome())
        except Exception as exc:  # a user's webhook being down must not stop the emulator
            logger.info("callback for %s failed: %s", message.id, exc)

    async def post(
        self, url: str, *, data: Any = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> int:
        """POST a webhook; logs the attempt for introspection; returns the HTTP status."""
        return await self._webhook("POST", url, data=data, json=json, headers=headers)

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> int:
        """GET a webhook whose parameters are already in ``url``; logged as :meth:`post` is."""
        return await self._webhook("GET", url, headers=headers)

    async def _webhook(self, method: str, url: str, **kwargs: Any) -> int:
        if self._client is None or self._client.closed:
            self._client = ClientSession(timeout=ClientTimeout(total=10))
        try:
            async with self._client.request(method, url, **kwargs) as resp:
                await resp.read()
                status = resp.status
        except Exception as exc:
            self.callback_log.append({"url": url, "status": None, "error": type(exc).__name__})
            raise
        self.callback_log.append({"url": url, "status": status})
        return status

    def track_keyword(self, sender: str, to: str, body: str) -> None:
        """Note a text from ``sender`` to our number ``to``: STOP opts out, START opts back in."""
        word = body.strip().lower()
        pair = (address_key(sender), address_key(to))
        if word in self.stop_words:
            self.opted_out.add(pair)
        elif word in self.start_words:
            self.opted_out.discard(pair)

    def has_opted_out(self, recipient: str, sender: str) -> bool:
        """Whether ``recipient`` texted STOP to ``sender`` (and not START since)."""
        return (address_key(recipient), address_key(sender)) in self.opted_out

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reset(self) -> None:
        self.messages.clear()
        self.by_id.clear()
        self._seen.clear()
        self.callback_log.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "count": len(self.messages),
            "duplicates": sum(m.duplicate for m in self.messages),
            "messages": [m.to_dict() for m in self.messages],
        }

    # -- the server ---------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._fault_middleware], client_max_size=10 * 1024 * 1024
        )
        app.router.add_get("/_emulator/messages", self._h_messages)
        app.router.add_post("/_emulator/reset", self._h_reset)
        app.router.add_get("/_emulator/codes", self._h_codes)
        app.router.add_get("/_emulator/faults", self._h_faults)
        app.router.add_post("/_emulator/faults", self._h_faults)
        app.router.add_post("/_emulator/inbound", self._h_inbound)
        self.add_routes(app)
        return app

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(INTROSPECTION_PREFIX):
            return await handler(request)
        faults = self.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        roll = self._rng.random()
        if roll < faults.error_rate:
            return self.error_response(503, "unavailable")
        roll -= faults.error_rate
        if roll < faults.rate_limit_rate:
            throttled = self.error_response(429, "throttled")
            throttled.headers["Retry-After"] = f"{faults.retry_after:g}"
            return throttled
        roll -= faults.rate_limit_rate
        response = await handler(request)
        if roll < faults.reset_rate:
            # Accepted, then the connection drops before the answer: an ambiguous send.
            if request.transport is not None:
                request.transport.abort()
            return response
        roll -= faults.reset_rate
        if roll < faults.hang_rate:
            await asyncio.sleep(faults.hang_seconds)
        return response

    async def _h_messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.summary())

    def last_code(self, to: str) -> dict[str, Any] | None:
        """The newest code texted to ``to``, with the message that carried it."""
        wanted = address_key(to)
        for message in reversed(self.messages):
            if address_key(message.to) != wanted:
                continue
            found = _CODE.search(message.body)
            if found is not None:
                return {
                    "to": message.to,
                    "code": found.group(),
                    "message_id": message.id,
                    "created_at": message.created_at,
                }
        return None

    async def _h_codes(self, request: web.Request) -> web.Response:
        to = request.query.get("to", "")
        if not to.strip():
            return web.json_response(
                {"error": "missing to", "fix": "GET /_emulator/codes?to=%2B14155552671"}, status=400
            )
        found = self.last_code(to)
        if found is None:
            return web.json_response({"error": f"no code was texted to {to}"}, status=404)
        return web.json_response(found)

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _h_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                values = await request.json()
                if not isinstance(values, dict):
                    raise ValueError("send a JSON object of fault settings")
                self.faults.update(values)
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            if "seed" in values:
                self._rng = random.Random(self.faults.seed)
        return web.json_response(asdict(self.faults))

    async def _h_inbound(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            sender, to, body = str(data["from"]), str(data["to"]), str(data.get("body", ""))
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": "send JSON {from, to, body, media?, url?}"}, status=400
            )
        url = data.get("url") or self.inbound_url
        if not url:
            return web.json_response(
                {"error": "no url given and no --inbound-url configured"}, status=400
            )
        try:
            status = await self.post_inbound(
                str(url), sender, to, body, list(data.get("media") or [])
            )
        except Exception as exc:
            return web.json_response(
                {"error": f"could not reach {url}: {type(exc).__name__}"}, status=502
            )
        return web.json_response({"delivered_to": url, "status": status})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None and hasattr(server, "sockets")
        bound = server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        url = await self.start(host, port)
        try:
            yield url
        finally:
            await self.stop()

    def run_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorThread:
        """Start on a background thread (for sync tests and scripts); returns a handle to stop."""
        return EmulatorThread(self, host, port)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.01)
        return predicate()


def address_key(value: str) -> str:
    """A number as bare digits (``+``, spaces, dashes, dots and brackets dropped), else the text.

    So ``+1 (555) 555-0100`` and ``15555550100`` are the same number, and ``MyApp`` stays a sender
    id, wherever an emulator compares addresses.
    """
    stripped = "".join(ch for ch in value if ch not in "+-.() \t")
    return stripped if stripped.isdigit() else value.strip()


def possible_number(number: str) -> bool:
    """Whether ``number`` (digits, with or without ``+``) could be a phone number anywhere."""
    from smsgate.errors import InvalidRecipient
    from smsgate.phone import normalize

    digits = number.strip().removeprefix("+")
    if not digits.isdigit():
        return False
    try:
        normalize(f"+{digits}", strict=False)
    except InvalidRecipient:
        return False
    return True


async def request_fields(request: web.Request) -> dict[str, Any] | None:
    """A JSON request's object body, or a form request's fields as text.

    None when a JSON body is not valid JSON or not an object; each provider refuses that its own
    way.
    """
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
    return {key: str(value) for key, value in (await request.post()).items()}


class EmulatorThread:
    """An emulator serving on its own event-loop thread."""

    def __init__(self, emulator: Emulator, host: str, port: int) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"{emulator.name}-emulator", daemon=True
        )
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(emulator.start(host, port), self.loop)
        self.url = started.result(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (to read or change its state safely)."""

        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def __enter__(self) -> EmulatorThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
