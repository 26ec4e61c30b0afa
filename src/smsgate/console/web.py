"""The console's pages and actions: a small Starlette app ``smsgate serve`` mounts at /console.

Every page is server-rendered HTML (Jinja2) that works without JavaScript; ``console.js`` only
adds live updates (server-sent events) and small comforts. Every form posts
``application/x-www-form-urlencoded`` with the session's CSRF token; every action that changes
something needs the admin role, and a read-only session gets 403 with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from smsgate.console import charts
from smsgate.console.auth import ConsoleAuth, Session, csrf_ok, parse_role
from smsgate.console.settings import ConsoleSettings
from smsgate.errors import ConfigError, SmsgateError
from smsgate.message import Message, Purpose
from smsgate.outbox.records import REDACTED_BODY, MessageNotFound, NotCancelable
from smsgate.outbox.store import CANCELABLE, STATES, State
from smsgate.outbox.suppressions import ALL_NUMBERS
from smsgate.outbox.tables.message_log import LogFilter, MessageLog
from smsgate.outbox.tables.pauses import ProviderPauses
from smsgate.outbox.tables.server import Suppression
from smsgate.pauses import PauseView
from smsgate.phone import normalize
from smsgate.ratelimit import refill
from smsgate.server.auth import create_key
from smsgate.server.inbound import suppression_event
from smsgate.server.webhooks_out import make_event

if TYPE_CHECKING:
    from smsgate.clock import Clock
    from smsgate.config import Config
    from smsgate.outbox.worker import Worker
    from smsgate.ratelimit import RateLimiter
    from smsgate.server.services import Services
    from smsgate.verify import Verify

logger = logging.getLogger("smsgate.console")
COOKIE = "smsgate_console"
LOGIN_COOKIE = "smsgate_console_login"
MAX_FORM = 64 * 1024
#: states a message may be sent again from (a new message, the old one kept)
RESENDABLE = frozenset(
    {State.FAILED, State.UNDELIVERED, State.EXPIRED, State.CANCELED, State.UNKNOWN, State.REJECTED}
)
#: how often the live views look for changes
LIVE_INTERVAL = 1.0
#: how long one overview computation is reused (it aggregates over a day of events), and how
#: long older figures are still shown while newer ones are computed
OVERVIEW_TTL = 5.0
OVERVIEW_STALE = 60.0
#: a live stream ends after this long and the browser reconnects (EventSource does so by
#: itself): a server shutting down never waits long for an open page
STREAM_SECONDS = 120.0


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Console:
    """Everything the pages need; built once by :func:`create_console`."""

    services: Services
    config: Config
    settings: ConsoleSettings
    auth: ConsoleAuth
    pauses: ProviderPauses
    log: MessageLog
    worker: Worker | None = None
    limiter: RateLimiter | None = None
    pause_view: PauseView | None = None
    verify: Verify | None = None
    env: jinja2.Environment = field(init=False)
    _overview: tuple[float, Any] | None = None
    _refresh: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("smsgate.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["ago"] = lambda t: _ago(t, self.clock.time())
        self.env.filters["pretty"] = _pretty
        self.env.filters["errsummary"] = _error_summary
        # the Verifications page is in the nav only where [verify] is configured
        self.env.globals["verify_on"] = self.verify is not None

    @property
    def clock(self) -> Clock:
        return self.services.clock

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        html = self.env.get_template(template).render(
            request=request,
            session=session,
            base=request.scope.get("root_path", ""),
            nav=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)

    def cookie_secure(self, request: Request) -> bool:
        if self.settings.secure_cookie is not None:
            return self.settings.secure_cookie
        public = self.services.settings.public_url or ""
        return request.url.scheme == "https" or public.startswith("https://")


_SECURITY_HEADERS = {
    # only our own files: no inline script, no third-party anything
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_console(
    services: Services,
    config: Config,
    *,
    worker: Worker | None = None,
    settings: ConsoleSettings | None = None,
    verify: Verify | None = None,
) -> Starlette:
    chosen = settings or ConsoleSettings.from_mapping(config.console)
    store = services.outbox.store
    limiter = worker.limiter if worker is not None else None
    if limiter is None and any(p.limit is not None for p in config.providers.values()):
        limiter = config.rate_limiter(clock=services.clock)
    console = Console(
        services=services,
        config=config,
        settings=chosen,
        auth=ConsoleAuth(store, chosen, clock=services.clock),
        pauses=ProviderPauses.of(store),
        log=MessageLog.of(store),
        worker=worker,
        limiter=limiter,
        pause_view=None if worker is None else worker.router.pauses,
        verify=verify,
    )
    routes = [
        Route("/", _page(console, overview_page)),
        Route("/login", _public(console, login_page), methods=["GET", "POST"]),
        Route("/logout", _action(console, logout, admin=False), methods=["POST"]),
        Route("/live", _page(console, overview_stream)),
        Route("/messages", _page(console, messages_page)),
        Route("/messages/{id}", _page(console, message_page)),
        Route("/messages/{id}/live", _page(console, message_stream)),
        Route("/messages/{id}/cancel", _action(console, cancel), methods=["POST"]),
        Route("/messages/{id}/resend", _action(console, resend), methods=["POST"]),
        Route("/deliveries/{id}/redeliver", _action(console, redeliver), methods=["POST"]),
        Route("/compose", _page(console, compose_page)),
        Route("/compose", _action(console, compose), methods=["POST"]),
        Route("/inbound", _page(console, inbound_page)),
        Route("/suppressions", _page(console, suppressions_page)),
        Route("/suppressions", _action(console, add_suppression), methods=["POST"]),
        Route("/suppressions/remove", _action(console, remove_suppression), methods=["POST"]),
        Route("/keys", _page(console, keys_page)),
        Route("/keys", _action(console, create_api_key), methods=["POST"]),
        Route("/keys/{id}/revoke", _action(console, revoke_key), methods=["POST"]),
        Route("/webhooks", _page(console, webhooks_page)),
        Route("/providers", _page(console, providers_page)),
        Route("/providers/{name}/pause", _action(console, pause), methods=["POST"]),
        Route("/providers/{name}/resume", _action(console, resume), methods=["POST"]),
        Route("/verifications", _page(console, verifications_page)),
        Route("/verifications/unblock", _action(console, unblock_prefix), methods=["POST"]),
        Route("/static/{name}", static),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    return app


# -- plumbing ---------------------------------------------------------------------------------

Handler = Callable[[Console, Request], Awaitable[Response]]


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


async def _session(console: Console, request: Request) -> Session | None:
    token = _token(request)
    if not token:
        return None
    return await anyio.to_thread.run_sync(console.auth.session, token)


def _to_login(request: Request) -> RedirectResponse:
    base = request.scope.get("root_path", "")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{base}/login?{urlencode({'next': target})}", status_code=303)


def _page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        session = await _session(console, request)
        if session is None:
            return _to_login(request)
        request.state.session = session
        try:
            response = await handler(console, request)
        except Denied as exc:
            response = console.render(request, "error.html", exc.status, message=exc.message)
        # the time this page took (session, query and template), for the browser's
        # network panel and bench/console.py
        elapsed = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={elapsed:.2f}"
        return response

    return endpoint


def _public(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(console, request)

    return endpoint


async def read_form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Denied(413, "the form is over 64 KiB")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise Denied(415, "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise Denied(400, "the form could not be read") from None
    return dict(pairs)


def _action(
    console: Console,
    handler: Callable[[Console, Request, dict[str, str]], Awaitable[Response]],
    *,
    admin: bool = True,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = await _session(console, request)
        if session is None:
            return _to_login(request)
        request.state.session = session
        try:
            form = await read_form(request)
            if not csrf_ok(session.csrf_token, form.get("csrf")):
                raise Denied(
                    403,
                    "the form's security token is missing or out of date; reload the page and "
                    "submit it again",
                )
            if admin and not session.is_admin:
                raise Denied(
                    403,
                    f"{session.who} has the read-only role; ask an admin for the admin role "
                    "(smsgate users create NAME --role admin)",
                )
            return await handler(console, request, form)
        except Denied as exc:
            return console.render(request, "error.html", exc.status, message=exc.message)

    return endpoint


def _back(request: Request, path: str, **params: str) -> RedirectResponse:
    base = request.scope.get("root_path", "")
    query = f"?{urlencode(params)}" if params else ""
    return RedirectResponse(f"{base}{path}{query}", status_code=303)


def _run(func: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    return anyio.to_thread.run_sync(func, *args)


def _when(value: float | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = value.timestamp()
    moment = datetime.fromtimestamp(value, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def _ago(value: float | None, now: float) -> str:
    if value is None:
        return "—"
    seconds = max(0.0, now - value)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _error_summary(value: str | dict[str, Any] | None) -> str:
    """``invalid_recipient 21211: the message`` from a stored error."""
    if not value:
        return ""
    try:
        error = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)[:120]
    if not isinstance(error, dict):
        return str(error)[:120]
    head = " ".join(str(error[k]) for k in ("error", "code") if error.get(k))
    text = str(error.get("message") or "")
    return f"{head}: {text}"[:160] if text else head


def _moment(text: str, name: str) -> float | None:
    """A form's date-time (``2026-12-05T14:00``, UTC) as epoch seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{name} {text!r} is not a date and time; write e.g. 2026-12-05T14:00", field=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    kinds = {"console.css": "text/css", "console.js": "text/javascript"}
    if name not in kinds:
        return Response("not found", status_code=404, media_type="text/plain")
    body = resources.files("smsgate.console").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=kinds[name],
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# -- sign-in ----------------------------------------------------------------------------------


