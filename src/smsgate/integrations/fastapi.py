"""smsgate for FastAPI: the gateway (or outbox) made in the lifespan, handed out by dependencies.

>>> sms = SMSGate({"providers": {"twilio": {"url": "twilio://SID:TOKEN@+15017122661"}}})
>>> app = FastAPI(lifespan=sms.lifespan)
>>> app.include_router(webhook_router(), prefix="/sms/webhooks")
>>>
>>> @app.post("/notify")
... async def notify(phone: str, gateway: Annotated[Gateway, Depends(get_gateway)]):
...     return {"id": (await gateway.asend(phone, "hello")).id}

:func:`get_gateway` yields the app's :class:`~smsgate.Gateway` (sends now), :func:`get_outbox`
its :class:`~smsgate.Outbox` (durable; ``backend="outbox"``, with ``smsgate worker`` or
``worker=True`` sending). In tests, replace either with ``app.dependency_overrides``::

    app.dependency_overrides[get_gateway] = lambda: Gateway.from_url(emulator.provider_url())

or keep the real one and capture what it sends with the ``sms_outbox`` pytest fixture.
Webhook events reach the callbacks registered with :meth:`SMSGate.on_status`,
:meth:`SMSGate.on_inbound` and :meth:`SMSGate.on_opt_out`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from smsgate.errors import ConfigError
from smsgate.gateway import Gateway
from smsgate.integrations import core
from smsgate.message import DeliveryEvent, InboundMessage
from smsgate.outbox import Outbox

F = TypeVar("F", bound=Callable[..., Any])


class SMSGate:
    """What the lifespan builds: providers, the gateway or outbox, the webhook handler.

    ``settings`` as :func:`~smsgate.integrations.core.load_settings` takes them (a mapping of
    ``smsgate.toml`` keys, a path, or None for ``SMSGATE_CONFIG``); ``backend`` is ``direct``
    (a Gateway) or ``outbox``; ``worker`` runs an outbox worker inside the app.
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        backend: str | None = None,
        worker: bool = False,
    ) -> None:
        self._raw = settings
        self._backend = backend
        self.worker = worker
        self.gateway: Gateway | None = None
        self.outbox: Outbox | None = None
        self.webhooks: core.WebhookHandler | None = None
        self.settings: core.IntegrationSettings | None = None
        self._status: list[Callable[[str, DeliveryEvent], Any]] = []
        self._inbound: list[Callable[[str, InboundMessage], Any]] = []
        self._opt_out: list[Callable[..., Any]] = []

    # -- callbacks (the handler calls these on a worker thread) ---------------------------------

    def on_status(self, fn: F) -> F:
        self._status.append(fn)
        return fn

    def on_inbound(self, fn: F) -> F:
        self._inbound.append(fn)
        return fn

    def on_opt_out(self, fn: F) -> F:
        self._opt_out.append(fn)
        return fn

    def status_changed(self, provider: str, event: DeliveryEvent) -> None:
        for fn in self._status:
            fn(provider, event)

    def inbound_received(self, provider: str, message: InboundMessage) -> None:
        for fn in self._inbound:
            fn(provider, message)

    def opted_out(
        self, provider: str, recipient: str, our_number: str | None, source: str, text: str | None
    ) -> None:
        for fn in self._opt_out:
            fn(provider, recipient=recipient, our_number=our_number, source=source, text=text)

    # -- the lifespan -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Build everything at start-up and close it at shutdown; ``app.state.smsgate`` is self."""
        settings = core.load_settings(
            self._raw, setting="SMSGate(settings)", default_backend=self._backend or "direct"
        )
        backend = self._backend or settings.backend
        self.settings = settings
        providers = core.build_providers(settings.config)
        worker_task: asyncio.Task[Any] | None = None
        if backend == "outbox":
            self.outbox = core.open_outbox(settings.config)
        elif backend == "direct":
            if not providers:
                raise ConfigError(
                    "SMSGate(settings) has no providers: add a providers table with a url "
                    '(e.g. {"twilio": {"url": "twilio://SID:TOKEN@+15017122661"}})',
                    field="providers",
                )
            self.gateway = Gateway(list(providers.values()))
        else:
            raise ConfigError(
                f"SMSGate backend {backend!r}: FastAPI apps use 'direct' or 'outbox'",
                field="backend",
            )
        self.webhooks = core.WebhookHandler(
            providers, outbox=self.outbox, config=settings.config, listener=self
        )
        if self.worker and self.outbox is not None:
            from smsgate.outbox.cli_support import build_worker

            worker = build_worker(self.outbox, settings.config)
            worker_task = asyncio.create_task(worker.run())
        app.state.smsgate = self
        try:
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if self.gateway is not None:
                await self.gateway.aclose()
            if self.outbox is not None:
                self.outbox.close()
            self.gateway = self.outbox = self.webhooks = None


def _smsgate(request: Request) -> SMSGate:
    found = getattr(request.app.state, "smsgate", None)
    if not isinstance(found, SMSGate):
        raise RuntimeError(
            "smsgate is not set up: create the app with FastAPI(lifespan=sms.lifespan)"
        )
    return found


async def get_gateway(request: Request) -> AsyncIterator[Gateway]:
    """The app's Gateway (a dependency; ``backend="direct"``)."""
    gateway = _smsgate(request).gateway
    if gateway is None:
        raise RuntimeError("get_gateway needs SMSGate(backend='direct'); this app uses the outbox")
    yield gateway


async def get_outbox(request: Request) -> AsyncIterator[Outbox]:
    """The app's Outbox (a dependency; ``backend="outbox"``)."""
    outbox = _smsgate(request).outbox
    if outbox is None:
        raise RuntimeError("get_outbox needs SMSGate(backend='outbox'); this app sends directly")
    yield outbox


def webhook_router() -> APIRouter:
    """``/{provider}/status`` and ``/{provider}/inbound`` for the app's providers."""
    router = APIRouter(tags=["sms webhooks"])

    async def answer(provider: str, kind: str, request: Request) -> JSONResponse:
        sms = _smsgate(request)
        assert sms.webhooks is not None and sms.settings is not None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > core.MAX_WEBHOOK_BODY:
                return JSONResponse(
                    {"error": "too_large", "message": "the webhook body is over 1 MiB"}, 413
                )
        webhook = core.webhook_request(
            core.public_url_of(str(request.url), sms.settings.config.public_url),
            request.method,
            request.headers.items(),
            body,
        )
        # verify, parse and the store's writes are blocking: keep them off the event loop
        result = await anyio.to_thread.run_sync(sms.webhooks.handle, provider, kind, webhook)
        return JSONResponse(result.body, result.status)

    @router.api_route("/{provider}/status", methods=["GET", "POST"])
    async def status_webhook(provider: str, request: Request) -> JSONResponse:
        return await answer(provider, "status", request)

    @router.api_route("/{provider}/inbound", methods=["GET", "POST"])
    async def inbound_webhook(provider: str, request: Request) -> JSONResponse:
        return await answer(provider, "inbound", request)

    return router
