"""smsgate: send SMS and MMS reliably through many providers.

Public names are imported lazily so ``import smsgate`` (and the CLI) start fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # data
    "Message": "smsgate.message",
    "SendResult": "smsgate.message",
    "Status": "smsgate.message",
    "Purpose": "smsgate.message",
    "DeliveryEvent": "smsgate.message",
    "InboundMessage": "smsgate.message",
    # numbers and encoding
    "normalize": "smsgate.phone",
    "lookup": "smsgate.phone",
    "NumberInfo": "smsgate.phone",
    "segments": "smsgate.encoding",
    "SegmentInfo": "smsgate.encoding",
    # sending
    "Gateway": "smsgate.gateway",
    "Outbox": "smsgate.outbox",
    "Verify": "smsgate.verify",
    # errors
    "SmsgateError": "smsgate.errors",
    "ConfigError": "smsgate.errors",
    "InvalidRecipient": "smsgate.errors",
    "OptedOut": "smsgate.errors",
    "InvalidMessage": "smsgate.errors",
    "RateLimited": "smsgate.errors",
    "TransientError": "smsgate.errors",
    "AmbiguousSend": "smsgate.errors",
    "AuthError": "smsgate.errors",
    "InsufficientFunds": "smsgate.errors",
    "ProviderUnavailable": "smsgate.errors",
    "UnsupportedFeature": "smsgate.errors",
    "WebhookVerificationError": "smsgate.errors",
}

# A literal list, not one built from _EXPORTS, so that type checkers and linters see the
# re-exports (mypy --strict refuses `smsgate.Gateway` otherwise). Keep it equal to _EXPORTS.
__all__ = [
    "AmbiguousSend",
    "AuthError",
    "ConfigError",
    "DeliveryEvent",
    "Gateway",
    "InboundMessage",
    "InsufficientFunds",
    "InvalidMessage",
    "InvalidRecipient",
    "Message",
    "NumberInfo",
    "OptedOut",
    "Outbox",
    "ProviderUnavailable",
    "Purpose",
    "RateLimited",
    "SegmentInfo",
    "SendResult",
    "SmsgateError",
    "Status",
    "TransientError",
    "UnsupportedFeature",
    "Verify",
    "WebhookVerificationError",
    "__version__",
    "lookup",
    "normalize",
    "segments",
]

if TYPE_CHECKING:
    from smsgate.encoding import SegmentInfo, segments
    from smsgate.errors import (
        AmbiguousSend,
        AuthError,
        ConfigError,
        InsufficientFunds,
        InvalidMessage,
        InvalidRecipient,
        OptedOut,
        ProviderUnavailable,
        RateLimited,
        SmsgateError,
        TransientError,
        UnsupportedFeature,
        WebhookVerificationError,
    )
    from smsgate.gateway import Gateway
    from smsgate.message import DeliveryEvent, InboundMessage, Message, Purpose, SendResult, Status
    from smsgate.outbox import Outbox
    from smsgate.phone import NumberInfo, lookup, normalize
    from smsgate.verify import Verify


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smsgate' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