def _next(target: str | None, base: str) -> str:
    """Where to go after sign-in: only a path of this console (never another site)."""
    if target and target.startswith(base + "/") and not target.startswith("//"):
        return target
    return base + "/"


async def login_page(console: Console, request: Request) -> Response:
    base = request.scope.get("root_path", "")
    form: dict[str, str] = {}
    error = None
    status = 200
    login_csrf = request.cookies.get(LOGIN_COOKIE) or ""
    if request.method == "POST":
        try:
            form = await read_form(request)
        except Denied as exc:
            return console.render(request, "error.html", exc.status, message=exc.message)
        if not login_csrf or not csrf_ok(login_csrf, form.get("csrf")):
            error = "The sign-in form was out of date. It has been reloaded: sign in again."
            status = 403
        else:
            result = await _run(
                console.auth.sign_in, form.get("name", ""), form.get("password", "")
            )
            if result.token is not None:
                response = RedirectResponse(_next(form.get("next"), base), status_code=303)
                response.set_cookie(
                    COOKIE,
                    result.token,
                    max_age=int(console.settings.session_ttl),
                    httponly=True,
                    secure=console.cookie_secure(request),
                    samesite="strict",
                    path=base or "/",
                )
                response.delete_cookie(LOGIN_COOKIE, path=base or "/")
                return response
            status = 429 if result.error == "locked" else 401
            if result.error == "locked":
                minutes = max(1, math.ceil(result.locked_for / 60))
                error = (
                    "Too many failed sign-ins: this name is locked for "
                    f"{minutes} more minute{'s' if minutes != 1 else ''}."
                )
            elif result.error == "no_scope":
                error = (
                    "That API key has no console access. An admin can grant it on the Keys page."
                )
                status = 403
            else:
                error = "The name and password (or the API key) are not right."
    fresh = login_csrf or secrets.token_urlsafe(24)
    page = console.render(
        request,
        "login.html",
        status,
        error=error,
        name=form.get("name", ""),
        next=form.get("next") or request.query_params.get("next", ""),
        csrf=fresh,
    )
    page.set_cookie(
        LOGIN_COOKIE,
        fresh,
        max_age=3600,
        httponly=True,
        secure=console.cookie_secure(request),
        samesite="strict",
        path=base or "/",
    )
    return page


