"""What a verification is, as callers see it, and the errors the verify API raises."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from smsgate.errors import SmsgateError


class VerificationStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    CANCELED = "canceled"
    EXPIRED = "expired"
    MAX_ATTEMPTS = "max_attempts"
    BLOCKED = "blocked"

    @property
    def final(self) -> bool:
        return self is not VerificationStatus.PENDING


@dataclass(frozen=True, slots=True)
class Verification:
    """One verification. ``valid`` is True only in the answer of the one check that approved it;
    any other answer (a later check of the same code included) says False."""

    id: str
    to: str
    channel: str
    status: VerificationStatus
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    sends: int
    max_sends: int
    locale: str | None = None
    country: str | None = None
    reason: str | None = None
    valid: bool = False

    @property
    def attempts_left(self) -> int:
        if self.status is not VerificationStatus.PENDING:
            return 0
        return max(0, self.max_attempts - self.attempts)

    def to_dict(self) -> dict[str, Any]:
        """The API's answer: never a code, a hash, a salt or the ids of the texts."""
        return {
            "id": self.id,
            "to": self.to,
            "channel": self.channel,
            "status": self.status.value,
            "valid": self.valid,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "attempts": self.attempts,
            "attempts_left": self.attempts_left,
            "sends": self.sends,
            "max_sends": self.max_sends,
            "locale": self.locale,
            "country": self.country,
            "reason": self.reason,
        }


class VerificationNotFound(SmsgateError):
    """No such verification (or, checking by number, none pending for it)."""

    kind: ClassVar[str] = "not_found"


class VerificationBlocked(SmsgateError):
    """The fraud guard refused to send: a denied country or a blocked prefix. The refused start
    is stored as a verification in state ``blocked`` (``verification``) with the reason."""

    kind: ClassVar[str] = "verification_blocked"

    def __init__(self, message: str, *, verification: Verification, **kwargs: Any) -> None:
        super().__init__(message, field="to", **kwargs)
        self.verification = verification


@dataclass(frozen=True, slots=True)
class Block:
    """A prefix the pumping detector (or an operator) stopped sending to."""

    id: str
    prefix: str
    level: int
    reason: str
    started: int
    approved: int
    created_at: float
    blocked_until: float
    lifted_at: float | None = None
    lifted_by: str | None = None

    def active(self, now: float) -> bool:
        return self.lifted_at is None and self.blocked_until > now

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "level": self.level,
            "reason": self.reason,
            "started": self.started,
            "approved": self.approved,
            "created_at": self.created_at,
            "blocked_until": self.blocked_until,
            "lifted_at": self.lifted_at,
            "lifted_by": self.lifted_by,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """One fraud-guard decision, as recorded."""

    at: float
    action: str
    outcome: str
    reason: str
    verification_id: str | None = None
    to: str | None = None
    prefix: str | None = None
    country: str | None = None
    client_ip: str | None = None
    api_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "verification_id": self.verification_id,
            "to": self.to,
            "prefix": self.prefix,
            "country": self.country,
            "client_ip": self.client_ip,
            "api_key": self.api_key,
        }
