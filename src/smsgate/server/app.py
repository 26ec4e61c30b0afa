"""The application factory: ``create_app(config)`` returns the ASGI app ``smsgate serve`` runs.

It opens the outbox (refusing a store on an old schema, with the command to run, and refusing
opted-out recipients at submit as ``[otp] honor_opt_outs`` says), builds one provider per
``[providers.NAME]`` with its status-callback URL under ``public_url``, and on start
runs, next to the API: the submit and receipt groupers, the in-process worker (unless disabled),
the relay of message events to user webhooks, the webhook dispatcher and the metrics follower.
On shutdown it stops them in that order's reverse, letting the worker finish or release what it
holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from smsgate import __version__
from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.config import Config
from smsgate.console.settings import ConsoleSettings
from smsgate.errors import ConfigError
from smsgate.outbox import Outbox
from smsgate.outbox.cli_support import build_providers, build_worker, open_outbox
from smsgate.outbox.tables.server import ServerStore
from smsgate.outbox.worker import Worker
from smsgate.providers.base import Provider
from smsgate.server import errors
from smsgate.server.auth import ApiKeyMiddleware, Authenticator
from smsgate.server.fastpath import FastReceipts, FastSubmit
from smsgate.server.inbound import InboundHandler
from smsgate.server.metrics import EventFollower, Metrics, StoreCollector
from smsgate.server.pushed import PushedEvents
from smsgate.server.receipts import ReceiptRecorder
from smsgate.server.relay import EventRelay
from smsgate.server.routes import docs, health, messages, optouts, providers, tools, webhooks
from smsgate.server.services import Services
from smsgate.server.settings import ServerSettings
from smsgate.server.submit import Submitter
from smsgate.server.webhooks_out import RetrySchedule, WebhookDispatcher
from smsgate.verify import api as verify_api

logger = logging.getLogger("smsgate.server")


def create_app(
    config: Config,
    *,
    settings: ServerSettings | None = None,
    outbox: Outbox | None = None,
    clock: Clock = SYSTEM_CLOCK,
    worker: bool | None = None,
    background: bool = True,
) -> FastAPI:
    """The API for ``config``. ``worker`` (default: ``[server] worker``) runs the outbox worker in
    the server process when providers are configured. ``background`` False leaves the relay, the
    webhook dispatcher and the metrics follower to the caller (tests drive them).

    ``outbox`` is used instead of opening the config's store (the caller then closes it). It must
    refuse opted-out otp recipients as the config says: :func:`open_outbox` opens one that does.
    One that disagrees raises :class:`~smsgate.errors.ConfigError`: changing it would also change
    the caller's own submits through it, and using it as it is would silently ignore the config."""
    settings = settings or ServerSettings.from_config(config)
    console_settings = ConsoleSettings.from_mapping(config.console)
    run_worker = settings.worker if worker is None else worker
    owned = outbox is None
    if outbox is None:
        box = open_outbox(config, clock=clock)
    else:
        _check_opt_out_policy(outbox, config)
        box = outbox
    try:
        store = ServerStore.of(box.store)
        sender: Worker | None = None
        receipts, public_url = settings.request_receipts, settings.public_url
        if run_worker and config.providers:
            sender = build_worker(
                box, config, clock=clock, receipts=receipts, public_url=public_url
            )
            chosen: Mapping[str, Provider] = sender.providers
        else:
            chosen = build_providers(config, clock=clock, receipts=receipts, public_url=public_url)
    except BaseException:
        if owned:
            box.close()
        raise
    metrics = Metrics()
    dispatcher = WebhookDispatcher(
        store,
        clock=clock,
        schedule=RetrySchedule(horizon=settings.webhook_retry_horizon),
        timeout=settings.webhook_timeout,
    )
    svc = Services(
        settings=settings,
        outbox=box,
        store=store,
        providers=chosen,
        clock=clock,
        metrics=metrics,
        authenticator=Authenticator(store, clock=clock),
        submitter=Submitter(box, store, settings, clock=clock),
        receipts=ReceiptRecorder(box),
        inbound=InboundHandler(box, store, settings, clock=clock),
        dispatcher=dispatcher,
        worker_state="starting" if sender is not None else "disabled",
    )
    metrics.registry.register(
        StoreCollector(box.counts, None if sender is None else sender.circuits)
    )
    relay = EventRelay(store, clock=clock, on_queued=dispatcher.wake)
    follower = EventFollower(store, metrics, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        svc.submitter.start()
        svc.receipts.start()
        # Providers with their own connection (SMPP) push receipts and inbound through here.
        events = PushedEvents(svc)
        for provider in chosen.values():
            await provider.alisten(events)
        worker_task = None
        if sender is not None:
            worker_task = asyncio.create_task(_supervise(svc, sender, stop), name="smsgate-worker")
        if background:
            tasks += [
                asyncio.create_task(relay.run(stop), name="smsgate-relay"),
                asyncio.create_task(dispatcher.run(stop), name="smsgate-webhooks"),
                asyncio.create_task(follower.run(stop), name="smsgate-metrics"),
            ]
        try:
            yield
        finally:
            stop.set()
            await svc.submitter.stop()
            await svc.receipts.stop()
            if worker_task is not None:
                await worker_task
            await asyncio.gather(*tasks, return_exceptions=True)
            await dispatcher.aclose()
            if sender is None:  # the worker closes the providers it sent with
                for provider in chosen.values():
                    with contextlib.suppress(Exception):
                        await provider.aclose()
            if owned:
                box.close()

    app = FastAPI(
        title="smsgate",
        version=__version__,
        description="Send SMS through many providers with a durable queue, delivery receipts, "
        "opt-outs and signed webhooks. Authenticate /v1 with `Authorization: Bearer sgk_...`.",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks cost a tracer lookup per request; smsgate
        # reports through /metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Swagger UI and ReDoc load their scripts from a CDN: /docs is served self-contained
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.relay = relay
    app.state.follower = follower
    errors.install(app)
    for module in (messages, tools, optouts, webhooks, providers, health, docs):
        app.include_router(module.router)
    try:
        verifier = verify_api.mount(app, config, box, store, metrics, clock)
    except BaseException:
        if owned:
            box.close()
        raise
    if settings.fast_submit:
        app.add_middleware(FastSubmit, submitter=svc.submitter)
    app.add_middleware(ApiKeyMiddleware, authenticator=svc.authenticator)
    if settings.fast_submit:  # outermost: provider webhooks need no API key
        app.add_middleware(FastReceipts, services=svc)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if console_settings.enabled:
        from smsgate.console import console_app

        try:
            console = console_app(
                svc, config, worker=sender, settings=console_settings, verify=verifier
            )
        except BaseException:
            if owned:
                box.close()
            raise
        app.mount("/console", console, name="console")
    return app


def _check_opt_out_policy(outbox: Outbox, config: Config) -> None:
    """Refuse an injected outbox whose otp opt-out policy is not the config's."""
    wanted = config.otp.honor_opt_outs
    if outbox.otp_honors_opt_outs != wanted:
        raise ConfigError(
            f"otp.honor_opt_outs: the config says {str(wanted).lower()} but the Outbox given to "
            f"create_app was opened with otp_honors_opt_outs={outbox.otp_honors_opt_outs}; open "
            "it with smsgate.outbox.cli_support.open_outbox(config), or "
            f"Outbox(url, otp_honors_opt_outs={wanted})",
            field="otp.honor_opt_outs",
        )


async def _supervise(svc: Services, worker: Worker, stop: asyncio.Event) -> None:
    """Run the worker until ``stop``; it then finishes or gives back what it holds."""
    svc.worker_state = "running"
    try:
        await worker.run(stop=stop)
        svc.worker_state = "stopped"
    except Exception:
        svc.worker_state = "failed"
        logger.exception("the in-process worker failed; the API keeps running")


_ERROR_REF = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
}
_COMMON: dict[str, str] = {"503": "a dependency (the store) is not available"}
_AUTHED: dict[str, str] = {
    "401": "no valid API key",
    "429": "over the key's rate or quota (see Retry-After)",
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with the error answers every endpoint can give, and Bearer auth on /v1."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "sgk_... from smsgate keys create",
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            extra = dict(_COMMON)
            if path.startswith("/v1"):
                operation["security"] = [{"bearer": []}]
                extra.update(_AUTHED)
            if operation.get("parameters") or operation.get("requestBody") or "422" in responses:
                extra["422"] = "the request is not valid (the answer names the field)"
            if operation.get("requestBody"):
                extra["413"] = "the body is too large"
            for code, text in extra.items():
                responses[code] = {"description": text, **_ERROR_REF}
    schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = schema
    return schema