async def logout(console: Console, request: Request, form: dict[str, str]) -> Response:
    token = _token(request)
    if token:
        await _run(console.auth.sign_out, token)
    response = _back(request, "/login")
    response.delete_cookie(COOKIE, path=request.scope.get("root_path", "") or "/")
    return response


# -- overview ---------------------------------------------------------------------------------


async def _overview_data(console: Console) -> dict[str, Any]:
    """The overview's figures: fresh for OVERVIEW_TTL; then, for up to OVERVIEW_STALE, the last
    ones at once while one refresh runs in the background (a day of events takes a second or
    two to aggregate on a busy SQLite host), which live pages receive when it is done."""
    cached = console._overview
    if cached is not None:
        age = console.clock.monotonic() - cached[0]
        if age < OVERVIEW_TTL:
            return dict(cached[1])
        if age < OVERVIEW_STALE:
            if console._refresh is None or console._refresh.done():
                console._refresh = asyncio.create_task(_refresh_overview(console))
            return dict(cached[1])
    return await _compute_overview(console)


async def _refresh_overview(console: Console) -> None:
    try:
        await _compute_overview(console)
    except Exception:  # the next request tries again; the page keeps the last figures
        logger.exception("console: the overview could not be computed")


async def _compute_overview(console: Console) -> dict[str, Any]:
    now = console.clock.time()
    figures = await _run(console.log.overview, now)
    starts = [b.start for b in figures.buckets]
    rate_chart = charts.line_chart(
        "Delivery rate per hour",
        starts,
        [charts.Series("delivered share", [b.delivery_rate for b in figures.buckets], "s1")],
        fmt=charts.percent,
        ceiling=1.0,
    )
    latency_chart = charts.line_chart(
        "Submit to delivered, per hour",
        starts,
        [
            charts.Series("p50", [b.percentile(0.5) for b in figures.buckets], "s1"),
            charts.Series("p95", [b.percentile(0.95) for b in figures.buckets], "s2"),
        ],
        fmt=charts.seconds,
    )
    data = {
        "now": now,
        "depth": figures.depth,
        "per_provider": figures.per_provider,
        "rate_chart": rate_chart,
        "latency_chart": latency_chart,
        "latency_sample": figures.latency_sample,
        "providers": await _provider_rows(console),
    }
    console._overview = (console.clock.monotonic(), data)
    return data


