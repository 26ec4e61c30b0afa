"""One-time codes sent through the outbox and checked once, with a fraud guard.

``Verify`` starts, checks and cancels verifications; ``VerifySettings`` is the ``[verify]`` table.
See docs/verify.md for the whole feature.
"""

from smsgate.verify.models import (
    Block,
    Decision,
    Verification,
    VerificationBlocked,
    VerificationNotFound,
    VerificationStatus,
)
from smsgate.verify.service import Verify
from smsgate.verify.settings import VerifySettings

__all__ = [
    "Block",
    "Decision",
    "Verification",
    "VerificationBlocked",
    "VerificationNotFound",
    "VerificationStatus",
    "Verify",
    "VerifySettings",
]
