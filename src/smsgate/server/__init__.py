"""The HTTP service: API v1, provider webhooks, user webhooks, metrics (``smsgate serve``).

``create_app(config)`` builds the ASGI app; :mod:`smsgate.server.runner` serves it on uvicorn
with the in-process worker.
"""

from __future__ import annotations

from smsgate.server.app import create_app
from smsgate.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