async def _provider_rows(console: Console) -> list[dict[str, Any]]:
    paused = await _run(console.pauses.list)
    breakers = console.worker.router.breakers if console.worker is not None else None
    rows = []
    now = console.clock.time()
    for name, provider in sorted(console.services.providers.items()):
        circuit = "not in this process"
        failures = None
        if breakers is not None:
            breaker = breakers[name]
            circuit = breaker.state.value
            failures = breaker.consecutive_failures
        use = None
        limit_text = None
        if console.limiter is not None:
            specs = console.limiter.buckets_for(name)
            if specs:
                spec = specs[0]
                state = await _run(console.services.outbox.store.bucket_state, spec.key)
                tokens = refill(state, spec, now).tokens
                use = max(0.0, min(1.0, 1 - tokens / spec.burst))
                cfg = console.config.providers.get(name)
                limit_text = None if cfg is None or cfg.limit is None else str(cfg.limit)
        rows.append(
            {
                "name": name,
                "kind": provider.display_name,
                "circuit": circuit,
                "failures": failures,
                "paused": paused.get(name),
                "rate_use": use,
                "limit": limit_text,
            }
        )
    return rows


_DEPTH_STATES = ("scheduled", "queued", "retrying", "reconciling", "sending", "unknown")


async def overview_page(console: Console, request: Request) -> Response:
    data = await _overview_data(console)
    return console.render(request, "overview.html", depth_states=_DEPTH_STATES, **data)


async def overview_stream(console: Console, request: Request) -> Response:
    """Server-sent events: the overview's figures, each time they change."""

    async def events() -> AsyncIterator[bytes]:
        last = None
        yield b"retry: 1000\n\n"
        ends = console.clock.monotonic() + STREAM_SECONDS
        while not await request.is_disconnected() and console.clock.monotonic() < ends:
            data = await _overview_data(console)
            html = console.env.get_template("_overview_live.html").render(
                depth_states=_DEPTH_STATES, base=request.scope.get("root_path", ""), **data
            )
            if html != last:
                last = html
                yield _sse("overview", html)
            else:
                yield b": idle\n\n"
            await asyncio.sleep(LIVE_INTERVAL)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


_SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _sse(event: str, html: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


# -- messages ---------------------------------------------------------------------------------


def _log_filter(params: Mapping[str, str], now: float) -> tuple[LogFilter, dict[str, str]]:
    values = {k: params.get(k, "").strip()[:100] for k in _FILTER_KEYS}
    window = values["window"]
    since = _moment(values["since"], "since")
    if since is None and window in _WINDOWS:
        since = now - _WINDOWS[window]
    state_text = values["state"]
    states: tuple[State, ...] = ()
    if state_text:
        if state_text not in STATES:
            raise ConfigError(
                f"state {state_text!r} is not one of {', '.join(STATES)}", field="state"
            )
        states = (STATES[state_text],)
    recipient = values["recipient"]
    if recipient:
        recipient = _number(recipient, "recipient")
    purpose = values["purpose"]
    if purpose and purpose not in {p.value for p in Purpose}:
        raise ConfigError(
            f"purpose {purpose!r} is not one of {', '.join(p.value for p in Purpose)}",
            field="purpose",
        )
    f = LogFilter(
        since=since,
        until=_moment(values["until"], "until"),
        states=states,
        provider=values["provider"],
        route=values["route"],
        purpose=purpose,
        country=values["country"],
        recipient=recipient,
        error=values["error"],
        search=values["q"],
        before=values["before"],
    )
    f.country_prefix()
    return f, values


_FILTER_KEYS = (
    "window",
    "since",
    "until",
    "state",
    "provider",
    "route",
    "purpose",
    "country",
    "recipient",
    "error",
    "q",
    "before",
)
_WINDOWS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}


def _number(text: str, name: str) -> str:
    try:
        return normalize(text, strict=False)
    except SmsgateError as exc:
        raise ConfigError(f"{name}: {exc.message}", field=name) from None


async def messages_page(console: Console, request: Request) -> Response:
    now = console.clock.time()
    error = None
    try:
        f, values = _log_filter(request.query_params, now)
        page = await _run(console.log.page, f, console.settings.page_size)
    except ConfigError as exc:
        error = exc
        values = {k: request.query_params.get(k, "")[:100] for k in _FILTER_KEYS}
        page = None
    next_query = None
    if page is not None and page.next_before:
        kept = {k: v for k, v in values.items() if v and k != "before"}
        next_query = urlencode({**kept, "before": page.next_before})
    return console.render(
        request,
        "messages.html",
        400 if error else 200,
        rows=[] if page is None else page.rows,
        values=values,
        error=error,
        next_query=next_query,
        first_query=urlencode({k: v for k, v in values.items() if v and k != "before"}),
        states=list(STATES),
        providers=sorted(console.services.providers),
        routes=[r.name for r in console.config.routes],
        purposes=[p.value for p in Purpose],
        windows=list(_WINDOWS),
    )


async def _message_context(console: Console, message_id: str) -> dict[str, Any] | None:
    record = await _run(console.services.outbox.get, message_id)
    if record is None:
        return None
    events = await _run(console.services.outbox.store.events, message_id)
    event_ids = [f"evt_msg_{e.id}" for e in events]
    deliveries = await _run(console.services.store.deliveries_of_events, event_ids)
    subs = {s.id: s for s in await _run(console.services.store.list_subscriptions)}
    return {
        "m": record,
        "events": events,
        "deliveries": deliveries,
        "subscriptions": subs,
        "cancelable": State(record.state) in CANCELABLE,
        "resendable": State(record.state) in RESENDABLE and REDACTED_BODY not in record.metadata,
    }


async def message_page(console: Console, request: Request) -> Response:
    context = await _message_context(console, request.path_params["id"])
    if context is None:
        raise Denied(404, f"no message with id {request.path_params['id']!r}")
    return console.render(
        request, "message.html", notice=request.query_params.get("notice"), **context
    )


