"""Everything the endpoints share, built once per app: the outbox, the server's store, providers.

Endpoints reach it through the ``services`` dependency (``request.app.state.services``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from smsgate.clock import Clock
from smsgate.outbox import Outbox
from smsgate.outbox.tables.server import ServerStore
from smsgate.providers.base import Provider
from smsgate.server.auth import Authenticator
from smsgate.server.inbound import InboundHandler
from smsgate.server.metrics import Metrics
from smsgate.server.receipts import ReceiptRecorder
from smsgate.server.settings import ServerSettings
from smsgate.server.submit import Submitter
from smsgate.server.webhooks_out import WebhookDispatcher


@dataclass(slots=True)
class Services:
    settings: ServerSettings
    outbox: Outbox
    store: ServerStore
    providers: Mapping[str, Provider]
    clock: Clock
    metrics: Metrics
    authenticator: Authenticator
    submitter: Submitter
    receipts: ReceiptRecorder
    inbound: InboundHandler
    dispatcher: WebhookDispatcher
    #: what the in-process worker is doing ("running", "stopped", "disabled")
    worker_state: str = "disabled"


async def services(request: Request) -> Services:
    # async: FastAPI would run a plain function on a worker thread, once per request
    found: Services = request.app.state.services
    return found


#: an endpoint parameter: ``svc: Svc``
Svc = Annotated[Services, Depends(services)]
