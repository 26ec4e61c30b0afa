"""One error taxonomy that every provider maps into.

Each error answers for itself whether the send may be retried and whether the router should try
the next provider; it keeps the provider's own code and raw response so nothing is lost in the
mapping. Catch :class:`SmsgateError` for everything, or a subclass for the case you care about.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SmsgateError(Exception):
    """Base of every error smsgate raises on purpose."""

    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False
    #: the short name stored with a failed message and shown in metrics
    kind: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        code: str | int | None = None,
        raw: Any = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = None if code is None else str(code)
        self.raw = raw
        self.field = field

    def __str__(self) -> str:
        if self.provider and self.code:
            return f"{self.message} ({self.provider} {self.code})"
        if self.provider:
            return f"{self.message} ({self.provider})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, code={self.code!r})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no raw payload) for storage, APIs and the CLI."""
        return {
            "error": self.kind,
            "message": self.message,
            "provider": self.provider,
            "code": self.code,
            "field": self.field,
            "retryable": self.retryable,
        }


class ConfigError(SmsgateError):
    """A provider URL or configuration value is wrong; the message names the key and the fix."""

    kind = "config"


# Recipient and message problems: the same message fails everywhere, so never retry or fail over.


class InvalidRecipient(SmsgateError):
    """The number is malformed, not a mobile, or unreachable."""

    kind = "invalid_recipient"


class OptedOut(SmsgateError):
    """The recipient sent STOP (or the provider says they are unsubscribed)."""

    kind = "opted_out"


class InvalidMessage(SmsgateError):
    """The message itself is wrong: empty, too long, unsupported media, bad sender."""

    kind = "invalid_message"


# Throttling and transport trouble: the same provider may accept the message later.


class RateLimited(SmsgateError):
    """The provider throttled us (HTTP 429 or an in-band throttle status)."""

    retryable = True
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class TransientError(SmsgateError):
    """The request did not take effect (connect failure, a 5xx the provider says it dropped)."""

    retryable = True
    failover = True
    kind = "transient"


class AmbiguousSend(SmsgateError):
    """The request may have reached the provider: a read timeout or a reset after sending.

    Whether to send again is a per-route policy (see the architecture page of the docs,
    docs/architecture.md, "Delivery semantics").
    """

    kind = "ambiguous"


# Provider-side problems: this provider cannot send now, another one may.


class AuthError(SmsgateError):
    """The provider refused our credentials."""

    failover = True
    kind = "auth"


class InsufficientFunds(SmsgateError):
    """The provider account is out of credit."""

    failover = True
    kind = "insufficient_funds"


class ProviderUnavailable(SmsgateError):
    """The provider cannot take traffic (down, account suspended, circuit open)."""

    failover = True
    kind = "provider_unavailable"


class UnsupportedFeature(SmsgateError):
    """The message needs something this provider lacks (MMS, scheduling, ...)."""

    failover = True
    kind = "unsupported_feature"


class WebhookVerificationError(SmsgateError):
    """A webhook's signature, timestamp or shape did not check out; nothing should be stored."""

    kind = "webhook_verification"


ERROR_KINDS: dict[str, type[SmsgateError]] = {
    cls.kind: cls
    for cls in (
        SmsgateError,
        ConfigError,
        InvalidRecipient,
        OptedOut,
        InvalidMessage,
        RateLimited,
        TransientError,
        AmbiguousSend,
        AuthError,
        InsufficientFunds,
        ProviderUnavailable,
        UnsupportedFeature,
        WebhookVerificationError,
    )
}