async def message_stream(console: Console, request: Request) -> Response:
    """Server-sent events: the message's timeline, each time it grows."""
    message_id = request.path_params["id"]
    base = request.scope.get("root_path", "")
    session = request.state.session

    async def events() -> AsyncIterator[bytes]:
        last = None
        yield b"retry: 1000\n\n"
        ends = console.clock.monotonic() + STREAM_SECONDS
        while not await request.is_disconnected() and console.clock.monotonic() < ends:
            context = await _message_context(console, message_id)
            if context is None:
                return
            html = console.env.get_template("_timeline.html").render(
                base=base, session=session, **context
            )
            if html != last:
                last = html
                yield _sse("timeline", html)
            else:
                yield b": idle\n\n"
            await asyncio.sleep(LIVE_INTERVAL)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def cancel(console: Console, request: Request, form: dict[str, str]) -> Response:
    message_id = request.path_params["id"]
    who = request.state.session.who
    before = await _run(console.services.outbox.get, message_id)
    if before is None:
        raise Denied(404, f"no message with id {message_id!r}")
    if before.state == State.CANCELED.value:
        return _back(request, f"/messages/{message_id}", notice="It was canceled already.")
    try:
        await _run(
            lambda: console.services.outbox.cancel(
                message_id, reason=f"canceled in the console by {who}"
            )
        )
    except MessageNotFound:
        raise Denied(404, f"no message with id {message_id!r}") from None
    except NotCancelable as exc:
        raise Denied(409, f"not canceled: {exc.message}") from None
    return _back(request, f"/messages/{message_id}", notice="Canceled.")


async def resend(console: Console, request: Request, form: dict[str, str]) -> Response:
    message_id = request.path_params["id"]
    record = await _run(console.services.outbox.get, message_id)
    if record is None:
        raise Denied(404, f"no message with id {message_id!r}")
    if State(record.state) not in RESENDABLE:
        raise Denied(
            409,
            f"{message_id} is {record.status.value}: only a message that ended without being "
            "delivered can be sent again",
        )
    if REDACTED_BODY in record.metadata:
        # its stored body is not readable here (a verification code): sending the masked text
        # would be useless, and the code is for its verification alone
        raise Denied(
            409,
            f"{message_id} carried a verification code: start a new verification instead",
        )
    metadata = {**record.metadata, "resent_from": record.id, "resent_by": request.state.session.who}
    try:
        message = Message(
            to=record.to,
            body=record.body,
            sender=record.sender,
            media=record.media,
            purpose=Purpose(record.purpose),
            metadata=metadata,
        )
        new = await _run(console.services.outbox.submit, message)
    except SmsgateError as exc:
        raise Denied(422, f"not sent again: {exc.message}") from None
    return _back(
        request, f"/messages/{new}", notice=f"Sent again as a new message (was {message_id})."
    )


async def redeliver(console: Console, request: Request, form: dict[str, str]) -> Response:
    delivery_id = request.path_params["id"]
    now = console.clock.time()
    delivery = await _run(console.services.store.get_delivery, delivery_id)
    if delivery is None:
        raise Denied(404, f"no webhook delivery with id {delivery_id!r}")
    if delivery.state == "dead":
        await _run(console.services.store.redeliver, delivery_id, now)
    else:
        # a delivered one is queued again as it is: same event id, so the subscriber dedupes
        await _run(console.services.store.requeue_delivery, delivery_id, now)
    console.services.dispatcher.wake()
    back = form.get("back", "")
    if back.startswith("/messages/") or back == "/webhooks":
        return _back(request, back, notice="Queued for delivery again.")
    return _back(request, "/webhooks", notice="Queued for delivery again.")


async def compose_page(console: Console, request: Request) -> Response:
    return console.render(
        request,
        "compose.html",
        form={"to": "", "body": "", "sender": "", "purpose": "transactional", "send_at": ""},
        error=None,
        purposes=[p.value for p in Purpose],
    )


async def compose(console: Console, request: Request, form: dict[str, str]) -> Response:
    try:
        send_at = _moment(form.get("send_at", ""), "send_at")
        message = Message(
            to=form.get("to", ""),
            body=form.get("body", ""),
            sender=form.get("sender") or None,
            purpose=Purpose(form.get("purpose") or "transactional"),
            send_at=None if send_at is None else datetime.fromtimestamp(send_at, UTC),
            metadata={"composed_by": request.state.session.who},
        )
        new = await _run(console.services.outbox.submit, message)
    except (SmsgateError, ValueError) as exc:
        text = exc.message if isinstance(exc, SmsgateError) else str(exc)
        return console.render(
            request,
            "compose.html",
            422,
            form=form,
            error=text,
            purposes=[p.value for p in Purpose],
        )
    return _back(request, f"/messages/{new}", notice="Queued.")


# -- operations -------------------------------------------------------------------------------


