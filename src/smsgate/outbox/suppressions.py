"""The suppression list as submit sees it: recipients who opted out (STOP) are refused.

A suppression row names a recipient and one number of ours (the number they wrote STOP to), or
``*`` for all of them (STOPALL). A message from ``sender`` is refused when its recipient has a row
for that sender or for ``*``; a message without a sender (the provider's default number) when
the recipient opted out of any number of ours. Senders are compared as :func:`number_key` writes
them, so ``+1 501 712 2661`` and ``+15017122661`` are one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smsgate.errors import OptedOut, SmsgateError
from smsgate.message import Purpose
from smsgate.outbox.sql import ALL_NUMBERS
from smsgate.outbox.store import Inserter, NewMessageRow
from smsgate.phone import normalize

__all__ = ["ALL_NUMBERS", "number_key", "opted_out", "refuse_opted_out"]

# Rows may be plain tuples (from a bulk loader's other process): index, don't name.
_PURPOSE = NewMessageRow._fields.index("purpose")
_TO = NewMessageRow._fields.index("to_number")
_SENDER = NewMessageRow._fields.index("sender")
_OTP = Purpose.OTP.value


def number_key(text: str) -> str:
    """How a number is written in the suppression list: E.164 for phone numbers, short codes and
    alphanumeric sender ids as they are (so ``+1 501 712 2661`` and ``+15017122661`` match)."""
    text = text.strip()
    if text == ALL_NUMBERS or not (text.startswith("+") or text.replace(" ", "").isdigit()):
        return text
    try:
        return normalize(text, strict=False)
    except SmsgateError:
        return text


def opted_out(to: str, sender: str | None) -> OptedOut:
    of = f"from {sender}" if sender else "from our numbers"
    return OptedOut(
        f"to {to!r}: opted out of messages {of} (replied STOP); "
        "they can reply START to opt in again, or the suppression can be removed",
        field="to",
    )


def refuse_opted_out(
    inserter: Inserter, rows: Sequence[Sequence[Any]], *, include_otp: bool
) -> dict[int, OptedOut]:
    """The rows (by position) whose recipient opted out of their sender, with the refusal, as
    ``inserter`` (about to store them) reads the suppression list.

    ``include_otp`` False lets otp messages through (marketing and transactional never are).
    One look-up per distinct sender, however many rows.
    """
    keys: dict[str, str] = {}
    by_sender: dict[str | None, list[int]] = {}
    for index, row in enumerate(rows):
        if not include_otp and row[_PURPOSE] == _OTP:
            continue
        sender = row[_SENDER]
        if sender is not None:
            key = keys.get(sender)
            if key is None:
                key = keys[sender] = number_key(sender)
            sender = key
        group = by_sender.get(sender)
        if group is None:
            by_sender[sender] = [index]
        else:
            group.append(index)
    refused: dict[int, OptedOut] = {}
    for sender, indexes in by_sender.items():
        blocked = inserter.suppressed([rows[i][_TO] for i in indexes], sender)
        for index in indexes if blocked else ():
            to = rows[index][_TO]
            if to in blocked:
                refused[index] = opted_out(to, sender)
    return refused
