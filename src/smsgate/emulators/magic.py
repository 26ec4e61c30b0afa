"""Twilio's test magic numbers, shared by every emulator so the same number fails the same way.

Each emulator answers an outcome with its own provider's error code and body.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    INVALID_TO = "invalid_to"
    UNREACHABLE = "unreachable"
    REGION_NOT_ENABLED = "region_not_enabled"
    OPTED_OUT = "opted_out"
    NOT_MOBILE = "not_mobile"
    INVALID_FROM = "invalid_from"
    FROM_NOT_OWNED = "from_not_owned"
    FROM_QUEUE_FULL = "from_queue_full"


MAGIC_TO: dict[str, Outcome] = {
    "+15005550001": Outcome.INVALID_TO,
    "+15005550002": Outcome.UNREACHABLE,
    "+15005550003": Outcome.REGION_NOT_ENABLED,
    "+15005550004": Outcome.OPTED_OUT,
    "+15005550009": Outcome.NOT_MOBILE,
}

MAGIC_FROM: dict[str, Outcome] = {
    "+15005550001": Outcome.INVALID_FROM,
    "+15005550007": Outcome.FROM_NOT_OWNED,
    "+15005550008": Outcome.FROM_QUEUE_FULL,
}


def magic_outcome(to: str, sender: str) -> Outcome | None:
    """The forced outcome for a send, checking the sender first as Twilio does."""
    return MAGIC_FROM.get(_plus(sender)) or MAGIC_TO.get(_plus(to))


def _plus(number: str) -> str:
    number = number.strip()
    return number if number.startswith("+") else f"+{number}"