async def inbound_page(console: Console, request: Request) -> Response:
    before = request.query_params.get("before") or None
    rows = await _run(
        lambda: console.services.store.list_inbound(
            before_id=before, limit=console.settings.page_size + 1
        )
    )
    more = len(rows) > console.settings.page_size
    rows = rows[: console.settings.page_size]
    return console.render(
        request, "inbound.html", rows=rows, next_before=rows[-1].id if more and rows else None
    )


async def suppressions_page(console: Console, request: Request) -> Response:
    query = request.query_params.get("recipient", "").strip()
    error = None
    rows: list[Suppression] = []
    try:
        number = _number(query, "recipient") if query else None
        rows = await _run(lambda: console.services.store.list_suppressions(number, None, 200))
    except ConfigError as exc:
        error = exc.message
    return console.render(
        request,
        "suppressions.html",
        400 if error else 200,
        rows=rows,
        query=query,
        error=error,
        notice=request.query_params.get("notice"),
        all_numbers=ALL_NUMBERS,
    )


async def add_suppression(console: Console, request: Request, form: dict[str, str]) -> Response:
    who = request.state.session.who
    reason = form.get("reason", "").strip()[:300]
    try:
        recipient = _number(form.get("recipient", ""), "recipient")
        ours = form.get("our_number", "").strip()
        our_number = _number(ours, "our_number") if ours and ours != ALL_NUMBERS else ALL_NUMBERS
    except ConfigError as exc:
        raise Denied(422, exc.message) from None
    if not reason:
        raise Denied(
            422, "reason: say why this recipient is suppressed (it is kept with the entry)"
        )
    item = Suppression(
        recipient=recipient,
        our_number=our_number,
        source=f"console:{who}"[:100],
        keyword=None,
        reason=reason,
        created_at=console.clock.time(),
    )
    created = await _run(
        lambda: console.services.store.add_suppression(item, [suppression_event(item)])
    )
    console.services.dispatcher.wake()
    note = "Suppressed." if created else "Already suppressed; the first entry is kept."
    return _back(request, "/suppressions", recipient=recipient, notice=note)


async def remove_suppression(console: Console, request: Request, form: dict[str, str]) -> Response:
    who = request.state.session.who
    try:
        recipient = _number(form.get("recipient", ""), "recipient")
    except ConfigError as exc:
        raise Denied(422, exc.message) from None
    ours = form.get("our_number", "").strip()
    numbers = [ours] if ours else None
    now = console.clock.time()
    event = make_event(
        "suppression.removed",
        {
            "recipient": recipient,
            "our_numbers": numbers,
            "source": f"console:{who}",
            "keyword": None,
        },
        now,
    )
    removed = await _run(
        lambda: console.services.store.remove_suppressions(recipient, numbers, [event], now)
    )
    if removed:
        logger.info("console: %s lifted %d suppression(s) of a recipient", who, removed)
    console.services.dispatcher.wake()
    note = (
        f"Removed {removed} entr{'y' if removed == 1 else 'ies'}." if removed else "Not suppressed."
    )
    return _back(request, "/suppressions", notice=note)


async def keys_page(console: Console, request: Request, created: Any = None) -> Response:
    keys = await _run(console.services.store.list_keys)
    roles = await _run(console.auth.key_roles)
    return console.render(
        request,
        "keys.html",
        keys=keys,
        roles=roles,
        created=created,
        notice=request.query_params.get("notice"),
        purposes=[p.value for p in Purpose],
    )


async def create_api_key(console: Console, request: Request, form: dict[str, str]) -> Response:
    access = form.get("console", "")
    try:
        role = parse_role(access) if access else None
        purposes = [form["purpose"]] if form.get("purpose") else []
        made = await _run(
            lambda: create_key(
                console.services.store,
                form.get("name", ""),
                purposes=purposes,
                rate=form.get("rate") or None,
                clock=console.clock,
            )
        )
        if role is not None:
            await _run(console.auth.grant_key, made.record.id, role)  # made live just now
    except ConfigError as exc:
        raise Denied(422, exc.message) from None
    logger.info("console: %s created API key %s", request.state.session.who, made.record.id)
    # shown once, on this response only (no redirect: the secret never goes into a URL)
    return await keys_page(console, request, created=made)


async def revoke_key(console: Console, request: Request, form: dict[str, str]) -> Response:
    key_id = request.path_params["id"]
    done = await _run(console.services.store.revoke_key, key_id, console.clock.time())
    if not done:
        raise Denied(404, f"no live API key with id {key_id!r}")
    console.services.authenticator.forget(key_id)
    await _run(console.auth.end_key_sessions, key_id)
    logger.info("console: %s revoked API key %s", request.state.session.who, key_id)
    return _back(request, "/keys", notice=f"Key {key_id} revoked.")


async def webhooks_page(console: Console, request: Request) -> Response:
    subs = await _run(console.services.store.list_subscriptions)
    dead = await _run(lambda: console.services.store.list_deliveries(state="dead", limit=100))
    return console.render(
        request,
        "webhooks.html",
        subscriptions=subs,
        dead=dead,
        notice=request.query_params.get("notice"),
    )


async def providers_page(console: Console, request: Request) -> Response:
    rows = await _provider_rows(console)
    return console.render(
        request, "providers.html", rows=rows, notice=request.query_params.get("notice")
    )


def _provider_name(console: Console, request: Request) -> str:
    name = request.path_params["name"]
    if name not in console.services.providers and name not in console.config.providers:
        raise Denied(404, f"no provider named {name!r} is configured")
    return str(name)


async def pause(console: Console, request: Request, form: dict[str, str]) -> Response:
    name = _provider_name(console, request)
    who = request.state.session.who
    reason = form.get("reason", "").strip()[:300] or None
    done = await _run(console.pauses.pause, name, who, reason, console.clock.time())
    if console.pause_view is not None:
        console.pause_view.refresh()
    console._overview = None
    logger.info("console: %s paused provider %s", who, name)
    note = f"{name} paused: the router skips it." if done else f"{name} was already paused."
    return _back(request, "/providers", notice=note)


async def resume(console: Console, request: Request, form: dict[str, str]) -> Response:
    name = _provider_name(console, request)
    done = await _run(console.pauses.resume, name)
    if console.pause_view is not None:
        console.pause_view.refresh()
    console._overview = None
    logger.info("console: %s resumed provider %s", request.state.session.who, name)
    return _back(
        request, "/providers", notice=f"{name} resumed." if done else f"{name} was not paused."
    )


# -- verify -----------------------------------------------------------------------------------

_VERIFY_WINDOWS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}


def _verify(console: Console) -> Verify:
    if console.verify is None:
        raise Denied(
            404, "verify is not configured: add a [verify] table to the config (docs/verify.md)"
        )
    return console.verify


def _rates(rows: list[tuple[str | None, int, int]]) -> list[dict[str, Any]]:
    return [
        {
            "key": key or "unknown",
            "started": started,
            "approved": approved,
            "rate": f"{100 * approved / started:.1f} %" if started else "—",
        }
        for key, started, approved in rows
    ]


async def verifications_page(console: Console, request: Request) -> Response:
    verify = _verify(console)
    window = request.query_params.get("window", "24h")
    if window not in _VERIFY_WINDOWS:
        raise Denied(400, f"window {window!r} is not one of {', '.join(_VERIFY_WINDOWS)}")
    since = console.clock.time() - _VERIFY_WINDOWS[window]
    by_country = await _run(lambda: verify.conversion("country", since))
    by_prefix = await _run(lambda: verify.conversion("prefix", since))
    recent = await _run(lambda: verify.recent(limit=50))
    blocks = await _run(verify.blocks)
    return console.render(
        request,
        "verifications.html",
        window=window,
        windows=list(_VERIFY_WINDOWS),
        by_country=_rates(by_country),
        by_prefix=_rates(by_prefix),
        recent=recent,
        blocks=blocks,
        notice=request.query_params.get("notice"),
    )


async def unblock_prefix(console: Console, request: Request, form: dict[str, str]) -> Response:
    verify = _verify(console)
    who = request.state.session.who
    prefix = form.get("prefix", "").strip()
    try:
        lifted = await _run(lambda: verify.unblock(prefix, by=f"console:{who}"))
    except SmsgateError as exc:
        raise Denied(422, exc.message) from None
    if lifted:
        logger.info("console: %s lifted the block of prefix %s", who, prefix)
    note = f"{prefix} unblocked." if lifted else f"{prefix} was not blocked."
    return _back(request, "/verifications", notice=note)
